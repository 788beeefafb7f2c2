"""A fair comparison: bounded hyperparameter search on validation, then seeds x scenarios.

**Search** (:func:`search`). Every method gets the same budget: at most ``budget``
candidate settings (a grid from ``config.search[name]`` over the method's default
hyperparameters), each run once on seed ``config.seed``. A candidate is scored on the
*validation* split, never the test split: the Avg. Gap against Retrain over UA, RA,
VA (validation accuracy) and MIA (with validation examples as the attack's
non-members). A candidate that diverges scores infinity. The lowest score wins.
RCD is not used for selection (it is what the comparison then measures).

**Sweep** (:func:`sweep`). Each scenario (random 10/30/50%, a class) is run on several
seeds with the chosen hyperparameters; :func:`aggregate` turns the runs into mean
and standard deviation per method and scenario, and :func:`rank_correlation` tests
whether RCD tracks empirical relearning.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
from typing import Any, Mapping, Sequence

import ml_collections
import numpy as np
from absl import logging
from scipy import stats

from ieu_jax import _metrics
from ieu_jax import experiment
from ieu_jax import methods as methods_lib
from ieu_jax import outputs
from ieu_jax import pipeline
from ieu_jax import training

__all__ = [
    "SCENARIOS",
    "aggregate",
    "candidates",
    "rank_correlation",
    "setting_paragraph",
    "verdict_table",
    "scenario_config",
    "search",
    "sweep",
]

SCENARIOS = {
    "random10": {"mode": "random", "fraction": 0.1},
    "random30": {"mode": "random", "fraction": 0.3},
    "random50": {"mode": "random", "fraction": 0.5},
    "class0": {"mode": "class", "forget_class": 0},
    "mislabel10": {"mode": "mislabel", "fraction": 0.1},
}

_SEARCH_KEYS = ("UA", "RA", "VA", "MIA")


def candidates(
    defaults: Mapping[str, Any], grid: Mapping[str, Sequence[Any]], budget: int
) -> list[dict[str, Any]]:
  """The grid's settings over ``defaults``, in a fixed order; at most ``budget``.

  Raises:
    ValueError: when the grid is larger than the budget (the budget rule is the
      same for every method, so a larger grid is a configuration error), or names a
      hyperparameter the method does not have.
  """
  unknown = sorted(set(grid) - set(defaults))
  if unknown:
    raise ValueError(f"search grid names unknown hyperparameters {unknown}; known: {sorted(defaults)}.")
  names = sorted(grid)
  settings = [dict(defaults, **dict(zip(names, values)))
              for values in itertools.product(*(grid[n] for n in names))]
  if len(settings) > budget:
    raise ValueError(f"search grid has {len(settings)} settings, over the budget of {budget}.")
  return settings


_FIELDS = ("UA", "RA", "TA", "MIA", "avg_gap", "avg_gap_rcd", "relearn_auc", "runtime_s",
           "mislabel.ta_gain", "mislabel.corrected")


@pipeline.locks_workdir
def search(
    config: ml_collections.ConfigDict, workdir: str, methods: Sequence[str] | None = None
) -> dict[str, Any]:
  """Chooses each method's hyperparameters on the validation split (see module doc).

  Returns (and writes to ``workdir/search.json``) for each method the chosen
  setting, its score and every candidate's score and metrics.
  """
  methods = list(methods or [n for n in experiment.method_names(config) if n != "Retrain"])
  budget = int(config.search_budget)
  grids = {}
  for name in methods:  # every candidate is checked before any work
    defaults = methods_lib.hparams(name, config.method[name]).to_dict()  # every field
    grid = config.search[name].to_dict() if name in config.search else {}
    grids[name] = (grid, [methods_lib.hparams(name, hp).to_dict()
                          for hp in candidates(defaults, grid, budget)])
  setup = experiment.prepare(config, workdir)
  reference = setup.evaluate(setup.retrained, holdout="val")
  out = {"reference": reference, "budget": budget, "seed": int(config.seed), "methods": {}}
  for name in methods:
    grid, settings = grids[name]
    rows = []
    for c_index, hp in enumerate(settings):
      try:
        params, _ = setup.unlearn(name, hp, index=1 + c_index)
        row = setup.evaluate(params, holdout="val")
        score = _metrics.avg_gap(row, reference, keys=_SEARCH_KEYS)
      except training.NonFiniteError as e:
        row, score = {"error": str(e)}, math.inf
      logging.info("search %s %s: score %.3f", name, {k: hp[k] for k in grid}, score)
      rows.append({"hparams": hp, "score": score, "metrics": row})
    best = min(rows, key=lambda r: r["score"])
    out["methods"][name] = {"chosen": best["hparams"], "score": best["score"],
                            "grid": grid, "candidates": rows}
  outputs.write_json(os.path.join(workdir, "search.json"), out)
  return out


def scenario_config(
    config: ml_collections.ConfigDict, scenario: str, seed: int
) -> ml_collections.ConfigDict:
  """A copy of ``config`` for one scenario of :data:`SCENARIOS` and one seed."""
  if scenario not in SCENARIOS:
    raise ValueError(f"unknown scenario {scenario!r}: known are {sorted(SCENARIOS)}.")
  c = copy.deepcopy(config)
  with c.unlocked():
    c.seed = int(seed)
    for k, v in SCENARIOS[scenario].items():
      c.forget[k] = v
  return c


@pipeline.locks_workdir
def sweep(
    config: ml_collections.ConfigDict,
    workdir: str,
    scenarios: Sequence[str],
    seeds: Sequence[int],
) -> dict[str, Any]:
  """Runs :func:`experiment.run_experiment` for every scenario and seed.

  Each run has its own workdir (``workdir/<scenario>/seed<k>``), so an interrupted
  sweep resumes from its checkpoints. Returns ``{scenario: [results per seed]}``.
  """
  if not scenarios or not seeds or len(set(seeds)) != len(seeds):
    raise ValueError(f"scenarios={list(scenarios)}, seeds={list(seeds)}: give at least one"
                     " scenario and one seed, each seed once.")
  for scenario in scenarios:  # every cell is checked before any work
    for seed in seeds:
      experiment.validate_config(scenario_config(config, scenario, seed))
  runs = {}
  for scenario in scenarios:
    runs[scenario] = []
    for seed in seeds:
      run_dir = os.path.join(workdir, scenario, f"seed{seed}")
      cell = scenario_config(config, scenario, seed)
      done = pipeline.finished_run(run_dir, cell)
      if done is not None:
        logging.info("sweep: %s seed %d: reusing %s/results.json", scenario, seed, run_dir)
        runs[scenario].append(done)
        continue
      logging.info("sweep: %s seed %d", scenario, seed)
      runs[scenario].append(experiment.run_experiment(cell, run_dir))
  return runs


def aggregate(runs: Sequence[Mapping[str, Any]], *, fields: Sequence[str] = _FIELDS,
              rows: str = "methods") -> dict[str, dict[str, Any]]:
  """:func:`ieu_jax.pipeline.aggregate` with the classifier's metrics by default."""
  return pipeline.aggregate(runs, fields=fields, rows=rows)


