"""The classifier run's report: ``results.md`` and ``relearning.png``, from its results.

Pure functions of what ``results.json`` holds (and the relearning curves for the
plot), written through :mod:`ieu_jax.outputs` by :func:`ieu_jax.experiment.run_experiment`.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ieu_jax import _rcd
from ieu_jax import outputs

__all__ = ["plot_relearning", "results_markdown"]

_CRITERIA = {
    "relearned": "accuracy on the attacker's own m forget examples >= the original's"
                 " accuracy on them minus {tolerance} points",
    "recovered": "accuracy on forget examples the attacker does not hold >= halfway between"
                 " Retrain's and the original's accuracy on them",
}


def results_markdown(results: Mapping[str, Any]) -> str:
  """``results.md`` of one run (the dictionary ``results.json`` holds)."""
  fmt = outputs.fmt
  attackers = list(results["rcd_attackers"])
  header = ["method", "UA", "RA", "TA", "MIA", "Avg. Gap", "Gap+RCD", "RCD steps", "censored",
            "RCD norm."]
  if len(attackers) > 1:
    header += ["worst RCD norm."] + [f"{a} steps" for a in attackers[1:]]
  mislabel = "mislabel" in results["original"]
  if mislabel:
    header += ["TA gain", "corrected"]
  header += ["time (s)", "flags"]
  rows = []
  for m in results["methods"]:
    r = m["rcd"]
    cells = [m["name"], fmt(m["UA"]), fmt(m["RA"]), fmt(m["TA"]), fmt(m["MIA"]),
             fmt(m["avg_gap"]), fmt(m["avg_gap_rcd"]), outputs.fmt_steps(r),
             f"{fmt(100 * r['censored_frac'], 0)}%", fmt(r["normalized"])]
    if len(attackers) > 1:
      by = r["by_attacker"]
      cells += [fmt(r["worst_case_normalized"])] + [
          f"{outputs.fmt_steps(by[a])} ({fmt(by[a]['normalized'])})" for a in attackers[1:]]
    if mislabel:
      cells += [fmt(m["mislabel"]["ta_gain"]), fmt(m["mislabel"]["corrected"])]
    rows.append(cells + [fmt(m["runtime_s"], 1), ", ".join(m["flags"])])
  rows += [[f["name"], f"failed: {f['error']}"] for f in results["failed"]]
  o = results["original"]
  lines = [
      f"# Unlearning results: {results['config']['data']['name']},"
      f" forget {results['scenario']}",
      "",
      "Percentages; Avg. Gap against Retrain over UA, RA, TA, MIA (lower is better);"
      " Gap+RCD adds 100*|ln((T+1)/(T_Retrain+1))| as a fifth term. RCD: relearning steps"
      f" until {results['rcd_criterion']} ({_criterion_text(results)}; each trajectory draws"
      f" its own examples, mean threshold {fmt(results['rcd_threshold'])}%){_guard_text(results)}"
      " (restricted mean ±"
      " std over trajectories: a censored one counts as the budget, and >= marks the mean"
      " as a lower bound; censored share), normalised by Retrain's, for the first"
      f" attacker ({attackers[0]}); the others' steps (normalised in brackets) and the worst"
      " case over attackers (the smallest normalised RCD) follow.",
      "",
      outputs.markdown_table(header, rows),
      "",
      f"Original model: train accuracy {fmt(o['train_accuracy'])}%, forget accuracy"
      f" {fmt(100 - o['UA'])}%, retain {fmt(o['RA'])}%, test {fmt(o['TA'])}%, MIA {fmt(o['MIA'])}.",
      f"Memorisation gap on the forget set (original - retrained forget accuracy):"
      f" {fmt(results['memorization_gap'])} points.",
  ]
  if mislabel:
    lines += [
        "Contaminated data: the forget set is training examples with wrong labels. TA gain:"
        " test accuracy after unlearning minus the original's (removing wrong labels should"
        " help; compare with Retrain's); corrected: the share of those examples predicted"
        f" with their true label (the original: {fmt(o['mislabel']['corrected'])}%).",
    ]
  lines += [
      f"Wall time: {fmt(results['wall_time_s'], 1)} s on {results['devices']}.",
  ]
  return "\n".join(lines) + "\n"


def _criterion_text(results) -> str:
  tolerance = results["config"]["rcd"].get("tolerance", 1.0)
  return _CRITERIA[results["rcd_criterion"]].format(tolerance=outputs.fmt(tolerance))


def _guard_text(results) -> str:
  drop = results["rcd_protocol"].get("guard_drop")
  if drop is None:
    return ""
  return (f", while accuracy on {results['sizes']['guard']} held-out examples of the other"
          f" classes stays within {outputs.fmt(drop)} points of its value before relearning")


def plot_relearning(path: str, curves: dict[str, dict[str, _rcd.RelearnResult]], threshold: float) -> None:
  """One panel per attacker: each method's mean forget accuracy while relearning."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  attackers = list(next(iter(curves.values())))
  fig, axes = plt.subplots(1, len(attackers), figsize=(7 * len(attackers), 4.5), squeeze=False)
  for ax, attacker in zip(axes[0], attackers):
    for name, by in curves.items():
      res = by[attacker]
      mean = res.accuracy.mean(0)  # NaN after the run stopped (every trajectory relearned)
      last = int(np.flatnonzero(np.isfinite(mean))[-1])
      line, = ax.plot(res.steps, mean, label=name, marker="o", markevery=[last])
      ax.fill_between(res.steps, res.accuracy.min(0), res.accuracy.max(0),
                      color=line.get_color(), alpha=0.2)
    ax.axhline(threshold, color="k", ls="--", lw=0.8, label="criterion")
    ax.set_xlabel("relearning step")
    ax.set_ylabel("forget accuracy (%)")
    ax.set_title(f"Attacker {attacker}: relearning the forget set (mean; band: min-max\n"
                 "over trajectories; a dot: the run stops, every trajectory relearned)",
                 fontsize=10)
    ax.legend()
  fig.tight_layout()
  outputs.save_figure(fig, path, dpi=120)
