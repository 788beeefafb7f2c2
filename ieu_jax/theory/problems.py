"""The problems and settings on which the checker tries the bounds.

:mod:`ieu_jax.theory.check` runs quadratics (constants exact, from the
Hessians' spectra) and logistic regression (constants bounded from the data
matrices), for each theorem over a grid of settings on both sides of its
conditions. Every instance is drawn from a fixed NumPy seed, so the check is
deterministic.

A problem is a dict: ``kind`` (``"quadratic"`` or ``"logistic"``, see
:mod:`ieu_jax.theory.simulate`), ``d`` (the number of weights), ``data_r`` and
``data_f`` (the retain and forget losses' data), ``consts`` (a
:class:`ieu_jax.theory.constants.QuadraticConstants`) and ``raw`` (the
quadratic's matrices and centres, ``None`` for logistic regression).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ieu_jax.theory import bounds
from ieu_jax.theory import constants
from ieu_jax.theory import simulate

__all__ = [
    "fixed_point",
    "ieu_problems",
    "theorem1_settings",
    "theorem2_settings",
    "theorem3_settings",
]


def _orthogonal(rng, d):
  q, r = np.linalg.qr(rng.standard_normal((d, d)))
  return q * np.sign(np.diag(r))


def _aligned_quadratic(rng, d, mu_r, l_r, l_f):
  """``A``, ``B`` sharing eigenvectors; ``B``'s top sits on ``A``'s bottom.

  Then ``A - alpha B`` has extreme eigenvalues exactly ``mu_R - alpha L_F`` and
  ``L_R``: Theorem 1's rho is the exact contraction factor.
  """
  q = _orthogonal(rng, d)
  a_eig = np.concatenate([[mu_r], rng.uniform(mu_r, l_r, d - 2), [l_r]])
  b_eig = np.concatenate([[l_f], rng.uniform(0, l_f, d - 2), [0.0]])
  a_mat = (q * a_eig) @ q.T
  b_mat = (q * b_eig) @ q.T
  return dict(A=0.5 * (a_mat + a_mat.T), B=0.5 * (b_mat + b_mat.T), Q=q,
              a=rng.standard_normal(d), b=rng.standard_normal(d))


def _random_quadratic(rng, d, rank_f=2):
  g = rng.standard_normal((2 * d, d))
  a_mat = g.T @ g / (2 * d) + 0.5 * np.eye(d)
  h = rng.standard_normal((rank_f, d))
  b_mat = h.T @ h / rank_f
  return dict(A=0.5 * (a_mat + a_mat.T), B=0.5 * (b_mat + b_mat.T),
              a=rng.standard_normal(d), b=rng.standard_normal(d))


def _logistic_data(rng, n, d, w):
  x = rng.standard_normal((n, d))
  y = np.where(x @ w + 0.5 * rng.standard_normal(n) > 0, 1.0, -1.0)
  return x, y


# ============================================================================
# The IEU problems (Theorems 1 and 2).
# ============================================================================


def ieu_problems(quick: bool) -> dict[str, dict[str, Any]]:
  """The IEU problems: aligned and random quadratics, logistic regression.

  Args:
    quick: one random quadratic instead of three.

  Returns:
    The problems (see the module docstring), by name.
  """
  rng = np.random.default_rng(0)
  d = 6
  problems = {}
  aligned = _aligned_quadratic(rng, d, mu_r=1.0, l_r=10.0, l_f=4.0)
  # The constants are set by construction; quadratic_constants recovers them
  # up to rounding (tests check that), but exact values keep the boundary
  # setting lambda + mu_R = alpha_f * L_F exactly on the boundary.
  problems["quadratic-aligned"] = dict(
      kind="quadratic", d=d, data_r=(aligned["A"], aligned["a"]),
      data_f=(aligned["B"], aligned["b"]),
      consts=constants.QuadraticConstants(mu_R=1.0, L_R=10.0, L_F=4.0),
      raw=aligned)
  for seed in range(1 if quick else 3):
    rq = _random_quadratic(np.random.default_rng(100 + seed), d)
    problems[f"quadratic-random-{seed}"] = dict(
        kind="quadratic", d=d, data_r=(rq["A"], rq["a"]),
        data_f=(rq["B"], rq["b"]),
        consts=constants.quadratic_constants(rq["A"], rq["B"]), raw=rq)
  dl = 5
  w = rng.standard_normal(dl)
  xr, yr = _logistic_data(rng, 80, dl, w)
  xf, yf = _logistic_data(rng, 20, dl, w)
  for l2 in (0.1, 0.0):
    problems[f"logistic-l2={l2}"] = dict(
        kind="logistic", d=dl, data_r=(xr, yr, l2), data_f=(xf, yf, 0.0),
        consts=constants.logistic_ieu_constants(xr, xf, l2), raw=None)
  return problems


def fixed_point(problem: dict[str, Any], eta: float, alpha_f: float,
                lam: float, rho: float) -> np.ndarray | None:
  """The fixed point ``theta_bar`` of IEU's drift map on ``problem``.

  Args:
    problem: an IEU problem (:func:`ieu_problems`).
    eta: step size.
    alpha_f: ascent scale.
    lam: weight decay.
    rho: contraction factor of the drift map (sets how long the NumPy
      iteration runs on logistic problems).

  Returns:
    ``theta_bar``, exact for quadratics and found by iteration then Newton
    steps for logistic regression; ``None`` for a quadratic whose system is
    (numerically) singular, which has no isolated fixed point.
  """
  kind = problem["kind"]
  dr, df = problem["data_r"], problem["data_f"]
  if kind == "quadratic":
    lhs = lam * np.eye(problem["d"]) + dr[0] - alpha_f * df[0]
    if np.linalg.cond(lhs) > 1e10:
      return None  # (numerically) singular: no isolated fixed point
    return constants.quadratic_ieu_fixed_point(dr[0], dr[1], df[0], df[1], lam,
                                               alpha_f)

  def grad(th):
    return (simulate.np_grad(kind, th, dr)
            - alpha_f * simulate.np_grad(kind, th, df) + lam * th)

  def hess(th):
    return (simulate.np_hess(kind, th, dr)
            - alpha_f * simulate.np_hess(kind, th, df)
            + lam * np.eye(th.size))

  return simulate.np_minimise(grad, hess, np.zeros(problem["d"]),
                              lambda th: th - eta * grad(th), rho)


def _alpha_half(problem, lam):
  """Half the largest ``alpha_f`` that Theorem 1's condition allows."""
  c = problem["consts"]
  return 0.5 * (lam + c.mu_R) / c.L_F