def rank_correlation(agg: Mapping[str, Mapping[str, Any]]) -> tuple[float, float, int]:
  """Spearman correlation between methods' mean RCD steps and relearning AUC.

  RCD tracks empirical relearning when the correlation is strongly *negative*: a
  model that takes more steps to relearn has a lower forget accuracy along the way.
  Returns ``(rho, p_value, number_of_methods)``. RCD steps are restricted means
  (a censored trajectory counts as the budget), so a censored method takes part,
  ranked as at least as slow as any other; only a method with no result on any
  seed (every seed failed) is left out.
  """
  pairs = [(v["rcd_steps_mean"][0], v["relearn_auc"][0]) for v in agg.values()
           if v["n"] and math.isfinite(v["rcd_steps_mean"][0])
           and math.isfinite(v["relearn_auc"][0])]
  if len(pairs) < 3:
    return math.nan, math.nan, len(pairs)
  rho, p = stats.spearmanr([a for a, _ in pairs], [b for _, b in pairs])
  return float(rho), float(p), len(pairs)


_BASELINES = ("FT", "RL", "SCRUB", "SalUn")


def _fmt(pair, digits=2):
  return outputs.fmt_mean_std(*pair, digits)


def _steps(v) -> str:
  """Mean RCD steps over seeds, ``>=`` when a seed's mean is a lower bound."""
  text = _fmt(v["rcd_steps_mean"], 1)
  return f">= {text}" if v.get("rcd_lower_bound") and text != "n/a" else text


