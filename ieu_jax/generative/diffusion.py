"""Denoising diffusion as pure functions over any epsilon-prediction network.

Everything here works through one callable, whatever network is behind it::

    eps_fn(params, x_t, t, labels) -> eps      # same shape as x_t

with ``t`` an ``int32`` vector of timesteps in ``[0, T)`` and ``labels`` an
``int32`` vector of class labels, where the label ``null_label`` means "no
class" (the unconditional branch of classifier-free guidance). The small UNet
of :mod:`ieu_jax.generative.unet` is one such network; a pretrained Flax UNet with loaded
weights is another, wrapped in a three-line function.

Conventions (Ho et al.'s DDPM, indices from 0):

* a :class:`Schedule` holds ``betas[t]`` and ``alpha_bars[t] = prod_{s<=t} (1 -
  betas[s])`` for ``t = 0 .. T-1``;
* the forward process's marginal is ``q(x_t | x_0) = N(sqrt(alpha_bars[t]) x_0,
  (1 - alpha_bars[t]) I)`` (:func:`q_sample`);
* the network predicts the noise ``eps`` (:func:`eps_loss`, the "simple" loss:
  mean squared error over all elements);
* classifier-free guidance with scale ``w`` uses ``(1 + w) eps(x, c) - w eps(x,
  null)`` (:func:`cfg_combine`): ``w = 0`` is the plain conditional model;
* samplers run from ``t = T-1`` down to ``0`` and return the final ``x_0``:
  :func:`ddpm_sample` (ancestral, every timestep, posterior variance
  ``beta_tilde``) and :func:`ddim_sample` (any number of evenly spaced
  timesteps; ``eta = 0`` is deterministic, ``eta = 1`` is DDPM-like).

All randomness comes from explicit keys; the samplers are ``lax.scan`` loops and
can be jitted whole.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "EpsFn",
    "Schedule",
    "linear_schedule",
    "cosine_schedule",
    "q_sample",
    "noisy_batch",
    "drop_labels",
    "eps_loss",
    "diffusion_loss",
    "predict_x0",
    "cfg_combine",
    "guided_eps",
    "ddim_timesteps",
    "ddim_sample",
    "ddpm_sample",
]

EpsFn = Callable[[Any, jax.Array, jax.Array, jax.Array], jax.Array]


class Schedule(NamedTuple):
  """A noise schedule of ``T`` steps (a pytree of two ``(T,)`` float32 arrays).

  Attributes:
    betas: ``beta_t``, the variance added at step ``t``.
    alpha_bars: ``prod_{s<=t} (1 - beta_s)``, the signal's share of the variance
      of ``x_t``.
  """

  betas: jax.Array
  alpha_bars: jax.Array

  @property
  def num_steps(self) -> int:
    return int(self.betas.shape[0])


def _from_betas(betas) -> Schedule:
  betas = jnp.asarray(betas, jnp.float32)
  # Cumulative product in log space: stable for T in the thousands.
  alpha_bars = jnp.exp(jnp.cumsum(jnp.log1p(-betas)))
  return Schedule(betas=betas, alpha_bars=alpha_bars)


def linear_schedule(
    num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
) -> Schedule:
  """DDPM's linear schedule, ``betas`` evenly spaced from ``beta_start`` to ``beta_end``.

  The defaults are DDPM's for ``T = 1000``. For another ``T``, pass betas scaled
  by ``1000 / T`` to keep the same amount of noise at the end.
  """
  if num_steps < 1:
    raise ValueError(f"num_steps={num_steps} must be positive.")
  if not 0 < beta_start <= beta_end < 1:
    raise ValueError(f"need 0 < beta_start <= beta_end < 1; got {beta_start}, {beta_end}.")
  return _from_betas(jnp.linspace(beta_start, beta_end, num_steps, dtype=jnp.float32))


def cosine_schedule(num_steps: int = 1000, offset: float = 0.008, max_beta: float = 0.999) -> Schedule:
  """The cosine schedule (Nichol & Dhariwal): ``alpha_bar(t) ~ cos^2``, betas clipped."""
  if num_steps < 1:
    raise ValueError(f"num_steps={num_steps} must be positive.")
  s = jnp.arange(num_steps + 1, dtype=jnp.float32) / num_steps
  f = jnp.cos((s + offset) / (1 + offset) * math.pi / 2) ** 2
  betas = jnp.clip(1.0 - f[1:] / f[:-1], 0.0, max_beta)
  return _from_betas(betas)


def _bcast(v: jax.Array, x: jax.Array) -> jax.Array:
  """A per-example ``(B,)`` vector shaped to broadcast against ``x`` of shape ``(B, ...)``."""
  return v.reshape(v.shape + (1,) * (x.ndim - v.ndim)).astype(x.dtype)


def q_sample(schedule: Schedule, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
  """``x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) noise``: a draw from ``q(x_t | x_0)``.

  Args:
    schedule: the :class:`Schedule`.
    x0: clean data, ``(B, ...)``.
    t: ``(B,)`` integer timesteps in ``[0, T)``.
    noise: standard normal, the shape of ``x0``.

  Returns:
    ``x_t``, the shape of ``x0``.
  """
  ab = _bcast(schedule.alpha_bars[t], x0)
  return jnp.sqrt(ab) * x0 + jnp.sqrt(1.0 - ab) * noise


def noisy_batch(schedule: Schedule, x0: jax.Array, key: jax.Array):
  """Draws ``t ~ U{0..T-1}`` and ``noise ~ N(0, I)`` per example; returns ``(x_t, t, noise)``."""
  t_key, n_key = jax.random.split(key)
  t = jax.random.randint(t_key, (x0.shape[0],), 0, schedule.num_steps)
  noise = jax.random.normal(n_key, x0.shape, x0.dtype)
  return q_sample(schedule, x0, t, noise), t, noise


def drop_labels(key: jax.Array, labels: jax.Array, prob, null_label: int) -> jax.Array:
  """Replaces each label by ``null_label`` with probability ``prob`` (CFG training)."""
  drop = jax.random.bernoulli(key, prob, labels.shape)
  return jnp.where(drop, jnp.asarray(null_label, labels.dtype), labels)


def eps_loss(eps_fn: EpsFn, params, x_t, t, labels, target) -> jax.Array:
  """Mean squared error between ``eps_fn(params, x_t, t, labels)`` and ``target``."""
  return jnp.mean(jnp.square(eps_fn(params, x_t, t, labels) - target))


def diffusion_loss(
    eps_fn: EpsFn,
    params,
    schedule: Schedule,
    x0: jax.Array,
    labels: jax.Array,
    key: jax.Array,
    *,
    label_drop: float = 0.0,
    null_label: int | None = None,
) -> jax.Array:
  """The epsilon-prediction loss on a batch, with fresh ``t`` and noise from ``key``.

  Args:
    eps_fn: the network.
    params: its parameters.
    schedule: the noise schedule.
    x0: clean data ``(B, ...)``.
    labels: ``(B,)`` class labels.
    key: PRNG key for the timesteps, the noise and the label dropout.
    label_drop: probability of replacing a label by ``null_label`` (trains the
      unconditional branch of classifier-free guidance); 0 keeps every label.
    null_label: the "no class" label; needed when ``label_drop`` may be nonzero.

  Returns:
    The scalar loss.
  """
  noise_key, drop_key = jax.random.split(key)
  x_t, t, noise = noisy_batch(schedule, x0, noise_key)
  if null_label is not None:
    labels = drop_labels(drop_key, labels, label_drop, null_label)
  elif not (isinstance(label_drop, (int, float)) and label_drop == 0):
    raise ValueError("label_drop needs null_label.")
  return eps_loss(eps_fn, params, x_t, t, labels, noise)


def predict_x0(schedule: Schedule, x_t, t, eps) -> jax.Array:
  """``x_0`` implied by ``x_t`` and a noise estimate: ``(x_t - sqrt(1-ab) eps) / sqrt(ab)``."""
  ab = _bcast(schedule.alpha_bars[t], x_t)
  return (x_t - jnp.sqrt(1.0 - ab) * eps) / jnp.sqrt(ab)


def cfg_combine(eps_cond: jax.Array, eps_uncond: jax.Array, guidance_scale) -> jax.Array:
  """Classifier-free guidance: ``(1 + w) * eps_cond - w * eps_uncond``."""
  w = jnp.asarray(guidance_scale, eps_cond.dtype)
  return (1.0 + w) * eps_cond - w * eps_uncond


def guided_eps(
    eps_fn: EpsFn, params, x_t, t, labels, guidance_scale, null_label: int
) -> jax.Array:
  """The guided noise estimate, from one network call on the doubled batch."""
  b = x_t.shape[0]
  eps = eps_fn(
      params,
      jnp.concatenate([x_t, x_t]),
      jnp.concatenate([t, t]),
      jnp.concatenate([labels, jnp.full_like(labels, null_label)]),
  )
  return cfg_combine(eps[:b], eps[b:], guidance_scale)


def _make_eps(eps_fn, params, labels, guidance_scale, null_label):
  """``eps(x_t, t)`` for the sampler: plain, or guided when ``guidance_scale`` is set."""
  if guidance_scale is None:
    return lambda x, t: eps_fn(params, x, t, labels)
  if null_label is None:
    raise ValueError("guidance needs null_label.")
  return lambda x, t: guided_eps(eps_fn, params, x, t, labels, guidance_scale, null_label)


def ddim_timesteps(num_train_steps: int, num_sample_steps: int) -> jax.Array:
  """``num_sample_steps`` evenly spaced timesteps from ``T-1`` down to ``0`` (int32)."""
  if not 1 <= num_sample_steps <= num_train_steps:
    raise ValueError(
        f"num_sample_steps={num_sample_steps} must be in [1, {num_train_steps}].")
  ts = jnp.round(jnp.linspace(num_train_steps - 1, 0, num_sample_steps)).astype(jnp.int32)
  return ts


def _start(eps_fn, params, key, labels, shape, guidance_scale, null_label, x_T):
  """A sampler's starting noise, its guided noise estimate and the key of its steps."""
  init_key, step_key = jax.random.split(key)
  x = jax.random.normal(init_key, (labels.shape[0], *shape)) if x_T is None else x_T
  return x, _make_eps(eps_fn, params, labels, guidance_scale, null_label), step_key


