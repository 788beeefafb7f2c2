"""Checks the bounds of :mod:`ieu_jax.theory` against real IEU trajectories.

:func:`run_theory_check` runs full-batch IEU (the product's
:func:`ieu_jax._transforms.ieu_transform`, in float64 inside a
``jax.enable_x64`` context) and gradient-descent relearning (``optax.sgd``) on
problems whose constants are known: quadratics (exact, from the Hessians'
spectra) and logistic regression (bounded from the data matrices). It sweeps a
grid of settings on both sides of every condition
(:mod:`ieu_jax.theory.problems`), runs the trajectories
(:mod:`ieu_jax.theory.simulate`), compares every one with its bound, writes
``theory.json`` and PNG plots (:mod:`ieu_jax.theory.plots`) to the workdir
through :mod:`ieu_jax.outputs`, and returns the same dictionary.
``experiments/theory_check.py`` is the command-line entry.

How a comparison is judged (the same rules are stated in ``docs/theory.md``):

* Deterministic bounds (Theorem 1, the coupling form of Theorem 2, Theorem 3's
  per-step sandwich) hold when ``observed <= bound * (1 + FP_RTOL)`` at every
  step. ``FP_RTOL = 1e-9`` is fixed in advance, only absorbs float64 rounding in
  settings built to attain a bound with equality, and is far below any margin
  by which a wrong statement is violated; the raw margins are reported.
* Theorem 2 bounds an *expectation*. For quadratics the exact expectation is
  computed in closed form and compared as above. The Monte-Carlo mean over
  ``K`` noisy trajectories is compared by a one-sided test: the bound is
  rejected at step ``t`` when ``mean_t - Z_THRESHOLD * stderr_t > bound_t``.
* Theorem 3's step counts are integers and compared exactly.
"""

from __future__ import annotations

import math
import os
from typing import Any

import jax
import numpy as np

from ieu_jax import outputs
from ieu_jax import pipeline
from ieu_jax.theory import bounds
from ieu_jax.theory import constants
from ieu_jax.theory import plots as plots_lib
from ieu_jax.theory import problems as problems_lib
from ieu_jax.theory import simulate

__all__ = [
    "FP_RTOL",
    "Z_THRESHOLD",
    "check_theorem1",
    "check_theorem2",
    "check_theorem3",
    "format_summary",
    "run_theory_check",
]

FP_RTOL = 1e-9
Z_THRESHOLD = 5.0


# ============================================================================
# Comparisons.
# ============================================================================


def _upper_margin(observed, bound):
  """Worst relative margin ``min_{t >= 1} 1 - observed_t / bound_t``.

  Step 0 is left out: there observed and bound agree by definition.
  """
  observed = np.asarray(observed)[1:]
  bound = np.asarray(bound)[1:]
  if observed.size == 0:
    return 0.0
  with np.errstate(divide="ignore", invalid="ignore"):
    rel = np.where(bound > 0, 1.0 - observed / bound,
                   np.where(observed <= 0, 0.0, -np.inf))
  return float(np.min(rel))


def _respected(margin):
  return bool(margin >= -FP_RTOL)


def _horizon(rho, steps, floor=1e-6):
  """Steps to compare: the bound stays above ``floor`` of its start."""
  if rho <= 0 or rho >= 1:
    return steps
  return int(min(steps, math.floor(math.log(floor) / math.log(rho))))


def _summary(settings):
  applicable = [s for s in settings if s["conditions_hold"]]
  margins = [s["worst_margin"] for s in applicable
             if s["worst_margin"] is not None]
  return dict(
      settings=settings,
      n_settings=len(settings),
      n_conditions_hold=len(applicable),
      n_respected=sum(bool(s["holds"]) for s in applicable),
      all_respected=all(bool(s["holds"]) for s in applicable),
      worst_margin=min(margins) if margins else None,
  )


# ============================================================================
# Theorem 1.
# ============================================================================


