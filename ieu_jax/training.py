"""Epoch loops over on-device data, shared by training and every unlearning method.

Data stay on the device: a jitted step receives the whole data set and a vector of
batch indices, and gathers the batch itself, so no example crosses to the host in
the loop. Steps are called from Python (on XLA:CPU a conv step inside
``lax.scan`` measured many times slower than the same step called from Python).
Finiteness is checked once per epoch, one host sync, and a NaN stops the run with
an error that names the phase and the epoch.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from ieu_jax import _augment
from ieu_jax import _state
from ieu_jax._steps import ApplyFn, LossFn, Objective, classifier_objective
from ieu_jax._steps import softmax_cross_entropy, tree_is_finite

__all__ = [
    "NonFiniteError",
    "augmented",
    "classifier_objective",
    "descent",
    "descent_on",
    "epoch_indices",
    "sample_batch",
    "fit",
    "make_indexed_step",
    "fresh_copy",
]


class NonFiniteError(FloatingPointError):
  """A NaN or infinity appeared in the weights or the loss."""


def epoch_indices(key: jax.Array, num_examples: int, batch_size: int) -> jax.Array:
  """``(num_batches, batch)`` indices of one shuffled epoch.

  Batches have a fixed size (one compilation); the last partial batch is filled
  with examples drawn from the start of the permutation, so every example is seen
  at least once per epoch.
  """
  if num_examples < 1:
    raise ValueError("epoch_indices needs at least one example.")
  batch = min(batch_size, num_examples)
  perm = jax.random.permutation(key, num_examples)
  num_batches = -(-num_examples // batch)
  pad = num_batches * batch - num_examples
  perm = jnp.concatenate([perm, perm[:pad]])
  return perm.reshape(num_batches, batch)


@jax.jit
def fresh_copy(tree: Any) -> Any:
  """A copy of ``tree`` in new buffers, every leaf placed like the step's outputs.

  Two reasons to copy before a loop of donating steps: the caller's arrays stay
  valid, and every leaf comes out of one computation, so it is committed to the
  device. Without that, a tree that mixes committed leaves (restored weights)
  with uncommitted ones (a fresh optimizer count) is compiled for twice: once
  as given and once as the step returns it.
  """
  return jax.tree.map(jnp.copy, tree)


def make_indexed_step(
    loss_and_update: Callable[..., tuple[Any, Any, jax.Array]],
) -> Callable:
  """Jits ``loss_and_update(params, opt_state, batch, key, *aux)`` over indexed data.

  The returned ``step(params, opt_state, x, y, idx, key, *aux)`` gathers
  ``(x[idx], y[idx])`` on the device and returns ``(params, opt_state, loss,
  finite)``. ``aux`` are further on-device arrays passed through (e.g. the retain
  set, from which a method samples its own batches with ``key``). Params and
  optimizer state are donated.
  """

  def step(params, opt_state, x, y, idx, key, *aux):
    params, opt_state, loss = loss_and_update(
        params, opt_state, (x[idx], y[idx]), key, *aux
    )
    finite = tree_is_finite(params) & jnp.isfinite(loss)
    return params, opt_state, loss, finite

  return jax.jit(step, donate_argnums=(0, 1))


def sample_batch(key: jax.Array, data: tuple[jax.Array, jax.Array], batch_size: int):
  """A batch of ``batch_size`` examples drawn uniformly (with replacement) from ``data``."""
  x, y = data
  idx = jax.random.randint(key, (batch_size,), 0, x.shape[0])
  return x[idx], y[idx]


def descent_on(objective: Objective, tx: optax.GradientTransformation):
  """``loss_and_update`` for descent on ``objective``, the step of every descent pass.

  Args:
    objective: ``objective(params, batch, key, *aux) -> scalar``, with the step's
      batch, key and ``aux`` (see :func:`make_indexed_step`); e.g.
      :func:`classifier_objective`, or a loss that draws random labels from the key.
    tx: the optimizer.

  Returns:
    ``loss_and_update(params, opt_state, batch, key, *aux) -> (params, opt_state,
    loss)``, the loss being the objective's value before the step. For a stateful
    model ``params`` are its variables, the objective returns ``(loss,
    new_state)`` (train mode) and ``tx`` sees the params only.
  """

  value_and_grad = _state.value_and_grad(objective)

  def fn(variables, opt_state, batch, key, *aux):
    value, grads, state = value_and_grad(variables, batch, key, *aux)
    params = _state.trainable(variables)
    updates, opt_state = tx.update(grads, opt_state, params)
    return _state.merge(optax.apply_updates(params, updates), state), opt_state, value

  return fn


def augmented(objective: Objective, kind: str = "none") -> Objective:
  """``objective`` on batches augmented by ``kind`` (:mod:`ieu_jax._augment`), inside the step.

  ``'none'`` returns ``objective`` itself (the same function: nothing changes). Otherwise
  the step's key is split: one half draws the augmentation of the batch's inputs, the
  other is passed on to ``objective``.
  """
  if kind == "none":
    return objective
  if kind not in _augment.AUGMENTATIONS:
    raise ValueError(f"augment={kind!r} is unknown: choose one of {_augment.AUGMENTATIONS}.")

  def fn(params, batch, key, *aux):
    k_aug, k_obj = jax.random.split(key)
    inputs, labels = batch
    return objective(params, (_augment.augment(kind, k_aug, inputs), labels), k_obj, *aux)

  return fn


def descent(apply_fn: ApplyFn, tx: optax.GradientTransformation, loss: LossFn = softmax_cross_entropy):
  """``loss_and_update`` for plain descent on a classifier's ``loss`` (the key is unused)."""
  return descent_on(classifier_objective(apply_fn, loss), tx)


