"""The three convergence bounds of full-batch IEU, as functions of their constants.

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

The constants come from :mod:`ieu_jax.theory.constants`. Everything here is a
pure NumPy function in float64; nothing changes JAX's global configuration.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

__all__ = [
    "ContractionConditions",
    "contraction_conditions",
    "contraction_factor",
    "noiseless_distance_bound",
    "noisy_sq_distance_bound",
    "stationary_sq_distance_bound",
    "relearn_steps_bounds",
    "relearn_contraction_factors",
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


def contraction_conditions(eta: float, weight_decay: float, alpha_f: float,
                           mu_R: float, L_R: float,
                           L_F: float) -> ContractionConditions:
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


def contraction_factor(eta: float, weight_decay: float, alpha_f: float,
                       mu_R: float, L_R: float, L_F: float) -> float:
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