def check_theorem1(problems: dict[str, dict[str, Any]], quick: bool,
                   steps: int) -> tuple[dict[str, Any], list[tuple]]:
  """Theorem 1: noiseless IEU against ``rho**t`` times its starting distance.

  Args:
    problems: the IEU problems (:func:`ieu_jax.theory.problems.ieu_problems`).
    quick: fewer settings.
    steps: IEU steps per trajectory.

  Returns:
    The summary of every setting (as in ``theory.json``) and the curves to plot.
  """
  rng = np.random.default_rng(1)
  results, curves = [], []
  settings = problems_lib.theorem1_settings(problems, quick)
  for pname, sname, eta, lam, alpha in settings:
    prob = problems[pname]
    if callable(alpha):
      alpha = alpha(prob, lam)
    c = prob["consts"]
    cond = bounds.contraction_conditions(eta, lam, alpha, *c)
    rho = bounds.contraction_factor(eta, lam, alpha, *c)
    start = 2.0 * rng.standard_normal(prob["d"])
    if "slowest eigenvector" in sname:
      # J's eigenvalue on Q[:, 0] is 1 - eta*(lambda + mu_R - alpha_f*L_F) = rho.
      start = (problems_lib.fixed_point(prob, eta, alpha, lam, rho)
               + 2.0 * prob["raw"]["Q"][:, 0])
    path = simulate.run_ieu(prob["kind"], steps, prob["data_r"],
                            prob["data_f"], start[None], [0], eta, alpha, lam,
                            0.0)[0]
    entry = dict(problem=pname, setting=sname,
                 params=dict(eta=eta, weight_decay=lam, alpha_f=alpha),
                 constants=c._asdict(),
                 conditions=dict(decay_dominates=cond.decay_dominates,
                                 step_small_enough=cond.step_small_enough,
                                 m=cond.m, M=cond.M),
                 conditions_hold=cond.hold, rho=rho)
    exact_rho = None
    if prob["kind"] == "quadratic":
      raw = prob["raw"]
      exact_rho = constants.quadratic_exact_contraction(raw["A"], raw["B"], eta,
                                                     lam, alpha)
      entry["exact_rho"] = exact_rho
    theta_bar = None
    if cond.hold or prob["kind"] == "quadratic":
      try:
        theta_bar = problems_lib.fixed_point(prob, eta, alpha, lam, rho)
      except np.linalg.LinAlgError:
        theta_bar = None
      if theta_bar is not None and not np.all(np.isfinite(theta_bar)):
        theta_bar = None
    norms = np.linalg.norm(path - path[0], axis=1)
    entry["finite"] = bool(np.all(np.isfinite(path)))
    if theta_bar is not None:
      dist = np.linalg.norm(path - theta_bar, axis=1)
      h = _horizon(rho, steps)
      t = np.arange(h + 1)
      bound = bounds.noiseless_distance_bound(t, rho, dist[0])
      margin = _upper_margin(dist[: h + 1], bound)
      entry.update(
          initial_distance=float(dist[0]), final_distance=float(dist[-1]),
          compared_steps=h, worst_margin=margin,
          # the Lipschitz bound rho**t D0 holds for any rho; it says nothing
          # useful (growth) when the conditions fail.
          lipschitz_bound_respected=_respected(margin),
          empirical_rate=float((dist[h] / dist[0]) ** (1.0 / h)) if h else None,
      )
      entry["holds"] = _respected(margin) if cond.hold else None
      curves.append((f"{pname}: {sname}", t, dist[: h + 1], bound, cond.hold))
    else:
      # When the conditions hold, Theorem 1 promises a unique fixed point:
      # failing to find one is a failure of the statement or of the code.
      entry.update(holds=False if cond.hold else None, worst_margin=None,
                   final_norm_change=float(norms[-1]))
      curves.append((f"{pname}: {sname} (no fixed point)", np.arange(steps + 1),
                     norms, None, cond.hold))
    if not cond.hold:
      entry["what_happens"] = _describe_failure(path, theta_bar)
    results.append(entry)
  return _summary(results), curves


def _describe_failure(path, theta_bar):
  ref = theta_bar if theta_bar is not None else path[0]
  dist = np.linalg.norm(path - ref, axis=1)
  steps = len(dist) - 1
  rate = float((dist[-1] / dist[0]) ** (1.0 / steps)) if dist[0] > 0 else None
  if not np.all(np.isfinite(dist)):
    verdict = "diverges to non-finite values"
  elif dist[-1] > 10 * max(dist[0], 1e-12):
    verdict = "diverges"
  elif dist[-1] < 1e-3 * dist[0]:
    verdict = "converges anyway (the condition is sufficient, not necessary)"
  else:
    verdict = "neither converges nor diverges within the horizon"
  what = "distance to the fixed point" if theta_bar is not None else (
      "distance from the start (no fixed point exists)")
  return dict(verdict=verdict, measured=what, start=float(dist[0]),
              end=float(dist[-1]), per_step_rate=rate)


# ============================================================================
# Theorem 2.
# ============================================================================