def fit(
    params: Any,
    opt_state: Any,
    step: Callable,
    data: tuple[jax.Array, jax.Array],
    *,
    epochs: int,
    batch_size: int,
    key: jax.Array,
    name: str = "train",
    log_every_s: float = 10.0,
    on_epoch: Callable[[int, Any], None] | None = None,
    aux: tuple[jax.Array, ...] = (),
) -> tuple[Any, Any]:
  """Runs ``epochs`` shuffled epochs of ``step`` (from :func:`make_indexed_step`).

  Args:
    params: initial params (copied once; the caller's arrays stay valid).
    opt_state: initial optimizer state (likewise).
    step: the jitted indexed step.
    data: ``(x, y)`` on the device.
    epochs: number of epochs (0 returns the inputs).
    batch_size: examples per step.
    key: PRNG key; epoch ``e`` shuffles with ``fold_in(key, e)`` and step ``i``
      of it (0-based) gets ``fold_in(fold_in(key, e), i + 1)`` (the shuffle has
      the epoch's key itself, so no step's key repeats it).
    name: the phase, for logs and errors.
    log_every_s: progress (with an ETA) is logged at most this often.
    on_epoch: optional callback ``(epoch, params)`` after each epoch.
    aux: extra on-device arrays passed to every step.

  Returns:
    ``(params, opt_state)``.

  Raises:
    NonFiniteError: when the weights or the loss stop being finite.
  """
  x, y = data
  n = x.shape[0]
  if n == 0:
    raise ValueError(f"{name}: no training examples.")
  params, opt_state = fresh_copy((params, opt_state))
  start = last_log = time.perf_counter()
  for epoch in range(epochs):
    ekey = jax.random.fold_in(key, epoch)
    batches = epoch_indices(ekey, n, batch_size)
    finite = jnp.array(True)
    losses = []
    for i in range(batches.shape[0]):
      params, opt_state, loss, ok = step(
          params, opt_state, x, y, batches[i], jax.random.fold_in(ekey, i + 1), *aux
      )
      finite = finite & ok
      losses.append(loss)
    if not bool(finite):
      raise NonFiniteError(
          f"{name}: a NaN or infinity appeared in the weights or the loss during epoch"
          f" {epoch + 1}/{epochs}; lower the learning rate or the ascent scale."
      )
    if on_epoch is not None:
      on_epoch(epoch, params)
    now = time.perf_counter()
    if now - last_log >= log_every_s or epoch + 1 == epochs:
      done = epoch + 1
      eta = (now - start) / done * (epochs - done)
      logging.info(
          "%s: epoch %d/%d, loss %.4f, %.1fs elapsed, ETA %.0fs",
          name, done, epochs, float(np.mean(jnp.stack(losses))), now - start, eta,
      )
      last_log = now
  return params, opt_state
