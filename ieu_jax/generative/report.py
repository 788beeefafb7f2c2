"""The generative experiment's pages and figure (written via :mod:`ieu_jax.outputs`)."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ieu_jax import outputs

__all__ = ["plot_grid", "results_markdown", "search_markdown", "seeds_markdown"]

fmt = outputs.fmt


def results_markdown(results: Mapping[str, Any]) -> str:
  """``results.md`` of one run: the first attacker's RCD, then the worst case over the
  attackers and every other attacker's steps (normalised in brackets)."""
  c = results["forget_class"]
  protocols = results.get("rcd_protocols") or {"adam": results["rcd_protocol"]}
  attackers = list(protocols)
  header = ["model", "forget rate", "retain rate", "FD", "RCD steps", "censored", "RCD norm."]
  if len(attackers) > 1:
    header += ["worst RCD norm."] + [f"{a} steps" for a in attackers[1:]]
  header += ["time (s)", "flags"]
  rows = []
  for m in results["models"]:
    r = m["rcd"]
    cells = [m["name"], fmt(m["forget_rate"]), fmt(m["retain_rate"]), fmt(m["fd"], 2),
             outputs.fmt_steps(r, 2),
             f"{fmt(100 * r['censored_frac'], 0)}%", fmt(r["normalized"], 2)]
    if len(attackers) > 1:
      by = r["by_attacker"]
      cells += [fmt(r["worst_case_normalized"], 2)] + [
          f"{outputs.fmt_steps(by[a], 2)} ({fmt(by[a]['normalized'], 2)})" for a in attackers[1:]]
    rows.append(cells + [fmt(m["runtime_s"]), ", ".join(m["flags"])])
  rows += [[f["name"], f"failed: {f['error']}"] for f in results.get("failed", [])]

  def what(a):
    p = protocols[a]
    opt = "Adam" if p["optimizer"] == "adam" else f"SGD with momentum {fmt(p['momentum'], 2)}"
    lrs = p["learning_rates"]
    lrs = ", ".join(str(x) for x in lrs) if isinstance(lrs, (list, tuple)) else lrs
    return f"{a}: {opt} at learning rate {lrs}"

  attacker_text = (
      f" Attackers, each relearning from the same {results['sizes']['relearn']} forget-class"
      " images with the same keys and criterion: " + "; ".join(what(a) for a in attackers)
      + f". RCD steps, censored and RCD norm. are the first attacker's ({attackers[0]})")
  if len(attackers) > 1:
    attacker_text += ("; each other attacker's steps follow, normalised by Retrain's under the"
                      " same attacker in brackets, and the worst case over the attackers"
                      " (the smallest normalised RCD)")
  lines = [
      f"# Generative unlearning: {results['config']['data']['name']}, forget class {c}"
      f" ({results['class_names'].get(str(c), c)})",
      "",
      "Forget rate: percent of samples generated for the forget class that the classifier"
      " assigns to it (lower is better). Retain rate: the same, averaged over the retained"
      " classes (higher is better). FD: Frechet distance between generated and real"
      " retained-class images in the classifier's penultimate features (lower is better)."
      f" RCD: relearning steps until the forget rate reaches {fmt(results['rcd_threshold'])}%"
      f" (tested every {results['rcd_protocol']['eval_every']} steps; restricted"
      " mean ± std over trajectories: a censored one counts as the budget, and >= marks the"
      " mean as a lower bound; censored share), normalised by Retrain's." + attacker_text + ".",
      "",
      outputs.markdown_table(header, rows),
      "",
      f"Evaluation classifier: test accuracy {fmt(results['classifier_test_accuracy'])}% on"
      f" {results['sizes']['test']} test images of the classes used. FD of real test vs real"
      f" train images (the noise floor at this sample size): {fmt(results['fd_real_floor'], 2)}.",
      f"Samples: {results['eval']['samples_per_class']} per class, DDIM"
      f" {results['eval']['sample_steps']} steps, guidance {results['eval']['guidance_scale']}.",
      f"Wall time: {fmt(results['wall_time_s'])} s on {results['devices']}.",
  ]
  return "\n".join(lines) + "\n"


def search_markdown(out: Mapping[str, Any]) -> str:
  """``search.md``: every candidate's scores, the chosen one marked."""
  ref = out["reference"]
  rows = []
  for name, res in out["methods"].items():
    for i, c in enumerate(res["candidates"]):
      if "failed" in c:
        rows.append([name, c["override"], "diverged", "", "", "", ""])
        continue
      mark = " **(chosen)**" if i == res["chosen_index"] else ""
      rows.append([name, f"{c['override']}{mark}", fmt(c["forget_rate"]), fmt(c["retain_rate"]),
                   fmt(c["fd"], 2), fmt(c["gap"], 2), fmt(c["runtime_s"])])
  lines = [
      "# Generative hyperparameter search",
      "",
      f"Score: the gap to Retrain (forget rate {fmt(ref['forget_rate'])}%, retain rate"
      f" {fmt(ref['retain_rate'])}%), the mean absolute difference of the two rates,"
      " on samples drawn from the search's own noise. The chosen candidate is marked.",
      "",
      outputs.markdown_table(["method", "override", "forget rate", "retain rate", "FD", "gap",
                              "time (s)"], rows),
  ]
  return "\n".join(lines) + "\n"


def seeds_markdown(out: Mapping[str, Any]) -> str:
  """``summary.md``: mean ± std over seeds per model."""

  def ms(pair, digits=1):
    mean, std = pair
    return f"{fmt(mean, digits)} ± {fmt(std, digits)}"

  rows = [[name, row["n"], ms(row["forget_rate"]), ms(row["retain_rate"]), ms(row["fd"], 2),
           (">= " if row.get("rcd_lower_bound") else "") + ms(row["rcd_steps_mean"]),
           ms(row["rcd_normalized"], 2), ms(row["rcd_worst_case_normalized"], 2), row["flagged"]]
          for name, row in out["models"].items()]
  lines = [
      f"# Generative unlearning over seeds {out['seeds']}, forget class {out['forget_class']}",
      "",
      "Mean ± std over seeds (each seed trains its own models). RCD norm.: relearning steps"
      " of the first attacker normalised by the same seed's Retrain; worst RCD norm.: the"
      " smallest over the attackers. Flagged: seeds whose retain rate fell far below"
      " Retrain's.",
      "",
      outputs.markdown_table(["model", "seeds", "forget rate", "retain rate", "FD", "RCD steps",
                              "RCD norm.", "worst RCD norm.", "flagged"], rows),
  ]
  return "\n".join(lines) + "\n"


def plot_grid(path: str, grids: dict[str, np.ndarray], classes, forget_class) -> None:
  """One panel per model: a row of samples per class, the forget class marked."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  n = len(grids)
  fig, axes = plt.subplots(1, n, figsize=(2.2 * n + 0.5, 0.3 * len(classes) + 1.2), squeeze=False)
  for ax, (name, grid) in zip(axes[0], grids.items()):
    rows = [np.concatenate(list(row), axis=1) for row in grid]  # (C, k, H, W) -> rows
    image = np.concatenate(rows, axis=0)
    ax.imshow((image + 1.0) / 2.0, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    h = grid.shape[2]
    ax.set_yticks([h * (i + 0.5) for i in range(len(classes))])
    ax.set_yticklabels([f"{c}{' (forget)' if c == forget_class else ''}" for c in classes],
                       fontsize=7)
    ax.set_xticks([])
    ax.set_title(name, fontsize=9)
  fig.tight_layout()
  outputs.save_figure(fig, path, dpi=120, bbox_inches="tight")