def _alpha_sufficient_fails(problem, lam):
  """An ``alpha_f`` violating Theorem 1's condition for which ``Phi`` contracts.

  Between ``(lambda + mu_R)/L_F`` (where the condition stops holding) and the
  ``alpha`` where ``lambda + lambda_min(A - alpha B)`` reaches 0 (where the
  quadratic stops contracting).
  """
  a_mat, b_mat = problem["raw"]["A"], problem["raw"]["B"]
  c = problem["consts"]
  lo = (lam + c.mu_R) / c.L_F
  hi = lo
  while lam + constants.hessian_extremes(a_mat - hi * b_mat)[0] > 0:
    hi *= 1.5
  for _ in range(60):
    mid = 0.5 * (lo + hi)
    if lam + constants.hessian_extremes(a_mat - mid * b_mat)[0] > 0:
      lo = mid
    else:
      hi = mid
  base = (lam + c.mu_R) / c.L_F
  return base + 0.5 * (lo - base)


# ============================================================================
# The settings of each theorem.
# ============================================================================


def theorem1_settings(problems: dict[str, dict[str, Any]],
                      quick: bool) -> list[tuple]:
  """``(problem, name, eta, lambda, alpha_f)`` for Theorem 1.

  ``alpha_f`` is a number, or a function of ``(problem, lambda)`` returning one.

  Args:
    problems: the IEU problems (:func:`ieu_problems`).
    quick: leave out two of the aligned quadratic's settings.

  Returns:
    The settings, in the order they are checked.
  """
  grid = [
      ("quadratic-aligned", "decay dominates ascent", 0.05, 1.0, 0.25),
      ("quadratic-aligned", "start on the slowest eigenvector (tight)", 0.05,
       1.0, 0.25),
      ("quadratic-aligned", "large step, still < 2", 0.17, 0.5, 0.1),
      ("quadratic-aligned", "decay barely dominates", 0.05, 1.2, 0.5),
      ("quadratic-aligned", "boundary lambda+mu_R = alpha_f*L_F", 0.05, 1.0,
       0.5),
      ("quadratic-aligned", "ascent without decay", 0.05, 0.0, 0.5),
      ("quadratic-aligned", "step too large", 0.2, 1.0, 0.25),
  ]
  for name in problems:
    if name.startswith("quadratic-random"):
      grid.append((name, "decay dominates ascent", 0.3, 0.5, _alpha_half))
      grid.append((name, "condition fails, converges anyway", 0.3, 0.5,
                   _alpha_sufficient_fails))
  grid += [
      ("logistic-l2=0.1", "decay dominates ascent", 1.0, 0.1, 0.2),
      ("logistic-l2=0.0", "decay dominates ascent", 1.0, 0.4, 0.5),
      ("logistic-l2=0.0", "ascent without decay", 1.0, 0.0, 1.0),
  ]
  if quick:
    grid = [g for g in grid if g[1] not in ("large step, still < 2",
                                            "decay barely dominates")]
  return grid