def check_theorem2(problems: dict[str, dict[str, Any]], quick: bool,
                   steps: int,
                   num_runs: int) -> tuple[dict[str, Any], list[tuple]]:
  """Theorem 2: noisy IEU's mean squared distance against its bound.

  Every setting also checks the synchronous coupling (two starts, the same
  noise) against Theorem 1's bound.

  Args:
    problems: the IEU problems (:func:`ieu_jax.theory.problems.ieu_problems`).
    quick: fewer settings.
    steps: IEU steps per trajectory.
    num_runs: Monte-Carlo trajectories per setting.

  Returns:
    The summary of every setting (as in ``theory.json``) and the curves to plot.
  """
  problems, grid = problems_lib.theorem2_settings(problems, quick)
  rng = np.random.default_rng(2)
  results, curves = [], []
  for pname, sname, eta, lam, alpha, sigma in grid:
    prob = problems[pname]
    if callable(alpha):
      alpha = alpha(prob, lam)
    c = prob["consts"]
    d = prob["d"]
    cond = bounds.contraction_conditions(eta, lam, alpha, *c)
    rho = bounds.contraction_factor(eta, lam, alpha, *c)
    theta_bar = problems_lib.fixed_point(prob, eta, alpha, lam, rho)
    start = theta_bar + rng.standard_normal(d)
    other = theta_bar + 3.0 * rng.standard_normal(d)
    seeds = np.arange(num_runs) + 1000
    starts = np.concatenate([np.tile(start, (num_runs, 1)), other[None]])
    paths = simulate.run_ieu(prob["kind"], steps, prob["data_r"],
                             prob["data_f"], starts,
                             np.concatenate([seeds, seeds[:1]]), eta, alpha,
                             lam, sigma)
    mc, coupled = paths[:num_runs], paths[num_runs]
    sq = np.sum((mc - theta_bar) ** 2, axis=2)  # (K, T+1)
    mean = sq.mean(axis=0)
    stderr = sq.std(axis=0, ddof=1) / math.sqrt(num_runs)
    t = np.arange(steps + 1)
    e0 = float(np.sum((start - theta_bar) ** 2))
    entry = dict(problem=pname, setting=sname,
                 params=dict(eta=eta, weight_decay=lam, alpha_f=alpha,
                             sigma=sigma, d=d, num_runs=num_runs),
                 constants=c._asdict(), conditions_hold=cond.hold, rho=rho,
                 conditions=dict(decay_dominates=cond.decay_dominates,
                                 step_small_enough=cond.step_small_enough))
    if not cond.hold:
      tail = mean[-20:]
      rate = float((tail[-1] / tail[0]) ** (1.0 / (len(tail) - 1)))
      entry.update(holds=None, worst_margin=None,
                   what_happens=dict(
                       verdict=(f"diverges (mean squared distance grows by"
                                f" {rate:.4f} per step)" if rate > 1.0
                                else "stays bounded"),
                       mean_sq_distance_start=float(mean[0]),
                       mean_sq_distance_end=float(mean[-1])))
      curves.append((f"{pname}: {sname}", t, mean, stderr, None, None, None,
                     False))
      results.append(entry)
      continue
    bound = bounds.noisy_sq_distance_bound(t, rho, e0, sigma, d)
    spec_bound = bounds.noisy_sq_distance_bound(t, rho, e0, sigma, d,
                                                finite_horizon=False)
    # Monte Carlo: one-sided test of the expectation at every step.
    # Step 0 is deterministic (every run starts at theta_0): left out.
    with np.errstate(divide="ignore", invalid="ignore"):
      zscores = np.where(stderr[1:] > 0, (bound - mean)[1:] / stderr[1:],
                         np.inf)
    mc_ok = bool(np.all(zscores >= -Z_THRESHOLD))
    mc_margin = _upper_margin(mean, bound)
    entry.update(
        initial_sq_distance=e0,
        stationary_bound=bounds.stationary_sq_distance_bound(rho, sigma, d),
        mc_final_mean=float(mean[-1]), mc_worst_margin=mc_margin,
        mc_worst_z=float(np.min(zscores)), mc_respected=mc_ok)
    ok = mc_ok
    worst = mc_margin
    exact = None
    if prob["kind"] == "quadratic":
      raw = prob["raw"]
      jac = constants.quadratic_ieu_jacobian(raw["A"], raw["B"], eta, lam,
                                             alpha)
      exact = constants.quadratic_expected_sq_distance(
          t, jac, start - theta_bar, sigma)
      exact_margin = _upper_margin(exact, bound)
      try:
        stationary = constants.quadratic_stationary_sq_distance(jac, sigma)
      except ValueError:  # |J| >= 1: no stationary distribution exists
        stationary = math.inf
      entry.update(exact_worst_margin=exact_margin,
                   exact_respected=_respected(exact_margin),
                   exact_stationary=stationary,
                   stationary_tightness=stationary / entry["stationary_bound"],
                   mc_vs_exact_worst_z=float(np.max(
                       np.abs(mean - exact)[1:] / stderr[1:])))
      ok = ok and _respected(exact_margin)
      worst = exact_margin
    # Synchronous coupling: same noise, two starts.
    h = _horizon(rho, steps)
    gap = np.linalg.norm(mc[0, : h + 1] - coupled[: h + 1], axis=1)
    coupling_bound = bounds.noiseless_distance_bound(np.arange(h + 1), rho,
                                                     gap[0])
    coupling_margin = _upper_margin(gap, coupling_bound)
    entry.update(coupling_worst_margin=coupling_margin,
                 coupling_respected=_respected(coupling_margin))
    ok = ok and _respected(coupling_margin)
    entry.update(holds=ok, worst_margin=min(worst, coupling_margin))
    curves.append((f"{pname}: {sname}", t, mean, stderr, exact, bound,
                   spec_bound, True))
    results.append(entry)
  return _summary(results), curves