def _predict_x0(x, eps, ab_t, clip_x0):
  """``x0_hat = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t)``, optionally clipped."""
  x0 = (x - jnp.sqrt(1.0 - ab_t) * eps) / jnp.sqrt(ab_t)
  return x0 if clip_x0 is None else jnp.clip(x0, -clip_x0, clip_x0)


def ddim_sample(
    eps_fn: EpsFn,
    params,
    schedule: Schedule,
    key: jax.Array,
    labels: jax.Array,
    shape: tuple[int, ...],
    *,
    num_steps: int = 50,
    eta: float = 0.0,
    guidance_scale: float | None = None,
    null_label: int | None = None,
    clip_x0: float | None = None,
    x_T: jax.Array | None = None,
) -> jax.Array:
  """DDIM sampling (Song et al.) on ``num_steps`` evenly spaced timesteps.

  From timestep ``t`` to the next one ``s`` (``alpha_bar = 1`` after the last)::

      x0_hat = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t)      [clipped if clip_x0]
      sigma  = eta * sqrt((1 - ab_s) / (1 - ab_t)) * sqrt(1 - ab_t / ab_s)
      x_s    = sqrt(ab_s) x0_hat + sqrt(1 - ab_s - sigma^2) eps + sigma z

  Args:
    eps_fn: the network.
    params: its parameters.
    schedule: the training schedule.
    key: PRNG key for ``x_T`` and (when ``eta > 0``) the per-step noise.
    labels: ``(B,)`` class labels (ignored by an unconditional ``eps_fn``).
    shape: the shape of one sample, e.g. ``(16, 16, 1)``.
    num_steps: sampling steps.
    eta: 0 for the deterministic sampler.
    guidance_scale: ``w`` of classifier-free guidance, or None for none.
    null_label: the "no class" label (needed with guidance).
    clip_x0: clip ``x0_hat`` to ``[-clip_x0, clip_x0]`` (images in ``[-1, 1]``).
    x_T: the starting noise, ``(B,) + shape``; drawn from ``key`` when None.

  Returns:
    Samples ``(B,) + shape``.
  """
  b = labels.shape[0]
  x, eps_at, step_key = _start(eps_fn, params, key, labels, shape, guidance_scale, null_label, x_T)
  ts = ddim_timesteps(schedule.num_steps, num_steps)
  ab = schedule.alpha_bars
  ab_next = jnp.concatenate([ab[ts[1:]], jnp.ones((1,), ab.dtype)])

  def step(x, inputs):
    t, ab_t, ab_s, k = inputs
    eps = eps_at(x, jnp.full((b,), t, jnp.int32))
    x0 = _predict_x0(x, eps, ab_t, clip_x0)
    if clip_x0 is not None:  # the noise that the clipped x0 implies
      eps = (x - jnp.sqrt(ab_t) * x0) / jnp.sqrt(1.0 - ab_t)
    sigma = eta * jnp.sqrt((1.0 - ab_s) / (1.0 - ab_t) * (1.0 - ab_t / ab_s))
    direction = jnp.sqrt(jnp.maximum(1.0 - ab_s - sigma**2, 0.0))
    x = jnp.sqrt(ab_s) * x0 + direction * eps
    x = x + sigma * jax.random.normal(k, x.shape, x.dtype)  # sigma = 0 when eta = 0
    return x.astype(x0.dtype), None

  keys = jax.random.split(step_key, num_steps)
  x, _ = jax.lax.scan(step, x, (ts, ab[ts], ab_next, keys))
  return x


