"""The convergence bounds of full-batch IEU, as functions of their constants.

Full-batch IEU on a retain loss ``R`` (``mu_R``-strongly convex, ``L_R``-smooth)
and a forget loss ``F`` (convex, ``L_F``-smooth) iterates::

    theta_{t+1} = Phi(theta_t) + sigma * xi_t,      xi_t ~ N(0, I_d),
    Phi(theta)  = (1 - eta * lambda) * theta - eta * (grad R(theta) - alpha_f * grad F(theta)),

which is :func:`ieu_jax._transforms.ieu_transform` with ``learning_rate=eta``,
``ascent_scale=alpha_f``, ``retain_scale=1``, ``weight_decay=lambda`` and
``noise_std=sigma``. ``docs/theory.md`` states and proves the three results whose
right-hand sides this module computes:

1. :func:`contraction_factor` -- ``Phi`` is a ``rho``-contraction when
   ``lambda + mu_R > alpha_f * L_F`` and ``eta * (lambda + L_R) < 2``
   (:func:`contraction_conditions`); without noise
   ``||theta_t - theta_bar|| <= rho**t * ||theta_0 - theta_bar||``
   (:func:`noiseless_distance_bound`).
2. :func:`noisy_sq_distance_bound` -- with noise,
   ``E||theta_t - theta_bar||**2 <= rho**(2t) ||theta_0 - theta_bar||**2
   + d sigma**2 (1 - rho**(2t)) / (1 - rho**2)``.
3. :func:`relearn_steps_bounds` -- gradient descent with step ``eta_r <= 1/L_F``
   on a ``mu_F``-strongly convex, ``L_F``-smooth loss reaches distance ``eps`` of
   its minimiser after a number of steps between two ceilings of logarithms of
   the starting distance.

The constants are exact for quadratics (:func:`hessian_extremes`,
:func:`quadratic_constants`) and bounded from the data matrix for L2-regularised
logistic regression (:func:`logistic_curvature_bounds`). For quadratics the
module also computes the exact quantities the bounds estimate
(:func:`quadratic_ieu_jacobian`, :func:`quadratic_expected_sq_distance`,
:func:`quadratic_stationary_sq_distance`), so tests can measure tightness.

Everything here is a pure NumPy function in float64; nothing changes JAX's global
configuration.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

__all__ = [
    "ContractionConditions",
    "QuadraticConstants",
    "contraction_conditions",
    "contraction_factor",
    "noiseless_distance_bound",
    "noisy_sq_distance_bound",
    "stationary_sq_distance_bound",
    "relearn_steps_bounds",
    "relearn_contraction_factors",
    "hessian_extremes",
    "quadratic_constants",
    "quadratic_ieu_jacobian",
    "quadratic_exact_contraction",
    "quadratic_ieu_fixed_point",
    "quadratic_expected_sq_distance",
    "quadratic_stationary_sq_distance",
    "logistic_curvature_bounds",
    "logistic_ieu_constants",
]


# ----------------------------------------------------------------------------
# Theorem 1: contraction of the drift map.
# ----------------------------------------------------------------------------


class ContractionConditions(NamedTuple):
  """The two conditions of Theorem 1 and the curvature interval of ``Phi``.

  Attributes:
    decay_dominates: ``lambda + mu_R > alpha_f * L_F``, i.e. ``m > 0``.
    step_small_enough: ``eta * (lambda + L_R) < 2``, i.e. ``eta * M < 2``.
    m: ``lambda + mu_R - alpha_f * L_F``, the least curvature of
      ``G = R - alpha_f F + lambda/2 ||.||**2`` that the constants guarantee.
    M: ``lambda + L_R``, the largest curvature of ``G`` they allow.
  """

  decay_dominates: bool
  step_small_enough: bool
  m: float
  M: float

  @property
  def hold(self) -> bool:
    """Whether both conditions hold (then ``rho < 1``)."""
    return bool(self.decay_dominates and self.step_small_enough)


def contraction_conditions(
    eta: float,
    weight_decay: float,
    alpha_f: float,
    mu_R: float,
    L_R: float,
    L_F: float,
) -> ContractionConditions:
  """Checks the conditions of Theorem 1 for the given constants.

  Args:
    eta: step size, ``> 0``.
    weight_decay: ``lambda >= 0``.
    alpha_f: ascent scale ``>= 0``.
    mu_R: strong-convexity constant of ``R``.
    L_R: smoothness constant of ``R`` (``>= mu_R``).
    L_F: smoothness constant of ``F`` (``F`` convex).

  Returns:
    A :class:`ContractionConditions`; its ``hold`` is true iff ``rho < 1``.
  """
  m = weight_decay + mu_R - alpha_f * L_F
  big_m = weight_decay + L_R
  return ContractionConditions(
      decay_dominates=bool(m > 0),
      step_small_enough=bool(eta * big_m < 2),
      m=float(m),
      M=float(big_m),
  )


def contraction_factor(
    eta: float,
    weight_decay: float,
    alpha_f: float,
    mu_R: float,
    L_R: float,
    L_F: float,
) -> float:
  """The Lipschitz constant ``rho`` of the IEU drift map ``Phi`` (Theorem 1).

  ``rho = max(|1 - eta*(lambda + L_R)|, |1 - eta*(lambda + mu_R - alpha_f*L_F)|)``.
  It bounds ``||Phi(x) - Phi(y)|| <= rho ||x - y||`` for all ``x, y`` whenever
  ``R`` is ``mu_R``-strongly convex and ``L_R``-smooth and ``F`` is convex and
  ``L_F``-smooth; it is ``< 1`` exactly when :func:`contraction_conditions` hold.
  The value is returned even when it is ``>= 1`` (then it is still a valid
  Lipschitz constant, but not a contraction).

  Args:
    eta: step size.
    weight_decay: ``lambda``.
    alpha_f: ascent scale.
    mu_R: strong-convexity constant of ``R``.
    L_R: smoothness constant of ``R``.
    L_F: smoothness constant of ``F``.

  Returns:
    ``rho`` as a float.

  Examples:
    >>> contraction_factor(0.1, 1.0, 1.0, mu_R=1.0, L_R=4.0, L_F=1.5)
    0.95
  """
  c = contraction_conditions(eta, weight_decay, alpha_f, mu_R, L_R, L_F)
  return float(max(abs(1.0 - eta * c.M), abs(1.0 - eta * c.m)))


def noiseless_distance_bound(
    t: np.ndarray | int, rho: float, initial_distance: float
) -> np.ndarray:
  """Theorem 1: ``||theta_t - theta_bar|| <= rho**t * ||theta_0 - theta_bar||``.

  Args:
    t: step index or array of step indices (``>= 0``).
    rho: contraction factor from :func:`contraction_factor`.
    initial_distance: ``||theta_0 - theta_bar||``.

  Returns:
    The bound, with the shape of ``t``.
  """
  t = np.asarray(t, dtype=np.float64)
  return initial_distance * np.power(rho, t)


# ----------------------------------------------------------------------------
# Theorem 2: expected squared distance with weight noise.
# ----------------------------------------------------------------------------


def noisy_sq_distance_bound(
    t: np.ndarray | int,
    rho: float,
    initial_sq_distance: float,
    sigma: float,
    d: int,
    *,
    finite_horizon: bool = True,
) -> np.ndarray:
  """Theorem 2: a bound on ``E||theta_t - theta_bar||**2`` under weight noise.

  With ``theta_{t+1} = Phi(theta_t) + sigma * xi_t``, ``xi_t ~ N(0, I_d)``
  independent of the past, and ``Phi`` a ``rho``-contraction with fixed point
  ``theta_bar`` (``rho < 1``)::

      E||theta_t - theta_bar||**2
        <= rho**(2t) ||theta_0 - theta_bar||**2 + d sigma**2 (1 - rho**(2t)) / (1 - rho**2)
        <= rho**(2t) ||theta_0 - theta_bar||**2 + d sigma**2 / (1 - rho**2).

  The first form (``finite_horizon=True``) is exact on an isotropic quadratic;
  the second is SPEC's statement.

  Args:
    t: step index or array of them.
    rho: contraction factor, ``0 <= rho < 1``.
    initial_sq_distance: ``||theta_0 - theta_bar||**2`` (``theta_0`` fixed).
    sigma: per-coordinate standard deviation of the injected weight noise.
    d: number of parameters.
    finite_horizon: use the sharper ``(1 - rho**(2t))`` factor.

  Returns:
    The bound, with the shape of ``t``.

  Raises:
    ValueError: if ``rho >= 1`` (no stationary bound exists; the noisy iterates
      need not stay bounded).
  """
  if not 0.0 <= rho < 1.0:
    raise ValueError(f"Theorem 2 needs 0 <= rho < 1, got rho={rho}.")
  t = np.asarray(t, dtype=np.float64)
  r2t = np.power(rho * rho, t)
  noise = d * sigma**2 / (1.0 - rho * rho)
  if finite_horizon:
    noise = noise * (1.0 - r2t)
  return r2t * initial_sq_distance + noise


def stationary_sq_distance_bound(rho: float, sigma: float, d: int) -> float:
  """The limit ``d sigma**2 / (1 - rho**2)`` of :func:`noisy_sq_distance_bound`.

  Args:
    rho: contraction factor, ``0 <= rho < 1``.
    sigma: per-coordinate noise standard deviation.
    d: number of parameters.

  Returns:
    An upper bound on ``limsup_t E||theta_t - theta_bar||**2``.
  """
  if not 0.0 <= rho < 1.0:
    raise ValueError(f"Theorem 2 needs 0 <= rho < 1, got rho={rho}.")
  return float(d * sigma**2 / (1.0 - rho * rho))


# ----------------------------------------------------------------------------
# Theorem 3: relearning time is weight-space distance.
# ----------------------------------------------------------------------------


def relearn_contraction_factors(
    eta_r: float, mu_F: float, L_F: float
) -> tuple[float, float]:
  """Per-step factors ``(p, q) = (1 - eta_r*L_F, 1 - eta_r*mu_F)`` of Theorem 3.

  For gradient descent with ``0 < eta_r <= 1/L_F`` on a ``mu_F``-strongly convex,
  ``L_F``-smooth loss, ``p * D_k <= D_{k+1} <= q * D_k`` where ``D_k`` is the
  distance to the minimiser.

  Args:
    eta_r: relearning step size.
    mu_F: strong-convexity constant of the relearning loss.
    L_F: its smoothness constant.

  Returns:
    ``(p, q)``, with ``0 <= p <= q < 1``.

  Raises:
    ValueError: if the conditions ``0 < mu_F <= L_F`` and ``0 < eta_r <= 1/L_F``
      fail.
  """
  if not 0.0 < mu_F <= L_F:
    raise ValueError(f"Theorem 3 needs 0 < mu_F <= L_F, got {mu_F}, {L_F}.")
  if not 0.0 < eta_r * L_F <= 1.0:
    raise ValueError(
        f"Theorem 3 needs 0 < eta_r <= 1/L_F; got eta_r*L_F = {eta_r * L_F}."
    )
  return 1.0 - eta_r * L_F, 1.0 - eta_r * mu_F


def _steps_at_rate(ratio: float, factor: float) -> int:
  """Least integer ``k >= 0`` with ``factor**k * ratio <= 1``, ``ratio > 1``."""
  if factor <= 0.0:
    return 1
  k = math.ceil(math.log(ratio) / math.log(1.0 / factor))
  # Guard the ceiling against rounding of the logarithms: move to the exact
  # least integer k with factor**k * ratio <= 1, judged in float64.
  while k > 0 and factor ** (k - 1) * ratio <= 1.0:
    k -= 1
  while factor**k * ratio > 1.0:
    k += 1
  return k


def relearn_steps_bounds(
    initial_distance: float,
    eps: float,
    eta_r: float,
    mu_F: float,
    L_F: float,
) -> tuple[int, int]:
  """Theorem 3: bounds on the first step at which relearning is within ``eps``.

  Gradient descent ``theta_{k+1} = theta_k - eta_r grad F(theta_k)`` from
  ``theta_0 = theta_u`` with ``0 < eta_r <= 1/L_F`` on a ``mu_F``-strongly convex,
  ``L_F``-smooth ``F`` with minimiser ``theta_F*``. Let
  ``T = min{k >= 0 : ||theta_k - theta_F*|| <= eps}`` and
  ``D = ||theta_u - theta_F*||``. If ``D <= eps`` then ``T = 0``; otherwise::

      ceil(log(D/eps) / log(1/(1 - eta_r L_F))) <= T <= ceil(log(D/eps) / log(1/(1 - eta_r mu_F)))

  (the lower bound is read as 1 when ``eta_r = 1/L_F``, where ``log(1/0)`` is
  infinite and one step is needed anyway; the upper as 1 when
  ``eta_r mu_F = 1``). Each ceiling is computed as the least integer ``k`` with
  ``factor**k * D <= eps``, which is the same number without rounding trouble.

  Args:
    initial_distance: ``D = ||theta_u - theta_F*||``.
    eps: target distance, ``> 0``.
    eta_r: relearning step size.
    mu_F: strong-convexity constant of ``F``.
    L_F: smoothness constant of ``F``.

  Returns:
    ``(lower, upper)`` integers with ``lower <= T <= upper``.

  Examples:
    >>> relearn_steps_bounds(1.0, 1e-3, eta_r=0.5, mu_F=0.1, L_F=1.0)
    (10, 135)
  """
  if eps <= 0:
    raise ValueError(f"eps must be > 0, got {eps}.")
  p, q = relearn_contraction_factors(eta_r, mu_F, L_F)
  if initial_distance <= eps:
    return 0, 0
  ratio = initial_distance / eps
  return _steps_at_rate(ratio, p), _steps_at_rate(ratio, q)


# ----------------------------------------------------------------------------
# Constants of quadratic losses (exact).
# ----------------------------------------------------------------------------


class QuadraticConstants(NamedTuple):
  """Exact constants of ``R = 1/2 (x-a)'A(x-a)`` and ``F = 1/2 (x-b)'B(x-b)``."""

  mu_R: float
  L_R: float
  L_F: float


def hessian_extremes(hessian: np.ndarray) -> tuple[float, float]:
  """Least and largest eigenvalue of a symmetric matrix.

  For a quadratic loss these are its exact strong-convexity and smoothness
  constants.

  Args:
    hessian: a symmetric ``(d, d)`` array.

  Returns:
    ``(lambda_min, lambda_max)`` in float64.
  """
  h = np.asarray(hessian, dtype=np.float64)
  eig = np.linalg.eigvalsh(0.5 * (h + h.T))
  return float(eig[0]), float(eig[-1])


def quadratic_constants(A: np.ndarray, B: np.ndarray) -> QuadraticConstants:
  """``(mu_R, L_R, L_F)`` for quadratic ``R`` (Hessian ``A``) and ``F`` (``B``).

  Args:
    A: Hessian of the retain loss, symmetric positive definite.
    B: Hessian of the forget loss, symmetric positive semidefinite.

  Returns:
    A :class:`QuadraticConstants`.

  Raises:
    ValueError: if ``A`` is not positive definite or ``B`` not semidefinite
      (up to rounding), so the theorems' assumptions fail.
  """
  mu_r, l_r = hessian_extremes(A)
  b_min, l_f = hessian_extremes(B)
  scale = max(abs(l_r), abs(l_f), 1.0)
  if mu_r <= 0:
    raise ValueError(f"A must be positive definite, least eigenvalue {mu_r}.")
  if b_min < -1e-12 * scale:
    raise ValueError(f"B must be positive semidefinite, least eigenvalue {b_min}.")
  return QuadraticConstants(mu_R=mu_r, L_R=l_r, L_F=max(l_f, 0.0))


def quadratic_ieu_jacobian(
    A: np.ndarray,
    B: np.ndarray,
    eta: float,
    weight_decay: float,
    alpha_f: float,
) -> np.ndarray:
  """The (constant) Jacobian ``(1 - eta*lambda) I - eta (A - alpha_f B)`` of ``Phi``.

  Args:
    A: Hessian of ``R``.
    B: Hessian of ``F``.
    eta: step size.
    weight_decay: ``lambda``.
    alpha_f: ascent scale.

  Returns:
    The symmetric ``(d, d)`` Jacobian in float64.
  """
  A = np.asarray(A, dtype=np.float64)
  B = np.asarray(B, dtype=np.float64)
  d = A.shape[0]
  return (1.0 - eta * weight_decay) * np.eye(d) - eta * (A - alpha_f * B)


def quadratic_exact_contraction(
    A: np.ndarray,
    B: np.ndarray,
    eta: float,
    weight_decay: float,
    alpha_f: float,
) -> float:
  """The smallest Lipschitz constant of ``Phi`` on a quadratic: ``||J||_2``.

  It never exceeds :func:`contraction_factor` of :func:`quadratic_constants`,
  and equals it when the extreme eigenvalues of ``A - alpha_f B`` are
  ``mu_R - alpha_f L_F`` and ``L_R`` (e.g. ``A`` and ``B`` share eigenvectors
  and ``B``'s top eigenvector is ``A``'s bottom one).

  Args:
    A: Hessian of ``R``.
    B: Hessian of ``F``.
    eta: step size.
    weight_decay: ``lambda``.
    alpha_f: ascent scale.

  Returns:
    The spectral radius (= norm, ``J`` being symmetric) of the Jacobian.
  """
  lo, hi = hessian_extremes(
      quadratic_ieu_jacobian(A, B, eta, weight_decay, alpha_f)
  )
  return float(max(abs(lo), abs(hi)))


def quadratic_ieu_fixed_point(
    A: np.ndarray,
    a: np.ndarray,
    B: np.ndarray,
    b: np.ndarray,
    weight_decay: float,
    alpha_f: float,
) -> np.ndarray:
  """The fixed point ``theta_bar`` of ``Phi`` for quadratic ``R`` and ``F``.

  ``theta_bar`` solves ``(lambda I + A - alpha_f B) theta = A a - alpha_f B b``;
  it does not depend on ``eta``.

  Args:
    A: Hessian of ``R = 1/2 (x-a)'A(x-a)``.
    a: minimiser of ``R``.
    B: Hessian of ``F = 1/2 (x-b)'B(x-b)``.
    b: minimiser of ``F``.
    weight_decay: ``lambda``.
    alpha_f: ascent scale.

  Returns:
    ``theta_bar`` in float64.
  """
  A = np.asarray(A, dtype=np.float64)
  B = np.asarray(B, dtype=np.float64)
  d = A.shape[0]
  lhs = weight_decay * np.eye(d) + A - alpha_f * B
  rhs = A @ np.asarray(a, np.float64) - alpha_f * (B @ np.asarray(b, np.float64))
  return np.linalg.solve(lhs, rhs)


def quadratic_expected_sq_distance(
    t: np.ndarray | int,
    jacobian: np.ndarray,
    initial_offset: np.ndarray,
    sigma: float,
) -> np.ndarray:
  """Exact ``E||theta_t - theta_bar||**2`` of noisy IEU on a quadratic.

  On a quadratic ``theta_{t+1} - theta_bar = J (theta_t - theta_bar) + sigma xi_t``,
  so with ``J = sum_i j_i u_i u_i'``::

      E||theta_t - theta_bar||**2 = ||J**t e_0||**2
                                    + sigma**2 sum_i (1 - j_i**(2t)) / (1 - j_i**2)

  (the ``i``-th term is ``t sigma**2`` when ``|j_i| = 1``).

  Args:
    t: step index or array of them.
    jacobian: the symmetric Jacobian ``J`` (:func:`quadratic_ieu_jacobian`).
    initial_offset: ``e_0 = theta_0 - theta_bar``.
    sigma: per-coordinate noise standard deviation.

  Returns:
    The exact expectation, with the shape of ``t``.
  """
  t = np.asarray(t, dtype=np.float64)
  j, u = np.linalg.eigh(np.asarray(jacobian, np.float64))
  c = u.T @ np.asarray(initial_offset, np.float64)
  j2 = j * j
  pw = np.power(j2[None, :], t.reshape(-1, 1))  # (T, d)
  mean_part = pw @ (c * c)
  with np.errstate(divide="ignore", invalid="ignore"):
    geo = np.where(
        np.isclose(j2, 1.0, rtol=0, atol=1e-15),
        t.reshape(-1, 1),
        (1.0 - pw) / (1.0 - j2[None, :]),
    )
  out = mean_part + sigma**2 * geo.sum(axis=1)
  return out.reshape(t.shape)


def quadratic_stationary_sq_distance(jacobian: np.ndarray, sigma: float) -> float:
  """Exact ``lim_t E||theta_t - theta_bar||**2 = sigma**2 sum_i 1/(1 - j_i**2)``.

  It is ``sigma**2 trace((I - J**2)**-1)``, the trace of the stationary
  covariance, and is at most ``d sigma**2 / (1 - rho**2)`` with equality iff all
  ``|j_i| = rho`` (e.g. ``J = rho I``).

  Args:
    jacobian: symmetric Jacobian with spectral radius ``< 1``.
    sigma: per-coordinate noise standard deviation.

  Returns:
    The stationary expected squared distance.
  """
  j = np.linalg.eigvalsh(np.asarray(jacobian, np.float64))
  if np.max(np.abs(j)) >= 1.0:
    raise ValueError("The Jacobian must have spectral radius < 1.")
  return float(sigma**2 * np.sum(1.0 / (1.0 - j * j)))


# ----------------------------------------------------------------------------
# Constants of L2-regularised logistic regression (bounds from the data).
# ----------------------------------------------------------------------------


def logistic_curvature_bounds(x: np.ndarray, l2: float = 0.0) -> tuple[float, float]:
  """Curvature bounds of mean logistic loss plus ``l2/2 ||theta||**2``.

  For ``f(theta) = (1/n) sum_i log(1 + exp(-y_i x_i'theta)) + l2/2 ||theta||**2``
  with labels ``y_i = +-1`` the Hessian is ``(1/n) X' D X + l2 I`` with
  ``D = diag(s_i (1 - s_i))``, ``0 < s_i (1 - s_i) <= 1/4``. Hence ``f`` is
  ``l2``-strongly convex and ``(l2 + ||X||_2**2 / (4n))``-smooth. The smoothness
  bound is attained in the limit ``theta -> 0`` (``s_i = 1/2``); the convexity
  bound ``l2`` is the infimum over ``theta``.

  Args:
    x: data matrix ``(n, d)``.
    l2: L2 coefficient, ``>= 0``.

  Returns:
    ``(mu, L)`` in float64.
  """
  x = np.asarray(x, dtype=np.float64)
  n = x.shape[0]
  top = np.linalg.norm(x, 2) ** 2 if n else 0.0
  return float(l2), float(l2 + top / (4.0 * n))


def logistic_ieu_constants(
    x_retain: np.ndarray,
    x_forget: np.ndarray,
    retain_l2: float,
) -> QuadraticConstants:
  """Theorem 1's ``(mu_R, L_R, L_F)`` for logistic retain and forget losses.

  ``R`` is the mean logistic loss on the retain set plus
  ``retain_l2/2 ||theta||**2``; ``F`` is the mean logistic loss on the forget set
  (convex, no regulariser).

  Args:
    x_retain: retain data matrix ``(n_r, d)``.
    x_forget: forget data matrix ``(n_f, d)``.
    retain_l2: the L2 coefficient of ``R``, ``> 0``.

  Returns:
    Valid (not necessarily attained) constants as a :class:`QuadraticConstants`.
  """
  mu_r, l_r = logistic_curvature_bounds(x_retain, retain_l2)
  _, l_f = logistic_curvature_bounds(x_forget, 0.0)
  return QuadraticConstants(mu_R=mu_r, L_R=l_r, L_F=l_f)