# ============================================================================
# Theorem 3.
# ============================================================================


def check_theorem3(problems: dict[str, dict[str, Any]], quick: bool,
                   steps: int) -> tuple[dict[str, Any], list[tuple]]:
  """Theorem 3: relearning step counts and the per-step sandwich.

  Args:
    problems: the IEU problems (:func:`ieu_jax.theory.problems.ieu_problems`);
      the logistic relearning starts from IEU's fixed point on one of them.
    quick: fewer settings.
    steps: gradient steps per relearning trajectory.

  Returns:
    The summary of every setting (as in ``theory.json``) and the curves to plot.
  """
  grid = problems_lib.theorem3_settings(problems, quick)
  results, curves = [], []
  for prob, pname, step_scale, cond in grid:
    mu, lip = prob["consts"]
    eta_r = step_scale / lip
    names = list(prob["starts"])
    starts = np.stack([prob["starts"][n] for n in names])
    paths = simulate.run_relearn(prob["kind"], steps, prob["data"], starts,
                                 eta_r)
    for i, sname in enumerate(names):
      dist = np.linalg.norm(paths[i] - prob["opt"], axis=1)
      d0 = float(dist[0])
      epsilons = d0 * np.array([0.3, 0.1, 1e-2, 1e-3, 1e-4, 1e-5])
      observed = []
      for eps in epsilons:
        hit = np.nonzero(dist <= eps)[0]
        observed.append(int(hit[0]) if hit.size else None)  # None: censored
      entry = dict(problem=pname, start=sname,
                   params=dict(eta_r=eta_r, eta_r_times_L_F=step_scale),
                   constants=dict(mu_F=mu, L_F=lip), conditions_hold=cond,
                   initial_distance=d0, epsilons=epsilons.tolist(),
                   observed_steps=observed)
      if not cond:
        if observed[-1] is None:
          verdict = "diverges: never within eps (censored)"
        elif step_scale >= 2:
          verdict = ("converges from this start only: it has no component"
                     " along the unstable eigenvector")
        else:
          verdict = ("converges, but 1 - eta_r*L_F < 0: the lower bound's"
                     " formula is undefined")
        entry.update(holds=None, worst_margin=None, what_happens=dict(
            verdict=verdict,
            final_distance=float(dist[-1])))
        curves.append((f"{pname} {sname}, eta_r*L_F={step_scale}", epsilons,
                       observed, None, None, d0, False))
        results.append(entry)
        continue
      step_bounds = [bounds.relearn_steps_bounds(d0, e, eta_r, mu, lip)
                for e in epsilons]
      step_ok = all(o is not None and lo <= o <= hi
                    for o, (lo, hi) in zip(observed, step_bounds))
      step_margin = min(
          (min(o - lo, hi - o) if o is not None else -1)
          for o, (lo, hi) in zip(observed, step_bounds))
      # Per-step sandwich p**k D0 <= D_k <= q**k D0.
      # Each side is compared while it stays above 1e-6 of D0 (see _horizon).
      p, qf = bounds.relearn_contraction_factors(eta_r, mu, lip)
      h = _horizon(qf, steps)
      upper = d0 * qf ** np.arange(h + 1)
      up_margin = _upper_margin(dist[: h + 1], upper)
      hp = _horizon(p, steps) if p > 0 else 0
      lower = d0 * p ** np.arange(hp + 1)
      with np.errstate(divide="ignore", invalid="ignore"):
        low_rel = np.where(dist[1 : hp + 1] > 0,
                           1.0 - lower[1:] / dist[1 : hp + 1],
                           np.where(lower[1:] > 0, -np.inf, 0.0))
      low_margin = float(np.min(low_rel)) if hp else 0.0
      entry.update(bounds=[list(b) for b in step_bounds],
                   steps_within_bounds=step_ok,
                   worst_step_margin=int(step_margin),
                   upper_tight_at=[int(o == hi) for o, (_, hi)
                                   in zip(observed, step_bounds)],
                   lower_tight_at=[int(o == lo) for o, (lo, _)
                                   in zip(observed, step_bounds)],
                   per_step_upper_margin=up_margin,
                   per_step_lower_margin=low_margin)
      holds = step_ok and _respected(up_margin) and _respected(low_margin)
      entry.update(holds=holds, worst_margin=min(up_margin, low_margin))
      curves.append((f"{pname} {sname}, eta_r*L_F={step_scale}", epsilons,
                     observed, [b[0] for b in step_bounds],
                     [b[1] for b in step_bounds], d0, True))
      results.append(entry)
  return _summary(results), curves


