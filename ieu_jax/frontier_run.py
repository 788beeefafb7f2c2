"""Running a frontier: every method's grid of settings, per scenario and seed.

For each cell (a scenario and a seed) the pipeline's original and retrained models
are trained or restored (:func:`ieu_jax.experiment.prepare`, in the cell's own
workdir ``W/<scenario>/seed<k>``), then each method's settings run as one program
per group of equal static hyperparameters (:func:`ieu_jax.sweep`), with the key a
single run of the method gets. Every setting is evaluated on the test split (UA,
RA, TA, MIA, Avg. Gap) and on the validation split (VA, and ``MIA_val`` with
validation examples as the attack's non-members).

**Selection reads no test example.** The Pareto sets and the claims at matched
utility are computed in the validation plane (``frontier["selection"] = "val"``,
:data:`ieu_jax.frontier.VIEWS`); the test metrics of every setting are recorded
beside.

**RCD** (every attacker of the pipeline, normalised by Retrain's) is computed for
each method's Pareto set only (``config.frontier.rcd = "pareto"``; ``"all"``: every
setting; ``"none"``), and only for settings that lose at most
``config.frontier.rcd_max_loss`` points of (validation) utility (None: any): it costs
more than the rest of a setting together, and the claims at matched utility read no
setting beyond their largest bound.

Each method's finished settings are written as they complete
(``W/<scenario>/seed<k>/frontier/<method>-<fingerprint>.json``, keyed by
everything they depend on), so an interrupted frontier resumes where it stopped.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from typing import Any, Mapping, Sequence

import jax
import ml_collections
import numpy as np
from absl import logging

from ieu_jax import _metrics
from ieu_jax import _program
from ieu_jax import attackers as attackers_lib
from ieu_jax import comparison
from ieu_jax import experiment
from ieu_jax import frontier as frontier_lib
from ieu_jax import methods as methods_lib
from ieu_jax import outputs
from ieu_jax import pipeline
from ieu_jax import training

__all__ = ["RCD_POLICIES", "compilation_cache", "grid", "method_names", "run", "run_cell",
           "setting_paragraph", "write_report", "write_results_doc"]

RCD_POLICIES = ("pareto", "all", "none")


def method_names(config: ml_collections.ConfigDict) -> list[str]:
  """The swept methods: ``config.frontier.methods`` (comma-separated), each with a program."""
  names = [n.strip() for n in str(config.frontier.methods).split(",") if n.strip()]
  if not names:
    raise ValueError("config.frontier.methods names no method.")
  for name in names:
    if methods_lib.get(name).program is None:
      raise ValueError(f"config.frontier.methods: {name} has no program to sweep"
                       " (Retrain is the reference, not a method of the frontier).")
  return names


def grid(config: ml_collections.ConfigDict, name: str) -> list[Any]:
  """Method ``name``'s settings: its configured hyperparameters with each budget of
  ``config.frontier.budgets`` (steps) crossed with ``config.frontier.grids[name]``:
  a mapping of axes (their product), or a list of settings (mappings).

  Raises:
    ValueError: a method without a grid, a grid key the method does not have, an
      empty list of values, or a budget that is not a positive integer.
  """
  budgets = tuple(config.frontier.budgets)
  if not budgets or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in budgets):
    raise ValueError(f"config.frontier.budgets={budgets!r} must be positive integers (steps).")
  if name not in config.frontier.grids:
    raise ValueError(f"config.frontier.grids has no grid for {name} (it has"
                     f" {sorted(config.frontier.grids)}).")
  spec = config.frontier.grids[name]
  if isinstance(spec, (list, tuple)):
    combos = [dict(c) for c in spec]
    if not combos:
      raise ValueError(f"config.frontier.grids[{name!r}] is an empty list of settings.")
  else:
    axes = dict(spec)
    for key, values in axes.items():
      if not isinstance(values, (list, tuple)) or not values:
        raise ValueError(
            f"config.frontier.grids[{name!r}].{key}={values!r}: give a non-empty list.")
    combos = [dict(zip(axes, c)) for c in itertools.product(*axes.values())]
  base = methods_lib.hparams(name, config.method.get(name))
  return [base.replace(steps=budget, **combo) for budget in budgets for combo in combos]


def _check(config: ml_collections.ConfigDict) -> list[str]:
  """Every method's grid built and of one size, and the RCD policy known, before work."""
  names = method_names(config)
  sizes = {name: len(grid(config, name)) for name in names}
  if len(set(sizes.values())) != 1:
    raise ValueError(f"every method must have as many settings as every other: {sizes}.")
  if config.frontier.rcd not in RCD_POLICIES:
    raise ValueError(f"config.frontier.rcd={config.frontier.rcd!r}: use one of {RCD_POLICIES}.")
  bound = config.frontier.get("rcd_max_loss")
  if bound is not None and (isinstance(bound, bool) or not isinstance(bound, (int, float))
                            or not bound >= 0):
    raise ValueError(f"config.frontier.rcd_max_loss={bound!r} must be None or a number >= 0.")
  bounds = frontier_lib.check_bounds(config.frontier.get("bounds", DEFAULT_BOUNDS))
  if bound is not None and bound < max(bounds):
    raise ValueError(f"config.frontier.rcd_max_loss={bound!r} is below the claims' largest"
                     f" bound (config.frontier.bounds={tuple(bounds)}): settings eligible"
                     " there would have no RCD.")
  return names