def scenario_table(agg: Mapping[str, Mapping[str, Any]]) -> str:
  """A markdown table of one scenario's aggregated results."""
  header = ["method", "n (failed)", "UA", "RA", "TA", "MIA", "Avg. Gap", "Gap+RCD", "RCD steps",
            "RCD norm.", "worst RCD norm.", "censored", "relearn AUC", "time (s)"]
  # The contaminated-data scenario's own measure, where the runs have it.
  mislabel = any(math.isfinite(v.get("mislabel.corrected", (math.nan,))[0])
                 for v in agg.values() if v["n"])
  if mislabel:
    header[6:6] = ["TA gain", "corrected"]
  rows = []
  for name, v in agg.items():
    n = f"{v['n']}" + (f" ({v['failed']} diverged)" if v.get("failed") else "")
    if not v["n"]:
      rows.append([name, n] + [""] * (len(header) - 2))
      continue
    censored = tuple(100 * c for c in v["rcd_censored_frac"])
    cells = [name, n, _fmt(v["UA"]), _fmt(v["RA"]), _fmt(v["TA"]), _fmt(v["MIA"]),
             _fmt(v["avg_gap"]), _fmt(v["avg_gap_rcd"]), _steps(v),
             _fmt(v["rcd_normalized"]), _fmt(v["rcd_worst_case_normalized"]),
             f"{_fmt(censored, 0)}%", _fmt(v["relearn_auc"], 1), _fmt(v["runtime_s"], 1)]
    if mislabel:
      cells[6:6] = [_fmt(v["mislabel.ta_gain"]), _fmt(v["mislabel.corrected"])]
    rows.append(cells)
  return outputs.markdown_table(header, rows)