def theorem2_settings(
    problems: dict[str, dict[str, Any]], quick: bool
) -> tuple[dict[str, dict[str, Any]], list[tuple]]:
  """Theorem 2's problems and ``(problem, name, eta, lambda, alpha_f, sigma)``.

  Args:
    problems: the IEU problems (:func:`ieu_problems`).
    quick: leave out the random quadratic's setting.

  Returns:
    ``problems`` with an isotropic quadratic added (where the bound is exact),
    and the settings, in the order they are checked (``alpha_f`` as in
    :func:`theorem1_settings`).
  """
  iso_d = 6
  iso = dict(kind="quadratic", d=iso_d,
             data_r=(3.0 * np.eye(iso_d), np.ones(iso_d)),
             data_f=(np.eye(iso_d), -np.ones(iso_d)),
             consts=constants.quadratic_constants(3.0 * np.eye(iso_d),
                                                  np.eye(iso_d)),
             raw=dict(A=3.0 * np.eye(iso_d), B=np.eye(iso_d),
                      a=np.ones(iso_d), b=-np.ones(iso_d)))
  problems = dict(problems, **{"quadratic-isotropic": iso})
  grid = [
      ("quadratic-isotropic", "isotropic (bound exact)", 0.1, 0.5, 1.0, 0.05),
      ("quadratic-aligned", "decay dominates ascent", 0.05, 1.0, 0.25, 0.05),
      ("quadratic-random-0", "decay dominates ascent", 0.3, 0.5, _alpha_half,
       0.1),
      ("logistic-l2=0.1", "decay dominates ascent", 1.0, 0.1, 0.2, 0.05),
      ("quadratic-aligned", "ascent without decay", 0.05, 0.0, 0.5, 0.05),
  ]
  if quick:
    grid = [g for g in grid if g[0] != "quadratic-random-0"]
  return problems, grid


def theorem3_settings(problems: dict[str, dict[str, Any]],
                      quick: bool) -> list[tuple]:
  """``(problem, name, eta_r * L_F, conditions hold)`` for Theorem 3.

  The relearning problems are a quadratic with known spectrum and the logistic
  forget loss plus a small L2 term; each is a dict with ``kind``, ``data``,
  ``opt`` (the minimiser), ``consts`` (``(mu_F, L_F)``) and ``starts`` (named
  starting weights). The logistic problem starts, among others, from the
  weights IEU converges to on the ``logistic-l2=0.1`` problem of Theorem 1.

  Args:
    problems: the IEU problems (:func:`ieu_problems`).
    quick: leave out the settings with ``eta_r * L_F = 0.25``.

  Returns:
    The settings, in the order they are checked.
  """
  rng = np.random.default_rng(3)
  d = 6
  q = _orthogonal(rng, d)
  mu_f, l_f = 0.5, 4.0
  eig = np.concatenate([[mu_f], rng.uniform(mu_f, l_f, d - 2), [l_f]])
  b_mat = (q * eig) @ q.T
  b_mat = 0.5 * (b_mat + b_mat.T)
  centre = rng.standard_normal(d)
  quad = dict(kind="quadratic", data=(b_mat, centre), opt=centre,
              consts=constants.hessian_extremes(b_mat),
              starts={"slowest eigenvector": centre + 2.0 * q[:, 0],
                      "fastest eigenvector": centre + 2.0 * q[:, -1],
                      "random": centre + rng.standard_normal(d),
                      "random far": centre + 10.0 * rng.standard_normal(d)})
  # Logistic relearning loss: forget loss with a small L2 term; start from the
  # weights IEU converged to on the logistic problem of Theorem 1.
  lp = problems["logistic-l2=0.1"]
  xf, yf, _ = lp["data_f"]
  l2 = 0.05
  data_f = (xf, yf, l2)
  mu_l, l_l = constants.logistic_curvature_bounds(xf, l2)

  def grad_f(th):
    return simulate.np_grad("logistic", th, data_f)

  opt = simulate.np_minimise(
      grad_f, lambda th: simulate.np_hess("logistic", th, data_f),
      np.zeros(xf.shape[1]), lambda th: th - grad_f(th) / l_l, 1 - mu_l / l_l)
  c1 = lp["consts"]
  rho1 = bounds.contraction_factor(1.0, 0.1, 0.2, *c1)
  unlearned = fixed_point(lp, 1.0, 0.2, 0.1, rho1)
  logi = dict(kind="logistic", data=data_f, opt=opt, consts=(mu_l, l_l),
              starts={"IEU fixed point": unlearned,
                      "random": opt + 3.0 * rng.standard_normal(xf.shape[1])})
  grid = [
      (quad, "quadratic", 1.0, True), (quad, "quadratic", 0.5, True),
      (quad, "quadratic", 0.25, True),
      (logi, "logistic-l2=0.05", 1.0, True),
      (logi, "logistic-l2=0.05", 0.5, True),
      (quad, "quadratic", 1.9, False), (quad, "quadratic", 2.1, False),
  ]
  if quick:
    grid = [g for g in grid if g[2] != 0.25]
  return grid