DEFAULT_BOUNDS = (1.0, 3.0)


def bounds(frontier: Mapping[str, Any]) -> tuple[float, ...]:
  """The claims' utility-loss bounds of a frontier: its config's, or the default."""
  return tuple(frontier.get("config", {}).get("frontier", {}).get("bounds", DEFAULT_BOUNDS))


def _metrics_of(setup: experiment.Setup, variables) -> dict[str, float]:
  """UA, RA, TA, MIA (test) and VA, MIA_val (validation) of one model."""
  row = setup.evaluate(variables, holdout="both")
  row.pop("corrected", None)
  return row


def _method_settings(setup: experiment.Setup, workdir: str, name: str,
                     retrain: Mapping[str, Any], retrain_rcd) -> list[dict[str, Any]]:
  """Method ``name``'s settings on one cell, run or reused from ``workdir/frontier``."""
  config = setup.config
  settings = grid(config, name)
  policy = config.frontier.rcd
  stem = name.replace("/", "_") + "-" + pipeline.fingerprint(
      config, name, experiment._ROW_PARTS,  # pylint: disable=protected-access
      extra={"grid": [h.to_dict() for h in settings], "rcd": policy,
             "rcd_max_loss": config.frontier.get("rcd_max_loss")})
  path = os.path.join(workdir, "frontier", stem + ".json")
  try:
    with open(path) as f:
      saved = json.load(f)
    logging.info("%s: reusing its finished frontier %s", name, path)
    return saved["settings"]
  except (OSError, ValueError, KeyError):
    pass
  key = pipeline.method_key(setup.root_key, experiment._KEY_METHODS, name, 0)  # pylint: disable=protected-access
  start = time.perf_counter()
  result = methods_lib.sweep(name, setup.problem, settings, key,
                             chunk=config.frontier.get("chunk"))
  jax.block_until_ready(result.variables)
  seconds = time.perf_counter() - start
  rows: list[dict[str, Any]] = []
  for g, hp in enumerate(settings):
    row = {"hparams": hp.to_dict(), "steps": hp.steps, "diverged": bool(result.diverged[g]),
           "rcd": None}
    if not row["diverged"]:
      try:
        row.update(_metrics_of(setup, _program.unstack(result.variables, g)))
        row["avg_gap"] = _metrics.avg_gap(row, retrain)
      except training.NonFiniteError as e:  # finite weights, overflowing outputs
        row.update(diverged=True, why=str(e))
    if row["diverged"]:
      row.update({k: None for k in ("UA", "RA", "TA", "MIA", "VA", "MIA_val", "avg_gap")})
    rows.append(row)
  view = "val"
  gaps = [np.nan if r["diverged"] else frontier_lib.forgetting_gap(r, retrain, view) for r in rows]
  losses = [np.nan if r["diverged"] else frontier_lib.utility_loss(r, retrain, view) for r in rows]
  pareto = frontier_lib.pareto_flags(gaps, losses)
  rcd_start = time.perf_counter()
  max_loss = config.frontier.get("rcd_max_loss")
  for g, row in enumerate(rows):
    if row["diverged"] or policy == "none" or (policy == "pareto" and not pareto[g]):
      continue
    if max_loss is not None and losses[g] > max_loss + 1e-9:
      continue
    results = setup.relearn_all(_program.unstack(result.variables, g))
    row["rcd"] = attackers_lib.rcd_by_attacker(results, retrain_rcd)
  logging.info("%s: %d settings in %.1fs (%d programs), RCD of %d in %.1fs", name,
               len(settings), seconds, result.programs,
               sum(r["rcd"] is not None for r in rows), time.perf_counter() - rcd_start)
  rows = outputs.json_safe(rows)
  outputs.write_json(path, {"settings": rows, "sweep_s": seconds,
                            "rcd_s": time.perf_counter() - rcd_start})
  return rows