# ============================================================================
# Entry point.
# ============================================================================


@pipeline.locks_workdir
def run_theory_check(workdir: str, *, quick: bool = False,
                     num_runs: int | None = None,
                     plots: bool = True) -> dict[str, Any]:
  """Runs every bound of :mod:`ieu_jax.theory` against real trajectories.

  Args:
    workdir: directory for ``theory.json`` and the PNG plots (created);
      only process 0 writes them.
    quick: fewer settings, steps and Monte-Carlo runs (for tests).
    num_runs: Monte-Carlo trajectories per Theorem 2 setting (default 2000,
      500 when ``quick``).
    plots: whether to write the PNG plots.

  Returns:
    The dictionary written to ``theory.json`` (by
    :func:`ieu_jax.outputs.write_json`: non-finite numbers as null): for each
    bound, every setting with its conditions, whether the bound held (``None``
    where the conditions fail, with ``what_happens`` instead), the worst margin,
    and a summary; ``all_respected`` is true iff every bound whose conditions
    hold held.
  """
  steps1 = 120 if quick else 300
  steps2 = 80 if quick else 200
  steps3 = 400 if quick else 600
  num_runs = num_runs or (500 if quick else 2000)
  with jax.enable_x64(True):
    problems = problems_lib.ieu_problems(quick)
    t1, c1 = check_theorem1(problems, quick, steps1)
    t2, c2 = check_theorem2(problems, quick, steps2, num_runs)
    t3, c3 = check_theorem3(problems, quick, steps3)
  by_bound = {"theorem1_contraction": t1, "theorem2_noisy_sq_distance": t2,
              "theorem3_relearn_steps": t3}
  written = []
  if plots:
    written = plots_lib.write_plots(workdir, c1, c2, c3,
                                    z_threshold=Z_THRESHOLD)
  result = dict(
      all_respected=all(b["all_respected"] for b in by_bound.values()),
      fp_rtol=FP_RTOL, z_threshold=Z_THRESHOLD, quick=quick,
      bounds=by_bound, plots=written)
  outputs.write_json(os.path.join(workdir, "theory.json"), result)
  return result


def format_summary(result: dict[str, Any]) -> str:
  """A few lines per bound: how many settings held, the worst margin, failures.

  Args:
    result: the dictionary returned by :func:`run_theory_check`.

  Returns:
    A human-readable multi-line summary.
  """
  lines = []
  for name, b in result["bounds"].items():
    worst = b["worst_margin"]
    lines.append(
        f"{name}: {b['n_respected']}/{b['n_conditions_hold']} settings with"
        f" conditions holding respect the bound (worst relative margin"
        f" {'n/a' if worst is None else format(worst, '.3g')});"
        f" {b['n_settings'] - b['n_conditions_hold']} with"
        " conditions failing:")
    for s in b["settings"]:
      label = s.get("setting") or s.get("start")
      if s["conditions_hold"]:
        if not s["holds"]:
          lines.append(f"  VIOLATED: {s['problem']} / {label}"
                       f" {s.get('params', {})}: worst margin"
                       f" {s['worst_margin']}")
      else:
        verdict = s["what_happens"]["verdict"]
        extra = s.get("params", {})
        lines.append(f"  [conditions fail] {s['problem']} / {label} {extra}:"
                     f" {verdict}")
  lines.append("ALL BOUNDS RESPECTED" if result["all_respected"] else
               "SOME BOUND VIOLATED")
  return "\n".join(lines)