def claims(agg: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
  """The paper's five claims, checked on one scenario's aggregate.

  Each entry has ``supported`` (True, False, or None when a method is missing) and
  the numbers behind it. Comparisons are of means over seeds; ``clear`` says whether
  the difference exceeds the sum of the two standard deviations.
  """
  out: dict[str, dict[str, Any]] = {}
  diverged = sorted(k for k, v in agg.items() if not v["n"])
  agg = {k: v for k, v in agg.items() if v["n"]}  # methods with results on some seed

  def missing(name):
    return f"{name} diverged on every seed" if name in diverged else f"{name} was not run"

  def compare(field, better):  # better: 'lower' or 'higher'
    if "IEU" not in agg:
      return {"supported": None, "why": missing("IEU")}
    ieu = agg["IEU"][field]
    rows, ok, clear = {}, True, True
    for b in _BASELINES:
      if b not in agg:
        continue
      other = agg[b][field]
      wins = ieu[0] < other[0] if better == "lower" else ieu[0] > other[0]
      margin = abs(ieu[0] - other[0]) > (ieu[1] + other[1])
      rows[b] = {"baseline": other[0], "ieu": ieu[0], "ieu_better": bool(wins), "clear": bool(margin)}
      ok &= wins
      clear &= wins and margin
    if not rows:
      return {"supported": None, "why": "no baseline ran"}
    return {"supported": bool(ok), "clearly": bool(clear), "versus": rows}

  out["1_lower_avg_gap"] = compare("avg_gap", "lower")
  out["2_higher_rcd"] = compare("rcd_steps_mean", "higher")
  if all(math.isfinite(v.get("rcd_worst_case_normalized", (math.nan,))[0])
         for k, v in agg.items() if k == "IEU" or k in _BASELINES):
    # Against every attacker: the smallest normalised RCD, the attacker's best attack.
    out["2b_higher_worst_case_rcd"] = compare("rcd_worst_case_normalized", "higher")
  rho, p, n = rank_correlation(agg)
  out["3_rcd_tracks_relearning"] = {"supported": (rho < -0.5 and p < 0.05) if n >= 3 else None,
                                    "spearman_rho": rho, "p_value": p, "methods": n}
  if "Noisy" in agg:
    gaps = sorted((v["avg_gap"][0], k) for k, v in agg.items() if k != "Retrain")
    rank = [k for _, k in gaps].index("Noisy") + 1
    ra_drop = agg["Retrain"]["RA"][0] - agg["Noisy"]["RA"][0] if "Retrain" in agg else math.nan
    out["4_noisy_tradeoff"] = {
        "supported": bool(rank <= 3 and ra_drop < 5.0),
        "avg_gap_rank": rank, "of": len(gaps), "RA_below_retrain": ra_drop,
        "rule": "Noisy's Avg. Gap among the 3 lowest, with RA within 5 points of Retrain's",
    }
  else:
    out["4_noisy_tradeoff"] = {"supported": None, "why": missing("Noisy")}
  if "Noisy" in agg and "GA+Noisy" in agg:
    n_gap, gn_gap = agg["Noisy"]["avg_gap"], agg["GA+Noisy"]["avg_gap"]
    out["5_ga_noisy_no_better"] = {"supported": bool(gn_gap[0] >= n_gap[0] - n_gap[1]),
                                   "Noisy": n_gap[0], "GA+Noisy": gn_gap[0],
                                   "rule": "GA+Noisy's Avg. Gap not below Noisy's by more than one std"}
  else:
    out["5_ga_noisy_no_better"] = {
        "supported": None, "why": "; ".join(missing(n) for n in ("Noisy", "GA+Noisy") if n not in agg)}
  return out


def results_document(
    by_scenario: Mapping[str, Mapping[str, Any]],
    *,
    command: str,
    figures: Mapping[str, str] | None = None,
    preamble: str = "",
) -> str:
  """``docs/results.md``: a table per scenario and the claims, with the command."""
  names = {"1_lower_avg_gap": "IEU has a lower Avg. Gap than FT, RL, SCRUB and SalUn",
           "2_higher_rcd": "IEU has a higher RCD than those baselines",
           "2b_higher_worst_case_rcd": "IEU has a higher worst-case normalised RCD (over the attackers) than those baselines",
           "3_rcd_tracks_relearning": "RCD tracks empirical relearning (Spearman of RCD steps vs relearning AUC)",
           "4_noisy_tradeoff": "Noisy alone gives a strong privacy/utility trade-off",
           "5_ga_noisy_no_better": "GA+Noisy does not improve on Noisy"}
  verdict = {True: "supported", False: "**not supported**", None: "not tested"}
  verdicts = {scenario: claims(agg) for scenario, agg in by_scenario.items()}
  parts = [preamble, f"Reproduce everything on this page:\n\n```sh\n{command}\n```\n",
           "The paper's claims at a glance (each cell: this page's verdict on that scenario,"
           " from the claims listed under its table; a claim whose method diverged or was"
           " not run is not tested there):\n",
           verdict_table(verdicts, names, verdict) + "\n"]
  for scenario, agg in by_scenario.items():
    parts.append(f"## {scenario}\n")
    parts.append(scenario_table(agg) + "\n")
    if figures and scenario in figures:
      parts.append(f"![relearning curves, {scenario}]({figures[scenario]})\n")
    parts.append("Claims on this scenario:\n")
    for key, c in verdicts[scenario].items():
      detail = {k: v for k, v in c.items() if k != "supported"}
      parts.append(f"- {names[key]}: {verdict[c['supported']]} — `{json.dumps(outputs.json_safe(detail))}`")
    parts.append("")
  return "\n".join(parts) + "\n"


def setting_paragraph(runs: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
  """The sweep's setting, read from its runs' results (so no number is typed by hand):
  sizes, the attackers' protocol and criterion, the original's memorisation per
  scenario, and the summed wall time of the runs."""
  fmt = outputs.fmt
  first = next((cells[0] for cells in runs.values() if cells), None)
  if first is None:
    return ""
  p, sizes = first["rcd_protocol"], first["sizes"]
  gaps = ", ".join(
      f"{s} {fmt(float(np.mean([c['memorization_gap'] for c in cells])), 1)}"
      for s, cells in runs.items() if cells)
  train_acc = [c["original"]["train_accuracy"] for cells in runs.values() for c in cells]
  wall = sum(c.get("wall_time_s", 0.0) for cells in runs.values() for c in cells)
  seeds = sorted({c["config"]["seed"] for cells in runs.values() for c in cells})
  guard = (f"; a point counts only while accuracy on {sizes.get('guard', 0)} held-out examples"
           f" of the other classes is within {fmt(p['guard_drop'])} points of its value"
           " before relearning" if p.get("guard_drop") is not None else "")
  return (
      f"**Setting (read from the runs).** {sizes['train']} training examples; the original's"
      f" train accuracy {fmt(min(train_acc))}-{fmt(max(train_acc))}%. Memorisation gap"
      " (original minus retrained forget accuracy, points, mean over seeds):"
      f" {gaps}. RCD: {p['num_trajectories']} trajectories per model and attacker, each"
      f" with its own {sizes['relearn']} forget examples, batch {p['batch_size']}, budget"
      f" {p['max_steps']} steps, criterion `{first.get('rcd_criterion', 'relearned')}`{guard};"
      f" attackers {', '.join(first.get('rcd_attackers', {'sgd': None}))} (the first is"
      f" the tables' RCD: {p['optimizer']} at learning rate(s) {p['learning_rates']},"
      f" momentum {fmt(p['momentum'])}). Seeds {', '.join(map(str, seeds))}. The runs'"
      f" summed wall time as they recorded it: {fmt(wall / 60, 0)} min (a run that reused"
      " finished models and rows records only the time it took itself, so this is the"
      " cost from nothing only when nothing was reused).\n")


def verdict_table(verdicts: Mapping[str, Mapping[str, Mapping[str, Any]]],
                  names: Mapping[str, str], verdict: Mapping[Any, str]) -> str:
  """A markdown table of the claims' verdicts: a row per claim, a column per scenario
  (``verdicts[scenario]`` is :func:`claims` of that scenario; a claim a scenario did
  not check reads ``n/a``)."""
  scenarios = list(verdicts)
  keys = list(names)
  rows = []
  for key in keys:
    cells = [verdict[verdicts[s][key]["supported"]] if key in verdicts[s] else "n/a"
             for s in scenarios]
    if any(c != "n/a" for c in cells):
      rows.append([names[key]] + cells)
  return outputs.markdown_table(["claim"] + scenarios, rows)


def block_start(name: str = "generated") -> str:
  """The line that opens block ``name`` of a page (:func:`splice`)."""
  return f"<!-- {name}: start -->"


def splice(old: str | None, generated: str, name: str = "generated",
           before: str | None = None) -> str:
  """``old`` with only its block ``name`` replaced; hand-written text stays.

  The block lies between ``<!-- {name}: start -->`` and ``<!-- {name}: end -->``.
  A page without it gains it just before the line ``before`` (another block's start
  marker, say) when ``old`` has that line, else at its end; with no page, the block
  is the page.
  """
  start, end = block_start(name), f"<!-- {name}: end -->"
  block = f"{start}\n{generated}{end}\n"
  if old is None:
    return block
  if start not in old or end not in old:
    if before is not None and before in old:
      return old[: old.index(before)] + block + "\n" + old[old.index(before):]
    return old + ("" if old.endswith("\n") else "\n") + block
  return old[: old.index(start)] + block + old[old.index(end) + len(end) + 1:]


def write_block(results_doc: str, block: str, name: str = "generated",
                before: str | None = None) -> None:
  """Writes block ``name`` of the page ``results_doc`` (:func:`splice`; a missing page
  becomes the block)."""
  try:
    with open(results_doc) as f:
      old = f.read()
  except OSError:
    old = None
  outputs.write_text(results_doc, splice(old, block, name=name, before=before))


def page_figure(results_doc: str, src: str, suffix: str) -> str:
  """Copies the figure ``src`` beside the page as ``figures/<page>_<suffix>.png`` (named
  after the page too: two pages beside each other keep their own figures); returns
  that path relative to the page."""
  stem = os.path.splitext(os.path.basename(results_doc))[0]
  rel = f"figures/{stem}_{suffix}.png"
  with open(src, "rb") as f:
    outputs.write_text(os.path.join(os.path.dirname(os.path.abspath(results_doc)), rel),
                       f.read())
  return rel


def write_report(runs: Mapping[str, Sequence[Mapping[str, Any]]], workdir: str, *,
                 results_doc: str | None = None, command: str = "") -> dict[str, Any]:
  """Writes ``workdir/summary.json`` (aggregates and claims) and the results page.

  Args:
    runs: :func:`sweep`'s result, ``{scenario: [results per seed]}``.
    workdir: the sweep's directory (each run's ``relearning.png`` of the first
      seed is copied beside the page, into ``figures/<page>_relearning_<scenario>.png``).
    results_doc: the page to write (its generated block only), or None.
    command: the command that reproduces the page.

  Returns:
    ``{"aggregate": {scenario: ...}, "claims": {scenario: ...}}``.
  """
  by_scenario = {s: aggregate(r) for s, r in runs.items()}
  summary = {"aggregate": by_scenario, "claims": {s: claims(a) for s, a in by_scenario.items()}}
  outputs.write_json(os.path.join(workdir, "summary.json"), summary)
  if results_doc and outputs.is_writer():
    figures = {}
    for s, cells in runs.items():
      seed = cells[0]["config"]["seed"] if cells else None
      src = os.path.join(workdir, s, f"seed{seed}", "relearning.png")
      if os.path.exists(src):
        figures[s] = page_figure(results_doc, src, f"relearning_{s}")
    write_block(results_doc, results_document(by_scenario, command=command, figures=figures,
                                              preamble=setting_paragraph(runs)))
  return summary
