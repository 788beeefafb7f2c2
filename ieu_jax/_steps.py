"""Pure, jitted step functions over any ``apply_fn(params, x) -> logits``.

A batch is a pair ``(inputs, labels)`` of arrays with the same leading size;
labels are integer classes. Every step returns the new params, the new optimizer
state and a small :class:`StepMetrics` (losses, and whether everything stayed
finite, so a driver can stop with a clear error the moment a NaN appears).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = [
    "ApplyFn",
    "Batch",
    "StepMetrics",
    "softmax_cross_entropy",
    "make_train_step",
    "make_unlearn_step",
    "tree_is_finite",
]

ApplyFn = Callable[[Any, jax.Array], jax.Array]
Batch = tuple[jax.Array, jax.Array]
LossFn = Callable[[jax.Array, jax.Array], jax.Array]


class StepMetrics(NamedTuple):
  forget_loss: jax.Array
  retain_loss: jax.Array
  finite: jax.Array  # bool scalar: params, updates and losses are all finite


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean cross-entropy of integer ``labels`` under ``logits``."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def tree_is_finite(tree: Any) -> jax.Array:
  """True when every leaf of ``tree`` is finite everywhere."""
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _batch_loss(apply_fn: ApplyFn, loss: LossFn):
  def fn(params, batch: Batch):
    inputs, labels = batch
    return loss(apply_fn(params, inputs), labels)

  return fn


def make_train_step(
    apply_fn: ApplyFn,
    tx: optax.GradientTransformation,
    *,
    loss: LossFn = softmax_cross_entropy,
    jit: bool = True,
):
  """Returns ``step(params, opt_state, batch) -> (params, opt_state, metrics)``.

  Ordinary descent on ``loss``: training the original and retrained models, and
  the descent-based baselines. ``metrics.retain_loss`` holds the batch loss.
  """
  batch_loss = _batch_loss(apply_fn, loss)

  def step(params, opt_state, batch: Batch):
    value, grads = jax.value_and_grad(batch_loss)(params, batch)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    finite = tree_is_finite(params) & jnp.isfinite(value)
    return params, opt_state, StepMetrics(jnp.nan, value, finite)

  return jax.jit(step) if jit else step


def make_unlearn_step(
    apply_fn: ApplyFn,
    tx: optax.GradientTransformation,
    *,
    loss: LossFn = softmax_cross_entropy,
    jit: bool = True,
):
  """Returns one unlearning step over a forget batch and an optional retain batch.

  ``step(params, opt_state, forget_batch, retain_batch=None)`` computes the
  forget-set gradient (and the retain-set gradient when a retain batch is given)
  and applies ``tx``, which receives the forget gradient as its updates and the
  retain gradient as the extra argument ``retain_grads``: exactly what
  :func:`ieu_jax.ieu_transform` expects, and any chain around it.

  Args:
    apply_fn: ``apply_fn(params, x) -> logits``.
    tx: a gradient transformation, typically built on ``ieu_transform``.
    loss: ``loss(logits, labels) -> scalar``.
    jit: return the jitted step (the default) or the plain function.

  Returns:
    ``step(params, opt_state, forget_batch, retain_batch=None)`` returning
    ``(params, opt_state, StepMetrics)``.
  """
  batch_loss = _batch_loss(apply_fn, loss)
  tx = optax.with_extra_args_support(tx)

  def step(params, opt_state, forget_batch: Batch, retain_batch: Batch | None = None):
    forget_loss, forget_grads = jax.value_and_grad(batch_loss)(params, forget_batch)
    if retain_batch is None:
      retain_loss, extra = jnp.nan, {}
    else:
      retain_loss, retain_grads = jax.value_and_grad(batch_loss)(
          params, retain_batch
      )
      extra = {"retain_grads": retain_grads}
    updates, opt_state = tx.update(forget_grads, opt_state, params, **extra)
    params = optax.apply_updates(params, updates)
    finite = tree_is_finite(params) & jnp.isfinite(forget_loss)
    return params, opt_state, StepMetrics(forget_loss, retain_loss, finite)

  return jax.jit(step) if jit else step
