"""The constants the bounds take: exact for quadratics, bounded for logistic regression.

The constants ``(mu_R, L_R, L_F)`` of :mod:`ieu_jax.theory.bounds` are exact for
quadratics (:func:`hessian_extremes`, :func:`quadratic_constants`) and bounded
from the data matrix for L2-regularised logistic regression
(:func:`logistic_curvature_bounds`). For quadratics the module also computes the
exact quantities the bounds estimate (:func:`quadratic_ieu_jacobian`,
:func:`quadratic_expected_sq_distance`, :func:`quadratic_stationary_sq_distance`),
so tests can measure tightness.

Everything here is a pure NumPy function in float64; nothing changes JAX's global
configuration.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "QuadraticConstants",
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

  It never exceeds :func:`ieu_jax.theory.bounds.contraction_factor` of
  :func:`quadratic_constants`, and equals it when the extreme eigenvalues of
  ``A - alpha_f B`` are ``mu_R - alpha_f L_F`` and ``L_R`` (e.g. ``A`` and ``B``
  share eigenvectors and ``B``'s top eigenvector is ``A``'s bottom one).

  Args:
    A, B, eta, weight_decay, alpha_f: as for :func:`quadratic_ieu_jacobian`.

  Returns:
    The spectral radius (= norm, ``J`` being symmetric) of the Jacobian
    :func:`quadratic_ieu_jacobian` returns.
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