def run_cell(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """One scenario and seed (``config`` already set to them): the run's entry."""
  start = time.perf_counter()
  names = _check(config)
  setup = experiment.prepare(config, workdir)
  retrain = _metrics_of(setup, setup.retrained)
  retrain_rcd = setup.relearn_all(setup.retrained)
  retrain["rcd"] = attackers_lib.rcd_by_attacker(retrain_rcd, retrain_rcd)
  original = _metrics_of(setup, setup.original)
  entry = {"retrain": retrain, "original": original, "methods": {}}
  for name in names:
    entry["methods"][name] = _method_settings(setup, workdir, name, retrain, retrain_rcd)
  fs = setup.forget_split
  entry["sizes"] = {"train": len(fs.train), "forget": len(fs.forget), "retain": len(fs.retain),
                    "val": len(setup.splits.val), "test": len(setup.splits.test)}
  entry["wall_time_s"] = time.perf_counter() - start
  return outputs.json_safe(entry)


@pipeline.locks_workdir
def run(config: ml_collections.ConfigDict, workdir: str, scenarios: Sequence[str] | None = None,
        seeds: Sequence[int] | None = None, command: str | None = None,
        results_doc: str | None = None) -> dict[str, Any]:
  """Every cell of ``scenarios`` x ``seeds`` (default: ``config.frontier``'s); writes
  ``frontier.json``, ``frontier.md`` and ``frontier_<scenario>.png`` to ``workdir``,
  and the frontier's block of ``results_doc`` when given (:func:`write_results_doc`).

  Returns:
    The ``frontier.json`` object.
  """
  start = time.perf_counter()
  scenarios = list(scenarios or config.frontier.scenarios)
  seeds = [int(s) for s in (seeds if seeds is not None else config.frontier.seeds)]
  if not scenarios or not seeds or len(set(seeds)) != len(seeds):
    raise ValueError(f"scenarios={scenarios}, seeds={seeds}: give at least one scenario and"
                     " one seed, each seed once.")
  names = _check(config)
  for scenario in scenarios:  # every cell checked before any work
    for seed in seeds:
      experiment.validate_config(comparison.scenario_config(config, scenario, seed))
  runs = []
  for scenario in scenarios:
    for seed in seeds:
      logging.info("frontier: %s seed %d", scenario, seed)
      cell = comparison.scenario_config(config, scenario, seed)
      entry = run_cell(cell, os.path.join(workdir, scenario, f"seed{seed}"))
      runs.append({"scenario": scenario, "seed": seed, **entry})
  out = {
      "selection": "val",
      "command": command or "python -m experiments.frontier " + " ".join(sys.argv[1:]),
      "config": outputs.json_safe(config.to_dict()),
      "grid": {name: [h.to_dict() for h in grid(config, name)] for name in names},
      "runs": runs,
      "devices": f"{jax.device_count()} {jax.default_backend()} device(s)",
      "wall_time_s": time.perf_counter() - start,
  }
  out = frontier_lib.annotate(out)
  write_report(out, workdir)
  if results_doc:
    write_results_doc(out, results_doc, workdir)
  return out


def compilation_cache(workdir: str) -> None:
  """Compiled programs kept in ``workdir/.jax_cache`` (JAX's persistent cache), unless
  one is set already: a method's step compiles once for all its budgets and seeds
  (their programs differ in length only), and a rerun compiles nothing again. A
  setting of the process (the binary's to make, before its first compilation)."""
  if jax.config.jax_compilation_cache_dir:
    return
  jax.config.update("jax_compilation_cache_dir", os.path.join(workdir, ".jax_cache"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def setting_paragraph(frontier: Mapping[str, Any]) -> str:
  """What the frontier ran, read from it: sizes, grids, budgets, RCD, wall time."""
  runs = frontier["runs"]
  config = frontier["config"]
  sizes = runs[0]["sizes"]
  names = list(frontier["grid"])
  counts = sorted({len(v) for v in frontier["grid"].values()})
  budgets = sorted({s["steps"] for v in frontier["grid"].values() for s in v})
  gaps = {}
  for run in runs:  # memorisation: the original's forget accuracy above Retrain's
    gaps.setdefault(run["scenario"], []).append(run["retrain"]["UA"] - run["original"]["UA"])
  memo = ", ".join(f"{s} {np.mean(v):.1f}" for s, v in gaps.items())
  rcd = sum(st["rcd"] is not None for run in runs for v in run["methods"].values() for st in v)
  total = sum(len(v) for run in runs for v in run["methods"].values())
  diverged = sum(st["diverged"] for run in runs for v in run["methods"].values() for st in v)
  seeds = sorted({run["seed"] for run in runs})
  return (
      f"**Setting (read from the run).** {sizes['train']} training examples, model"
      f" `{config['model']['name']}` with normalisation `{config['model'].get('norm')}`;"
      f" seeds {', '.join(map(str, seeds))}. Methods: {', '.join(names)}; each has"
      f" {' or '.join(map(str, counts))} settings: its grid at each budget of"
      f" {', '.join(map(str, budgets))} optimizer steps. {total} unlearned models in all,"
      f" {diverged} of them diverged (kept, and counted in the tables). Memorisation gap"
      f" (Retrain's UA minus the original's, points, mean over seeds): {memo}. RCD"
      f" (`config.frontier.rcd = '{config['frontier']['rcd']}'`, for settings that lose at"
      f" most {config['frontier'].get('rcd_max_loss')} points of utility) was computed for"
      f" {rcd} settings. Pareto sets and matched utility are read in the validation plane"
      f" (validation accuracy for TA, validation examples as the MIA's non-members):"
      f" choosing settings never reads the test split. Wall time"
      f" {frontier['wall_time_s'] / 60:.0f} min ({frontier['devices']}; a rerun that"
      f" reused finished cells records only its own time).\n")


def write_results_doc(frontier: Mapping[str, Any], results_doc: str, workdir: str) -> None:
  """The frontier's block of the results page (``<!-- frontier: start -->`` to its
  end marker; the rest of the page is left as it is), placed before the single-setting
  comparison's block when the page has no frontier block yet, and its figures
  copied beside the page as ``figures/<page>_frontier_<scenario>.png``."""
  if not outputs.is_writer():
    return
  figures = []
  for scenario in dict.fromkeys(r["scenario"] for r in frontier["runs"]):
    src = os.path.join(workdir, f"frontier_{scenario}.png")
    if os.path.exists(src):
      rel = comparison.page_figure(results_doc, src, f"frontier_{scenario}")
      figures.append(f"![{scenario}]({rel})")
  body = frontier_lib.frontier_markdown(frontier, bounds(frontier))
  body = "\n".join("#" + line if line.startswith("#") else line for line in body.splitlines())
  block = (f"Reproduce the frontier:\n\n    {frontier['command']}\n\n"
           f"{setting_paragraph(frontier)}\n{body}\n\n" + "\n".join(figures) + "\n")
  comparison.write_block(results_doc, block, name="frontier", before=comparison.block_start())


def write_report(frontier: Mapping[str, Any], workdir: str) -> None:
  """``frontier.json``, ``frontier.md`` and one ``frontier_<scenario>.png`` per scenario."""
  outputs.write_json(os.path.join(workdir, "frontier.json"), frontier)
  header = (f"# Frontier\n\nWritten by `{frontier['command']}`.\n\n"
            f"{setting_paragraph(frontier)}\n")
  outputs.write_text(os.path.join(workdir, "frontier.md"),
                     header + frontier_lib.frontier_markdown(frontier, bounds(frontier)))
  for scenario in dict.fromkeys(r["scenario"] for r in frontier["runs"]):
    frontier_lib.plot_frontier(frontier, scenario,
                               os.path.join(workdir, f"frontier_{scenario}.png"))
