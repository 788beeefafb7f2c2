"""Float64 trajectories of the product's code, and an independent NumPy reference.

:func:`run_ieu` runs full-batch IEU through the product's
:func:`ieu_jax._transforms.ieu_transform` and :func:`run_relearn` runs
gradient-descent relearning through ``optax.sgd``, both vmapped over starts and
in float64 (call them inside a ``jax.enable_x64`` context). The losses are
quadratics ``1/2 (x-c)'H(x-c)`` (``data = (H, c)``) and mean logistic losses
plus ``l2/2 ||x||**2`` (``data = (X, y, l2)``, labels ``+-1``). The NumPy
gradients and Hessians (:func:`np_grad`, :func:`np_hess`) and
:func:`np_minimise` find fixed points and minimisers without JAX.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ieu_jax._transforms import ieu_transform

__all__ = ["np_grad", "np_hess", "np_minimise", "run_ieu", "run_relearn"]


# ============================================================================
# Losses: JAX (for the product's trajectories) and NumPy (independent reference).
# ============================================================================


def _quad_loss(theta, data):
  hess, centre = data
  e = theta - centre
  return 0.5 * e @ (hess @ e)


def _logistic_loss(theta, data):
  x, y, l2 = data
  z = y * (x @ theta)
  return jnp.mean(jnp.logaddexp(0.0, -z)) + 0.5 * l2 * (theta @ theta)


_LOSSES = {"quadratic": _quad_loss, "logistic": _logistic_loss}


def np_grad(kind: str, theta: np.ndarray, data: tuple) -> np.ndarray:
  """The gradient at ``theta`` of the ``kind`` loss (quadratic or logistic)."""
  if kind == "quadratic":
    h, c = data
    return h @ (theta - c)
  x, y, l2 = data
  z = y * (x @ theta)
  return -(x.T @ (y * _sigmoid(-z))) / x.shape[0] + l2 * theta


def np_hess(kind: str, theta: np.ndarray, data: tuple) -> np.ndarray:
  """The Hessian at ``theta`` of the ``kind`` loss (quadratic or logistic)."""
  if kind == "quadratic":
    return data[0]
  x, y, l2 = data
  s = _sigmoid(y * (x @ theta))
  return (x.T * (s * (1 - s))) @ x / x.shape[0] + l2 * np.eye(x.shape[1])


def _sigmoid(z):
  return 0.5 * (1.0 + np.tanh(0.5 * z))


def np_minimise(grad, hess, x0, step_map, rate):
  """Fixed point of a ``rate``-contraction ``step_map``, then Newton polish.

  Args:
    grad: gradient of the function whose stationary point is sought.
    hess: its Hessian.
    x0: the start.
    step_map: a ``rate``-contraction whose fixed point is the stationary point.
    rate: its contraction factor, ``< 1``.

  Returns:
    The stationary point: Banach iteration to about ``1e-8``, then eight Newton
    steps.
  """
  x = np.array(x0, np.float64)
  first = np.linalg.norm(step_map(x) - x)
  iters = 0
  # Banach: ||x_k - x*|| <= rate**k * first / (1 - rate); iterate to ~1e-8.
  while first > 0 and rate**iters * first / (1 - rate) > 1e-8 and iters < 20000:
    x = step_map(x)
    iters += 1
  for _ in range(8):
    x = x - np.linalg.solve(hess(x), grad(x))
  return x


# ============================================================================
# Trajectories through the product's code.
# ============================================================================


@functools.partial(jax.jit, static_argnames=("kind", "steps"))
def _ieu_trajectories(kind, steps, data_r, data_f, theta0, keys, eta, alpha_f,
                      weight_decay, sigma):
  """IEU from ``theta0[k]`` with noise key ``keys[k]``: ``(K, steps + 1, d)``."""
  loss = _LOSSES[kind]
  grad = jax.grad(loss)

  def one(start, key):
    tx = ieu_transform(
        eta,
        ascent_scale=alpha_f,
        retain_scale=1.0,
        weight_decay=weight_decay,
        noise_std=sigma,
        key=key,
    )

    def body(carry, _):
      theta, state = carry
      updates, state = tx.update(
          grad(theta, data_f), state, theta, retain_grads=grad(theta, data_r)
      )
      theta = optax.apply_updates(theta, updates)
      return (theta, state), theta

    _, path = jax.lax.scan(body, (start, tx.init(start)), None, length=steps)
    return jnp.concatenate([start[None], path])

  return jax.vmap(one)(theta0, keys)


@functools.partial(jax.jit, static_argnames=("kind", "steps"))
def _relearn_trajectories(kind, steps, data_f, theta0, eta_r):
  """Gradient-descent relearning (``optax.sgd``) from each row of ``theta0``."""
  grad = jax.grad(_LOSSES[kind])

  def one(start):
    tx = optax.sgd(eta_r)

    def body(carry, _):
      theta, state = carry
      updates, state = tx.update(grad(theta, data_f), state, theta)
      theta = optax.apply_updates(theta, updates)
      return (theta, state), theta

    _, path = jax.lax.scan(body, (start, tx.init(start)), None, length=steps)
    return jnp.concatenate([start[None], path])

  return jax.vmap(one)(theta0)


def _as64(tree):
  return jax.tree.map(lambda v: jnp.asarray(v, jnp.float64), tree)


def run_ieu(kind, steps, data_r, data_f, starts, seeds, eta, alpha_f, lam,
            sigma) -> np.ndarray:
  """Full-batch IEU through ``ieu_transform``, one trajectory per start.

  Args:
    kind: ``"quadratic"`` or ``"logistic"``: the loss of ``data_r``, ``data_f``.
    steps: number of IEU steps.
    data_r: the retain loss's data.
    data_f: the forget loss's data.
    starts: ``(K, d)`` starting weights.
    seeds: ``K`` integer seeds of the weight noise, one per trajectory.
    eta: step size.
    alpha_f: ascent scale.
    lam: weight decay.
    sigma: weight-noise standard deviation.

  Returns:
    The float64 trajectories, ``(K, steps + 1, d)``, starts included.
  """
  keys = jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))
  out = _ieu_trajectories(
      kind, steps, _as64(data_r), _as64(data_f), _as64(starts), keys,
      *_as64((eta, alpha_f, lam, sigma)),
  )
  assert out.dtype == jnp.float64, out.dtype
  return np.asarray(out)


def run_relearn(kind, steps, data_f, starts, eta_r) -> np.ndarray:
  """Gradient-descent relearning through ``optax.sgd``, one run per start.

  Args:
    kind: ``"quadratic"`` or ``"logistic"``, the loss of ``data_f``.
    steps: number of gradient steps.
    data_f: the relearning loss's data.
    starts: ``(K, d)`` starting weights.
    eta_r: step size.

  Returns:
    The float64 trajectories, ``(K, steps + 1, d)``, starts included.
  """
  out = _relearn_trajectories(
      kind, steps, _as64(data_f), _as64(starts), jnp.float64(eta_r)
  )
  assert out.dtype == jnp.float64, out.dtype
  return np.asarray(out)
