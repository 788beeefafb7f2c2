"""The generative half's models: image preparation, the evaluation classifier, DDPM training.

The DDPM is a class-conditional UNet (:mod:`ieu_jax.generative.unet`) trained with
the epsilon loss of :mod:`ieu_jax.generative.diffusion` and label dropout (for
classifier-free guidance). The evaluation classifier is a
:class:`ieu_jax.models.SmallCNN` trained on the same images; it judges samples.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import optax

from ieu_jax import data as data_lib
from ieu_jax import models
from ieu_jax import training
from ieu_jax.generative import diffusion

__all__ = ["classifier_fns", "make_ddpm_step", "prepare_images", "train_ddpm", "warmup_cosine"]


def prepare_images(x: jax.Array, size: int) -> jax.Array:
  """Images in ``[0, 1]`` ``(N, H, W, C)`` -> ``(N, size, size, C)`` in ``[-1, 1]``."""
  if x.shape[1:3] != (size, size):
    x = jax.image.resize(x, (x.shape[0], size, size, x.shape[3]), "linear", antialias=True)
  return jnp.clip(2.0 * x - 1.0, -1.0, 1.0)


def classifier_fns(num_classes: int, image_shape, *, features=(16, 32), hidden=64):
  """``(init_fn, logits_fn, features_fn)`` of a :class:`ieu_jax.models.SmallCNN`.

  ``features_fn(params, x)`` is the penultimate layer (after its ReLU), read
  with Flax's ``capture_intermediates``, so the model itself is unchanged.
  """
  module = models.SmallCNN(num_classes=num_classes, features=tuple(features), hidden=hidden)

  def init_fn(key):
    return module.init(key, jnp.zeros((1, *image_shape), jnp.float32))["params"]

  def logits_fn(params, x):
    return module.apply({"params": params}, x)

  def features_fn(params, x):
    _, state = module.apply(
        {"params": params}, x,
        capture_intermediates=lambda mdl, method: mdl.name == "Dense_0",
        mutable=["intermediates"],
    )
    return jax.nn.relu(state["intermediates"]["Dense_0"]["__call__"][0])

  return init_fn, logits_fn, features_fn


def warmup_cosine(count, total, peak: float, warmup: int, floor: float = 0.05):
  """Learning rate at step ``count`` of ``total``: linear warmup, cosine decay to ``floor * peak``.

  ``total`` may be traced, so runs of different lengths share one compiled step.
  """
  count = jnp.asarray(count, jnp.float32)
  total = jnp.maximum(jnp.asarray(total, jnp.float32), warmup + 1.0)
  warm = peak * count / max(warmup, 1)
  frac = jnp.clip((count - warmup) / (total - warmup), 0.0, 1.0)
  cos = peak * (floor + (1.0 - floor) * 0.5 * (1.0 + jnp.cos(jnp.pi * frac)))
  return jnp.where(count < warmup, warm, cos)


def make_ddpm_step(
    eps_fn: diffusion.EpsFn,
    schedule: diffusion.Schedule,
    hparams: Mapping[str, Any],
    *,
    null_label: int,
    label_drop: float,
):
  """``(tx, step)`` for DDPM training; ``step`` as :func:`ieu_jax.training.make_indexed_step`.

  Adam on gradients clipped at norm 1, learning rate :func:`warmup_cosine`
  (``hparams``: ``learning_rate``, ``warmup_steps``). The run's length is the
  step's extra argument ``total`` (a scalar array), so the original and the
  retrained model train with the same compiled step.
  """
  tx = optax.chain(optax.clip_by_global_norm(1.0), optax.scale_by_adam())
  peak, warmup = float(hparams["learning_rate"]), int(hparams.get("warmup_steps", 100))

  def loss_and_update(params, opt_state, batch, key, total):
    x, y = batch
    loss, grads = jax.value_and_grad(
        lambda p: diffusion.diffusion_loss(
            eps_fn, p, schedule, x, y, key, label_drop=label_drop, null_label=null_label)
    )(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    lr = warmup_cosine(opt_state[1].count, total, peak, warmup)
    updates = jax.tree.map(lambda u: -lr * u, updates)
    return optax.apply_updates(params, updates), opt_state, loss

  inner = training.make_indexed_step(loss_and_update)

  def step(params, opt_state, x, y, idx, key, total):
    # Gather the batch outside the compiled step, so data sets of any size
    # (all classes, the retain set) share one compilation.
    return inner(params, opt_state, x[idx], y[idx], jnp.arange(idx.shape[0]), key, total)

  return tx, step


def train_ddpm(
    params,
    eps_fn: diffusion.EpsFn,
    schedule: diffusion.Schedule,
    data: data_lib.Dataset,
    hparams: Mapping[str, Any],
    key: jax.Array,
    *,
    null_label: int,
    label_drop: float,
    name: str = "ddpm",
    tx_and_step=None,
):
  """Trains ``params`` on ``data`` with the epsilon loss and label dropout.

  Args:
    params: initial parameters.
    eps_fn: the network.
    schedule: the noise schedule.
    data: training images in ``[-1, 1]`` and labels.
    hparams: ``learning_rate``, ``epochs``, ``batch_size``, optional ``warmup_steps``.
    key: data order, timesteps, noise and label dropout.
    null_label: the "no class" label.
    label_drop: probability of training a step's label as ``null_label``.
    name: for logs.
    tx_and_step: a :func:`make_ddpm_step` result to reuse (one compilation for
      several runs); built from the other arguments when None.

  Returns:
    The trained parameters.
  """
  epochs, batch_size = int(hparams["epochs"]), int(hparams["batch_size"])
  total = epochs * -(-len(data) // min(batch_size, len(data)))
  tx, step = tx_and_step or make_ddpm_step(
      eps_fn, schedule, hparams, null_label=null_label, label_drop=label_drop)
  params, _ = training.fit(
      params, tx.init(params), step, (data.x, data.y), epochs=epochs,
      batch_size=batch_size, key=key, name=name, aux=(jnp.asarray(total, jnp.float32),))
  return params
