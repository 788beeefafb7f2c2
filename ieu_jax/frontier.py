"""The hyperparameter frontier: forgetting against utility, from ``frontier.json``.

A sweep trains many settings of each unlearning method per scenario and seed and
records, for each, its metrics against Retrain's (``frontier.json``, one object
with a list ``runs``; each run has ``scenario``, ``seed``, ``retrain`` with UA, RA,
TA and MIA, and ``methods``: a list of settings per method name). Everything here
is a pure function of that object:

* :func:`forgetting_gap` and :func:`utility_loss` place a setting in the plane:
  the gap counts how far its forgetting is from Retrain's, in either direction
  (``|UA - UA_R| + |MIA - MIA_R|``); the loss counts only utility *below* Retrain's
  (``max(0, RA_R - RA) + max(0, TA_R - TA)``), so a setting that keeps more utility
  than Retrain loses nothing.
* :func:`pareto_flags` marks the settings no other setting of the same method beats
  on both; :func:`annotate` writes both coordinates and the flag into every setting.
* :func:`matched_utility` compares methods at matched utility: per seed, the best
  any setting reaches among those within a utility-loss bound; then mean and std
  over seeds, and verdicts on the paper's claims that only count a difference
  larger than the seed spread.
* :func:`frontier_markdown` and :func:`plot_frontier` report them.

Metrics are percentages. Standard deviations over seeds are population standard
deviations (``ddof=0``), as in :func:`ieu_jax.pipeline.aggregate`.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Mapping, Sequence

import numpy as np

from ieu_jax import outputs

__all__ = [
    "BASELINES",
    "CLAIMS",
    "annotate",
    "forgetting_gap",
    "frontier_markdown",
    "matched_utility",
    "pareto_flags",
    "plot_frontier",
    "utility_loss",
]

BASELINES = ("FT", "RL", "SCRUB", "SalUn")

CLAIMS = {
    "1_smaller_gap": "IEU reaches a smaller forgetting gap than each of FT, RL, SCRUB and"
                     " SalUn at matched utility",
    "2_higher_worst_case_rcd": "IEU reaches a higher worst-case normalised RCD than each"
                               " of FT, RL, SCRUB and SalUn at matched utility",
}

# Float slack on a bound: a loss of 3.0000000000000004 points counts as within 3.
_TOLERANCE = 1e-9

_SUPPORTED, _NOT, _WITHIN, _NA = "supported", "not supported", "within seed spread", "n/a"


def _metric(row: Mapping[str, Any], key: str, what: str) -> float:
  """``row[key]`` as a finite float, or a ValueError naming ``what`` and the value."""
  if key not in row:
    raise ValueError(f"{what} has no {key!r} (keys: {sorted(row)}).")
  value = row[key]
  try:
    value = float(value)
  except (TypeError, ValueError):
    raise ValueError(f"{what} has {key}={value!r}, not a number.") from None
  if not math.isfinite(value):
    raise ValueError(f"{what} has {key}={value!r}, not a finite number.")
  return value


VIEWS = {"test": ("TA", "MIA"), "val": ("VA", "MIA_val")}
_SPLIT = {"test": "test", "val": "validation"}
"""The data a frontier is judged on (``frontier["selection"]``, default ``"test"``):
the held-out accuracy and the MIA's non-members come from the test split, or from
the validation split (``VA``, ``MIA_val``), so that choosing settings never reads
the test split. UA and RA are on the forget and retain sets either way."""


def _view(view: str) -> tuple[str, str]:
  if view not in VIEWS:
    raise ValueError(f"selection={view!r}: use one of {sorted(VIEWS)}.")
  return VIEWS[view]


def forgetting_gap(setting: Mapping[str, Any], retrain: Mapping[str, Any],
                   view: str = "test") -> float:
  """``|UA - UA_R| + |MIA - MIA_R|``: distance from Retrain's forgetting, in points.

  Args:
    setting: a mapping with finite ``UA`` and ``MIA`` (percentages).
    retrain: Retrain's metrics, with finite ``UA`` and ``MIA``.
    view: ``"test"``, or ``"val"`` to read ``MIA_val`` for ``MIA`` (:data:`VIEWS`).

  Returns:
    The gap, >= 0 (0: forgets exactly as Retrain does).

  Raises:
    ValueError: a metric is missing or not a finite number.
  """
  mia = _view(view)[1]
  return (abs(_metric(setting, "UA", "setting") - _metric(retrain, "UA", "retrain"))
          + abs(_metric(setting, mia, "setting") - _metric(retrain, mia, "retrain")))


def utility_loss(setting: Mapping[str, Any], retrain: Mapping[str, Any],
                 view: str = "test") -> float:
  """``max(0, RA_R - RA) + max(0, TA_R - TA)``: utility below Retrain's, in points.

  Args:
    setting: a mapping with finite ``RA`` and ``TA`` (percentages).
    retrain: Retrain's metrics, with finite ``RA`` and ``TA``.
    view: ``"test"``, or ``"val"`` to read ``VA`` for ``TA`` (:data:`VIEWS`).

  Returns:
    The loss, >= 0 (0: at least Retrain's retain and test accuracy).

  Raises:
    ValueError: a metric is missing or not a finite number.
  """
  held = _view(view)[0]
  return (max(0.0, _metric(retrain, "RA", "retrain") - _metric(setting, "RA", "setting"))
          + max(0.0, _metric(retrain, held, "retrain") - _metric(setting, held, "setting")))


def pareto_flags(gaps: Sequence[float], losses: Sequence[float]) -> np.ndarray:
  """Which points no other point beats: lower gap and lower loss are better.

  A point is Pareto when no other point is at least as good in both coordinates
  and strictly better in one; exact duplicates do not beat each other, so both are
  Pareto. A point with a non-finite coordinate (NaN: a diverged setting) is never
  Pareto and beats no other point.

  Args:
    gaps: forgetting gaps, one per point (1-D).
    losses: utility losses, as many as ``gaps``.

  Returns:
    A boolean array, one flag per point.

  Raises:
    ValueError: the inputs are not 1-D or not of one length.
  """
  g = np.asarray(gaps, np.float64)
  l = np.asarray(losses, np.float64)
  if g.ndim != 1 or l.ndim != 1 or g.shape != l.shape:
    raise ValueError(f"gaps of shape {g.shape} and losses of shape {l.shape}: give two 1-D"
                     " sequences of one length.")
  valid = np.isfinite(g) & np.isfinite(l)
  # beats[j, i]: point j beats point i.
  no_worse = (g[:, None] <= g[None, :]) & (l[:, None] <= l[None, :])
  better = (g[:, None] < g[None, :]) | (l[:, None] < l[None, :])
  beats = no_worse & better & valid[:, None]
  return valid & ~beats.any(axis=0)


def _rcd_worst(setting: Mapping[str, Any]) -> float | None:
  """The setting's worst-case normalised RCD; None when not computed (or not finite)."""
  rcd = setting.get("rcd")
  if rcd is None:
    return None
  value = rcd.get("worst_case_normalized")
  if value is None:
    return None
  try:
    value = float(value)
  except (TypeError, ValueError):
    raise ValueError(f"rcd has worst_case_normalized={value!r}, not a number.") from None
  return value if math.isfinite(value) else None


def annotate(frontier: Mapping[str, Any]) -> dict[str, Any]:
  """A copy of ``frontier`` with each setting placed in the plane.

  The plane is that of ``frontier["selection"]`` (:data:`VIEWS`; default ``"test"``).

  Every setting gains ``forgetting_gap`` and ``utility_loss`` (None when it
  diverged) and ``pareto`` (among the settings of its method on its run; False
  when it diverged). Every run gains ``pareto_size`` and ``diverged_settings``,
  ``{method: count}``. The input is not modified.

  Args:
    frontier: the ``frontier.json`` object.

  Returns:
    The annotated copy.

  Raises:
    ValueError: no ``runs``, a run without ``scenario``, ``seed``, ``retrain`` or
      ``methods``, two runs of one scenario and seed, or a setting that did not
      diverge but lacks a finite metric (the error names it).
  """
  if "runs" not in frontier or not isinstance(frontier["runs"], (list, tuple)):
    raise ValueError(f"frontier has no list 'runs' (keys: {sorted(frontier)}).")
  view = frontier.get("selection", "test")
  _view(view)
  out = copy.deepcopy(dict(frontier))
  seen = set()
  for i, run in enumerate(out["runs"]):
    for key in ("scenario", "seed", "retrain", "methods"):
      if key not in run:
        raise ValueError(f"runs[{i}] has no {key!r} (keys: {sorted(run)}).")
    cell = (run["scenario"], run["seed"])
    if cell in seen:
      raise ValueError(f"runs[{i}]: scenario {cell[0]!r} seed {cell[1]!r} appears twice.")
    seen.add(cell)
    run["pareto_size"], run["diverged_settings"] = {}, {}
    for name, settings in run["methods"].items():
      gaps, losses = [], []
      for k, s in enumerate(settings):
        if "diverged" not in s:
          raise ValueError(f"{cell[0]} seed {cell[1]} {name}[{k}] has no 'diverged'.")
        if s["diverged"]:
          gaps.append(math.nan)
          losses.append(math.nan)
          continue
        where = f"{cell[0]} seed {cell[1]} {name}[{k}]"
        try:
          gaps.append(forgetting_gap(s, run["retrain"], view))
          losses.append(utility_loss(s, run["retrain"], view))
        except ValueError as e:
          raise ValueError(f"{where}: {e}") from None
      flags = pareto_flags(gaps, losses)
      for s, g, l, p in zip(settings, gaps, losses, flags):
        s["forgetting_gap"] = None if math.isnan(g) else g
        s["utility_loss"] = None if math.isnan(l) else l
        s["pareto"] = bool(p)
      run["pareto_size"][name] = int(flags.sum())
      run["diverged_settings"][name] = int(sum(bool(s["diverged"]) for s in settings))
  return out


def _scenarios(runs: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
  """Runs by scenario (first-seen order), each scenario's runs sorted by seed."""
  by: dict[str, list] = {}
  for run in runs:
    by.setdefault(run["scenario"], []).append(run)
  return {s: sorted(r, key=lambda run: run["seed"]) for s, r in by.items()}


def _mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
  """Mean and population std, or (None, None) when any value is None (or none given)."""
  if not values or any(v is None for v in values):
    return None, None
  v = np.asarray(values, np.float64)
  return float(v.mean()), float(v.std())


def _compare(ieu: Mapping[str, Any], other: Mapping[str, Any] | None, name: str, key: str,
             better: str) -> dict[str, Any]:
  """One baseline's verdict on one measure: IEU's mean against the baseline's."""
  if other is None:
    return {"verdict": _NA, "why": "not run"}
  a, sa = ieu[f"{key}_mean"], ieu[f"{key}_std"]
  b, sb = other[f"{key}_mean"], other[f"{key}_std"]
  if a is None or b is None:
    who = " and ".join(n for n, v in (("IEU", a), (name, b)) if v is None)
    out = {"verdict": _NA, "why": f"{who}: no value on some seed"}
    # The baseline ran on every seed, and where it has no value it had no eligible
    # setting (it could not keep its utility), not merely no RCD.
    lost = all(g is None for g, v in zip(other["gap"], other[key]) if v is None)
    if a is not None and not other.get("seeds_not_run") and lost:
      out["unmatched"] = True
    return out
  diff, spread = a - b, sa + sb
  if abs(diff) <= spread:
    verdict = _WITHIN
  else:
    verdict = _SUPPORTED if (diff < 0 if better == "lower" else diff > 0) else _NOT
  return {"verdict": verdict, "ieu": a, "baseline": b, "difference": diff, "spread": spread}


def _overall(versus: Mapping[str, Mapping[str, Any]]) -> tuple[str, list[str]]:
  """A claim against every baseline, and the baselines it was judged without.

  A clear loss to any one baseline refutes it. A baseline that ran but has no value
  at this bound on some seed (it could not keep its utility there, while IEU could)
  is named and left out of the judgement; one that was not run, or IEU without a
  value, leaves the claim n/a, as does a claim with no baseline left to judge by.
  """
  if any(v["verdict"] == _NOT for v in versus.values()):
    return _NOT, []
  without = [b for b, v in versus.items() if v.get("unmatched")]
  judged = [v["verdict"] for b, v in versus.items() if b not in without]
  if not judged or _NA in judged:
    return _NA, []
  return (_WITHIN if _WITHIN in judged else _SUPPORTED), without


def _best(methods: Mapping[str, Mapping[str, Any]], key: str, better: str) -> list[str]:
  """The methods (ties kept) with the best mean of ``key``; only methods with a mean."""
  means = {n: m[f"{key}_mean"] for n, m in methods.items() if m[f"{key}_mean"] is not None}
  if not means:
    return []
  target = (min if better == "lower" else max)(means.values())
  return [n for n, v in means.items() if v == target]


def check_bounds(bounds: Sequence[float]) -> tuple[float, ...]:
  bounds = tuple(bounds)
  if not bounds:
    raise ValueError("bounds=(): give at least one utility-loss bound.")
  for b in bounds:
    if isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b) or b < 0:
      raise ValueError(f"utility-loss bound {b!r} is not a finite number >= 0.")
  return tuple(float(b) for b in bounds)


def matched_utility(frontier: Mapping[str, Any],
                    bounds: Sequence[float] = (1.0, 3.0)) -> dict[str, dict[float, Any]]:
  """Methods compared at matched utility, per scenario and utility-loss bound.

  On each seed, a method's *eligible* settings are those that did not diverge and
  lose at most ``bound`` points of utility (with 1e-9 points of float slack). Its best gap on that seed is the
  smallest forgetting gap among them; its best RCD is the highest worst-case
  normalised RCD among the eligible settings that have one (RCD is computed for
  some settings only). Then mean and std over seeds.

  A seed on which a method has no eligible setting (or did not run the method)
  is not dropped: it is counted (``seeds_without``), and the method gets no mean
  (None) for that scenario and bound, so it cannot look better by losing its
  hardest seeds. Likewise for RCD (``rcd_seeds_without``: seeds with no eligible
  setting that has an RCD).

  Verdicts, per baseline in :data:`BASELINES`: ``supported`` when IEU's mean is
  better by more than the seed spread (the sum of the two stds), ``not
  supported`` when worse by more than it, ``within seed spread`` otherwise, and
  ``n/a`` when IEU or the baseline was not run or has no mean. A claim overall:
  ``not supported`` if any baseline clearly beats IEU; else the baselines that ran
  but have no mean while IEU has one (no eligible setting on some seed: they could
  not keep their utility within the bound) are left out and named in ``without``;
  then ``n/a`` if any remaining comparison is n/a or none remains, else ``within
  seed spread`` if any is, else ``supported``.

  Args:
    frontier: the ``frontier.json`` object (annotated or not).
    bounds: utility-loss bounds, points.

  Returns:
    ``{scenario: {bound: {"seeds": [...], "methods": {name: {...}}, "claims":
    {claim: {"verdict", "versus": {baseline: {...}}}}, "smallest_gap": [names],
    "highest_worst_case_rcd": [names]}}}``. Each method's entry has per-seed
    ``gap`` and ``rcd`` (None where none), ``gap_mean``, ``gap_std``,
    ``rcd_mean``, ``rcd_std``, ``seeds_with``, ``seeds_without`` (of which
    ``seeds_not_run`` did not run the method),
    ``rcd_seeds_with`` and ``rcd_seeds_without``. ``smallest_gap`` and
    ``highest_worst_case_rcd`` list the methods (ties kept) with the best mean,
    among the methods that have one.

  Raises:
    ValueError: as :func:`annotate`, or a bound that is not a finite number >= 0.
  """
  bounds = check_bounds(bounds)
  out: dict[str, dict[float, Any]] = {}
  for scenario, runs in _scenarios(annotate(frontier)["runs"]).items():
    names = list(dict.fromkeys(n for run in runs for n in run["methods"]))
    out[scenario] = {}
    for bound in bounds:
      methods = {}
      for name in names:
        gaps, rcds = [], []
        for run in runs:
          ok = [s for s in run["methods"].get(name, ())
                if not s["diverged"] and s["utility_loss"] <= bound + _TOLERANCE]
          gaps.append(min((s["forgetting_gap"] for s in ok), default=None))
          rcds.append(max((r for r in map(_rcd_worst, ok) if r is not None), default=None))
        gap_mean, gap_std = _mean_std(gaps)
        rcd_mean, rcd_std = _mean_std(rcds)
        methods[name] = {
            "gap": gaps, "gap_mean": gap_mean, "gap_std": gap_std,
            "rcd": rcds, "rcd_mean": rcd_mean, "rcd_std": rcd_std,
            "seeds_with": sum(g is not None for g in gaps),
            "seeds_without": sum(g is None for g in gaps),
            "seeds_not_run": sum(name not in run["methods"] for run in runs),
            "rcd_seeds_with": sum(r is not None for r in rcds),
            "rcd_seeds_without": sum(r is None for r in rcds),
        }
      claims = {}
      for claim, key, better in (("1_smaller_gap", "gap", "lower"),
                                 ("2_higher_worst_case_rcd", "rcd", "higher")):
        if "IEU" not in methods:
          versus = {b: {"verdict": _NA, "why": "IEU was not run"} for b in BASELINES}
        else:
          versus = {b: _compare(methods["IEU"], methods.get(b), b, key, better) for b in BASELINES}
        verdict, without = _overall(versus)
        claims[claim] = {"verdict": verdict, "without": without, "versus": versus}
      out[scenario][bound] = {
          "seeds": [run["seed"] for run in runs], "methods": methods, "claims": claims,
          "smallest_gap": _best(methods, "gap", "lower"),
          "highest_worst_case_rcd": _best(methods, "rcd", "higher"),
      }
  return out


def _verdict_detail(c: Mapping[str, Any]) -> str:
  """One claim's per-baseline verdicts, with the numbers behind each."""
  parts = []
  for b, v in c["versus"].items():
    if "why" in v:
      parts.append(f"{b} n/a ({v['why']})")
    else:
      parts.append(f"{b} {v['verdict']} (IEU {outputs.fmt(v['ieu'])} vs {outputs.fmt(v['baseline'])},"
                   f" difference {outputs.fmt(v['difference'])}, spread {outputs.fmt(v['spread'])})")
  return "; ".join(parts)


def _cell(claim: Mapping[str, Any]) -> str:
  """A claim's verdict, with the baselines it was judged without."""
  without = claim.get("without") or []
  return claim["verdict"] + (f" (without {', '.join(without)})" if without else "")


def frontier_markdown(frontier: Mapping[str, Any], bounds: Sequence[float] = (1.0, 3.0)) -> str:
  """The frontier's report: verdicts per bound, then a table per scenario and bound.

  Every number is computed here from ``frontier`` (:func:`annotate`,
  :func:`matched_utility`); none is typed in.

  Args:
    frontier: the ``frontier.json`` object.
    bounds: the utility-loss bounds, points.

  Returns:
    Markdown text, ending in a newline.

  Raises:
    ValueError: as :func:`matched_utility`.
  """
  fmt = outputs.fmt
  view = frontier.get("selection", "test")
  held, mia = _view(view)
  annotated = annotate(frontier)
  matched = matched_utility(annotated, bounds)
  by_scenario = _scenarios(annotated["runs"])
  lines = [
      "# Hyperparameter frontier: forgetting against utility",
      "",
      f"Percentages, on the {_SPLIT[view]} split. Forgetting gap: |UA - UA_Retrain| +"
      f" |{mia} - {mia}_Retrain| (0: forgets as Retrain does). Utility loss: max(0,"
      f" RA_Retrain - RA) + max(0, {held}_Retrain - {held}) (0: at least Retrain's utility)."
      " At matched utility, a method's eligible settings on a seed"
      " are those that did not diverge and lose at most the bound; its best gap is the"
      " smallest gap among them, its best RCD the highest worst-case normalised RCD among"
      " those that have one (RCD is computed for some settings only). Mean ± std over seeds"
      " (population std); a method with no eligible setting on some seed gets no mean (n/a)."
      " A verdict is supported or not supported only where IEU's mean and the baseline's"
      " differ by more than the sum of their stds; otherwise within seed spread. A claim"
      " overall: not supported if any baseline clearly beats IEU; else a baseline with no mean"
      " while IEU has one (no eligible setting on some seed) is left out and named beside the"
      " verdict; then n/a if any other comparison is n/a, else within seed spread if any is,"
      " else supported. Pareto set: the settings of"
      " a method on a seed that no other setting beats on both gap and loss.",
      "",
  ]
  scenarios = list(matched)
  for bound in check_bounds(bounds):
    lines += [f"## Verdicts at utility loss <= {fmt(bound)} points", ""]
    rows = [[text] + [_cell(matched[s][bound]["claims"][key]) for s in scenarios]
            for key, text in CLAIMS.items()]
    lines += [outputs.markdown_table(["claim"] + scenarios, rows), ""]
    for s in scenarios:
      b = matched[s][bound]
      for key in CLAIMS:
        lines.append(f"- {s}, claim {key.split('_')[0]}: {_verdict_detail(b['claims'][key])}.")
      lines.append(f"- {s}: smallest mean gap: {', '.join(b['smallest_gap']) or 'n/a'};"
                   f" highest mean worst-case RCD: {', '.join(b['highest_worst_case_rcd']) or 'n/a'}.")
    lines.append("")
  for s in scenarios:
    runs = by_scenario[s]
    seeds = ", ".join(str(run["seed"]) for run in runs)
    lines += [f"## {s}", "", f"Seeds {seeds} (per-seed columns in this order).", ""]
    for bound in matched[s]:
      b = matched[s][bound]
      rows = []
      for name, m in b["methods"].items():
        pareto = ", ".join(str(run["pareto_size"].get(name, 0)) for run in runs)
        diverged = ", ".join(f"{run['diverged_settings'].get(name, 0)}/{len(run['methods'].get(name, ()))}"
                             for run in runs)
        rows.append([name, f"{m['seeds_with']}/{len(runs)}",
                     outputs.fmt_mean_std(m["gap_mean"], m["gap_std"]),
                     outputs.fmt_mean_std(m["rcd_mean"], m["rcd_std"]),
                     f"{m['rcd_seeds_with']}/{len(runs)}", pareto, diverged])
      header = ["method", "seeds with an eligible setting", "best gap", "best worst-case RCD",
                "seeds with an eligible RCD", "Pareto-set size per seed",
                "diverged settings per seed"]
      lines += [f"### Utility loss <= {fmt(bound)} points", "",
                outputs.markdown_table(header, rows), ""]
  return "\n".join(lines)


_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")


def plot_frontier(frontier: Mapping[str, Any], scenario: str, path: str,
                  seed: Any = None) -> dict[str, Any]:
  """Draws one scenario's frontier on one seed to ``path`` (PNG through matplotlib, Agg).

  x is the utility loss, y the forgetting gap (lower-left is better; Retrain, the
  reference, is the star at the origin). Each method's settings are points with a
  marker of their own, coloured by worst-case normalised RCD (a colourbar; grey
  where RCD was not computed; no colourbar when no setting has one); its Pareto
  set is joined by a step curve (the edge of the region its settings beat).
  Diverged settings have no coordinates: the legend counts them. One seed, not
  all: the Pareto set is a per-seed notion, and points of several seeds in one
  panel would mix frontiers.

  Args:
    frontier: the ``frontier.json`` object.
    scenario: the scenario to draw.
    path: where to write the figure.
    seed: the seed to draw; None: the smallest seed of the scenario.

  Returns:
    What was drawn: ``{"seed", "methods": {name: {"loss", "gap", "rcd",
    "pareto_loss", "pareto_gap", "diverged"}}}`` (settings that did not diverge,
    in their order; the Pareto points sorted by loss).

  Raises:
    ValueError: an unknown scenario or seed, or as :func:`annotate`.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  by_scenario = _scenarios(annotate(frontier)["runs"])
  if scenario not in by_scenario:
    raise ValueError(f"unknown scenario {scenario!r}: the frontier has {sorted(by_scenario)}.")
  runs = {run["seed"]: run for run in by_scenario[scenario]}
  if seed is None:
    seed = min(runs)
  if seed not in runs:
    raise ValueError(f"scenario {scenario!r} has no seed {seed!r}: it has {sorted(runs)}.")
  run = runs[seed]
  drawn = {}
  for name, settings in run["methods"].items():
    ok = [s for s in settings if not s["diverged"]]
    pareto = sorted((s["utility_loss"], s["forgetting_gap"]) for s in ok if s["pareto"])
    drawn[name] = {"loss": [s["utility_loss"] for s in ok],
                   "gap": [s["forgetting_gap"] for s in ok],
                   "rcd": [_rcd_worst(s) for s in ok],
                   "pareto_loss": [p[0] for p in pareto], "pareto_gap": [p[1] for p in pareto],
                   "diverged": run["diverged_settings"][name]}
  rcds = [r for d in drawn.values() for r in d["rcd"] if r is not None]
  norm = matplotlib.colors.Normalize(min(rcds), max(rcds)) if rcds else None
  cmap = matplotlib.colormaps["viridis"]
  fig, ax = plt.subplots(figsize=(7.5, 5.5))
  for k, (name, d) in enumerate(drawn.items()):
    marker = _MARKERS[k % len(_MARKERS)]
    label = name + (f" ({d['diverged']} diverged)" if d["diverged"] else "")
    line, = ax.plot(d["pareto_loss"], d["pareto_gap"], drawstyle="steps-post", lw=1.2,
                    gid=f"{name}:pareto")
    has = [i for i, r in enumerate(d["rcd"]) if r is not None]
    grey = [i for i, r in enumerate(d["rcd"]) if r is None]
    if has:
      ax.scatter([d["loss"][i] for i in has], [d["gap"][i] for i in has],
                 c=[d["rcd"][i] for i in has], cmap=cmap, norm=norm, marker=marker, s=45,
                 edgecolors=line.get_color(), linewidths=1.2, zorder=3, gid=f"{name}:rcd")
    if grey:
      ax.scatter([d["loss"][i] for i in grey], [d["gap"][i] for i in grey], color="0.65",
                 marker=marker, s=45, edgecolors=line.get_color(), linewidths=1.2, zorder=3,
                 gid=f"{name}:no-rcd")
    ax.scatter([], [], marker=marker, color="w", edgecolors=line.get_color(), label=label)
  ax.scatter([0.0], [0.0], marker="*", s=180, color="k", zorder=4, label="Retrain (reference)",
             gid="Retrain")
  if norm is not None:
    fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax,
                 label="worst-case normalised RCD (grey: not computed)")
  held, mia = _view(frontier.get("selection", "test"))
  ax.set_xlabel(f"utility loss (points below Retrain's RA and {held})")
  ax.set_ylabel(f"forgetting gap (|UA - UA_R| + |{mia} - {mia}_R|)")
  ax.set_title(f"{scenario}, seed {seed}: each method's settings; lines: Pareto sets\n"
               "(lower-left is better)", fontsize=10)
  ax.legend(fontsize=8)
  fig.tight_layout()
  outputs.save_figure(fig, path, dpi=120)
  return {"seed": seed, "methods": drawn}
