"""Unlearning a class from a conditional diffusion model: FT, GA-plain, SalUn-style, IEU.

Every method has the classifier methods' shape (:mod:`ieu_jax.methods`): a frozen
dataclass of hyperparameters and ``unlearn(problem, hparams, key, *, name) ->
params``, registered in :data:`METHODS` (:func:`hparams` builds a method's
hyperparameters from a config and refuses unknown keys). A step is an objective
plus an optax transformation, turned into a jitted step by :mod:`ieu_jax.training`
(descent) or :func:`ieu_jax.make_unlearn_step` (IEU's ascent and retain terms).

IEU and GA-plain (IEU's ascent alone) use the classifier's IEU hyperparameters
(:class:`ieu_jax.methods.ieu.IEUHParams`): one class, one set of defaults, and
``max_grad_norm`` with its one meaning (each gradient clipped on its own before
the transformation).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax

from ieu_jax import _steps
from ieu_jax import data as data_lib
from ieu_jax import training
from ieu_jax.generative import diffusion
from ieu_jax.hparams import HParams
from ieu_jax.methods import base
from ieu_jax.methods import ieu as ieu_method
from ieu_jax.methods import salun as salun_method

__all__ = ["FTHParams", "GenProblem", "METHODS", "SalUnHParams", "get_method", "hparams",
           "saliency_mask"]


@dataclasses.dataclass(frozen=True)
class GenProblem:
  """Everything a generative unlearning method may use.

  Attributes:
    eps_fn: ``eps_fn(params, x_t, t, labels) -> eps``.
    schedule: the training noise schedule.
    original: the original generator's params.
    forget: the forget-class images (in ``[-1, 1]``) with their label.
    retain: the other training images.
    forget_class: the class to forget.
    retained_classes: the classes to keep (those present in ``retain``).
    null_label: the "no class" label of classifier-free guidance.
    label_drop: the label dropout of training.
  """

  eps_fn: diffusion.EpsFn
  schedule: diffusion.Schedule
  original: Any
  forget: data_lib.Dataset
  retain: data_lib.Dataset
  forget_class: int
  retained_classes: tuple[int, ...]
  null_label: int
  label_drop: float

  def forget_loss(self, params, x, y, key):
    """The diffusion loss of the forget class, conditioned on its label."""
    return diffusion.diffusion_loss(self.eps_fn, params, self.schedule, x, y, key)

  def retain_loss(self, params, x, y, key):
    """The training loss (with label dropout) on retain images."""
    return diffusion.diffusion_loss(
        self.eps_fn, params, self.schedule, x, y, key,
        label_drop=self.label_drop, null_label=self.null_label)

  def forget_objective(self, params, batch, key):
    """:meth:`forget_loss` as an objective ``(params, (x, y), key)``."""
    return self.forget_loss(params, *batch, key)

  def retain_objective(self, params, batch, key):
    """:meth:`retain_loss` as an objective ``(params, (x, y), key)``."""
    return self.retain_loss(params, *batch, key)


@dataclasses.dataclass(frozen=True, kw_only=True)
class FTHParams(HParams):
  """FT on a diffusion model: Adam on the retain set's training loss.

  Attributes:
    epochs: passes over the retain set.
    learning_rate: Adam's step size.
    batch_size: images per step.
  """

  epochs: int
  learning_rate: float
  batch_size: int = 64


@dataclasses.dataclass(frozen=True, kw_only=True)
class SalUnHParams(HParams):
  """The SalUn-style method (see :func:`_salun`).

  Attributes:
    epochs: passes over the forget set.
    learning_rate: Adam's step size.
    retain_scale: the weight of the retain set's training loss (0: none).
    mask_fraction: share of weights the saliency mask keeps (1: no mask).
    batch_size: images per forget batch, and per retain batch.
  """

  epochs: int
  learning_rate: float
  retain_scale: float = 1.0
  mask_fraction: float = 0.5
  batch_size: int = 64


def _fit(problem, hp, tx, loss_and_update, key, data, name, aux=()):
  step = training.make_indexed_step(loss_and_update)
  params, _ = training.fit(
      problem.original, tx.init(problem.original), step, (data.x, data.y),
      epochs=hp.epochs, batch_size=hp.batch_size, key=key, name=name, aux=aux)
  return params


def _ieu(problem: GenProblem, hp: ieu_method.IEUHParams, key, *, name: str = "IEU"):
  """IEU (and GA-plain, its ascent-only setting) on the diffusion loss of the forget class.

  Each step's key splits into the forget loss's key and the retain term's; the
  latter draws the retain batch and the loss's noise.
  """
  noise_key, data_key = jax.random.split(key)
  tx = ieu_method.make_transform(hp, noise_key)
  step = _steps.make_unlearn_step(
      None, tx, objective=problem.forget_objective, retain_objective=problem.retain_objective,
      max_grad_norm=hp.max_grad_norm or None, jit=False)

  def loss_and_update(params, opt_state, batch, step_key, retain_x, retain_y):
    f_key, r_key = jax.random.split(step_key)
    retain_batch, retain_key = None, None
    if hp.retain_scale:
      batch_key, retain_key = jax.random.split(r_key)
      retain_batch = training.sample_batch(batch_key, (retain_x, retain_y), hp.batch_size)
    params, opt_state, metrics = step(params, opt_state, batch, retain_batch,
                                      keys=(f_key, retain_key))
    return params, opt_state, metrics.forget_loss

  return _fit(problem, hp, tx, loss_and_update, data_key, problem.forget, name,
              aux=(problem.retain.x, problem.retain.y))


def _ft(problem: GenProblem, hp: FTHParams, key, *, name: str = "FT"):
  """FT: keep training on the retain set only (Adam), hoping the class fades."""
  tx = optax.adam(hp.learning_rate)
  return _fit(problem, hp, tx, training.descent_on(problem.retain_objective, tx), key,
              problem.retain, name)


def saliency_mask(problem: GenProblem, key, fraction: float, batch_size: int = 256):
  """SalUn's weight saliency: 1 on the top ``fraction`` of ``|grad forget loss|``, globally.

  The gradient is taken at the original weights on up to ``batch_size`` forget
  images (one draw of timesteps and noise from ``key``).
  """

  @jax.jit  # one program; op by op, the UNet's backward pass compiles each op
  def mask(params, x, y, key):
    grads = jax.grad(problem.forget_loss)(params, x, y, key)
    flat = jnp.concatenate([jnp.abs(g).ravel() for g in jax.tree.leaves(grads)])
    threshold = jnp.quantile(flat, 1.0 - fraction)
    return jax.tree.map(lambda g: (jnp.abs(g) >= threshold).astype(g.dtype), grads)

  return mask(problem.original, problem.forget.x[:batch_size], problem.forget.y[:batch_size], key)


def _salun(problem: GenProblem, hp: SalUnHParams, key, *, name: str = "SalUn"):
  """SalUn-style: on forget images, condition on the forget label but match the
  original model's output for another (random retained) label; plus the
  training loss on retain batches; gradients masked by weight saliency
  (:func:`ieu_jax.methods.salun.keep_masked` before Adam)."""
  mask_key, data_key = jax.random.split(key)
  tx = optax.adam(hp.learning_rate)
  if hp.mask_fraction < 1.0:
    tx = optax.chain(salun_method.keep_masked(saliency_mask(problem, mask_key, hp.mask_fraction)),
                     tx)
  others = jnp.asarray(problem.retained_classes, jnp.int32)

  def objective(params, batch, step_key, retain_x, retain_y, original):
    x0, y = batch
    n_key, c_key, r_key = jax.random.split(step_key, 3)
    x_t, t, _ = diffusion.noisy_batch(problem.schedule, x0, n_key)
    other = others[jax.random.randint(c_key, y.shape, 0, others.shape[0])]
    target = jax.lax.stop_gradient(problem.eps_fn(original, x_t, t, other))
    forget = diffusion.eps_loss(problem.eps_fn, params, x_t, t, y, target)
    if not hp.retain_scale:
      return forget
    rx, ry = training.sample_batch(r_key, (retain_x, retain_y), hp.batch_size)
    return forget + hp.retain_scale * problem.retain_loss(params, rx, ry,
                                                          jax.random.fold_in(r_key, 1))

  return _fit(problem, hp, tx, training.descent_on(objective, tx), data_key, problem.forget,
              name, aux=(problem.retain.x, problem.retain.y, problem.original))


METHODS: dict[str, base.Method] = {
    "FT": base.Method(_ft, FTHParams),
    # GA-plain is IEU's ascent alone (plain SGD): configured with no decay, noise or retain
    # term. The classifier's GA baseline (momentum, weight decay) has no generative twin here.
    "GA-plain": base.Method(_ieu, ieu_method.IEUHParams),
    "SalUn": base.Method(_salun, SalUnHParams),
    "IEU": base.Method(_ieu, ieu_method.IEUHParams),
}
"""Generative unlearning methods; Retrain is the cached reference, not listed."""


def get_method(name: str) -> base.Method:
  """The generative method called ``name``; the error names the known ones."""
  if name not in METHODS:
    raise ValueError(f"unknown generative method {name!r}: known are {sorted(METHODS)}.")
  return METHODS[name]


def hparams(name: str, values: Any = None) -> HParams:
  """Method ``name``'s hyperparameters from ``values``; unknown keys are refused."""
  return get_method(name).hparams_class.from_config(values, method=name)