def ddpm_sample(
    eps_fn: EpsFn,
    params,
    schedule: Schedule,
    key: jax.Array,
    labels: jax.Array,
    shape: tuple[int, ...],
    *,
    guidance_scale: float | None = None,
    null_label: int | None = None,
    clip_x0: float | None = None,
    x_T: jax.Array | None = None,
) -> jax.Array:
  """Ancestral DDPM sampling over every timestep, with posterior variance ``beta_tilde``.

  At step ``t``: ``x0_hat`` from the noise estimate, then ``x_{t-1} ~ q(x_{t-1} |
  x_t, x0_hat)``, whose mean is ``c0 x0_hat + ct x_t`` with ``c0 = sqrt(ab_{t-1})
  beta_t / (1 - ab_t)``, ``ct = sqrt(1 - beta_t) (1 - ab_{t-1}) / (1 - ab_t)``,
  and variance ``beta_tilde_t = (1 - ab_{t-1}) / (1 - ab_t) beta_t`` (0 at
  ``t = 0``, where ``ab_{-1} = 1``).

  Args: as :func:`ddim_sample`, without ``num_steps`` and ``eta``.

  Returns:
    Samples ``(B,) + shape``.
  """
  b = labels.shape[0]
  x, eps_at, step_key = _start(eps_fn, params, key, labels, shape, guidance_scale, null_label, x_T)
  num = schedule.num_steps
  ts = jnp.arange(num - 1, -1, -1, dtype=jnp.int32)
  ab = schedule.alpha_bars
  ab_prev_all = jnp.concatenate([jnp.ones((1,), ab.dtype), ab[:-1]])

  def step(x, inputs):
    t, k = inputs
    beta, ab_t, ab_prev = schedule.betas[t], ab[t], ab_prev_all[t]
    eps = eps_at(x, jnp.full((b,), t, jnp.int32))
    x0 = _predict_x0(x, eps, ab_t, clip_x0)
    c0 = jnp.sqrt(ab_prev) * beta / (1.0 - ab_t)
    ct = jnp.sqrt(1.0 - beta) * (1.0 - ab_prev) / (1.0 - ab_t)
    var = (1.0 - ab_prev) / (1.0 - ab_t) * beta
    x = c0 * x0 + ct * x + jnp.sqrt(var) * jax.random.normal(k, x.shape, x.dtype)
    return x.astype(x0.dtype), None

  x, _ = jax.lax.scan(step, x, (ts, jax.random.split(step_key, num)))
  return x
