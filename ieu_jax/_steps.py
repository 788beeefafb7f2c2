"""Pure, jitted step functions over any ``apply_fn(params, x) -> logits``.

A batch is a pair ``(inputs, labels)`` of arrays with the same leading size;
labels are integer classes. Every step returns the new params, the new optimizer
state and a small :class:`StepMetrics` (losses, and whether everything stayed
finite, so a driver can stop with a clear error the moment a NaN appears).
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ieu_jax import _state

__all__ = [
    "ApplyFn",
    "Batch",
    "Objective",
    "StepMetrics",
    "classifier_objective",
    "clip_by_norm",
    "softmax_cross_entropy",
    "make_train_step",
    "make_unlearn_step",
    "tree_is_finite",
]

ApplyFn = Callable[[Any, jax.Array], jax.Array]
Batch = tuple[jax.Array, jax.Array]
LossFn = Callable[[jax.Array, jax.Array], jax.Array]
# objective(params, batch, key, *aux) -> scalar loss.
Objective = Callable[..., jax.Array]


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


def classifier_objective(apply_fn: ApplyFn, loss: LossFn = softmax_cross_entropy) -> Objective:
  """``objective(params, batch, key=None, *aux) -> loss(apply_fn(params, inputs), labels)``.

  The supervised objective of a classifier, in the form the step builders take
  (:func:`make_unlearn_step`, :func:`ieu_jax.training.descent_on`); the key and
  any further arguments are accepted and unused. For a stateful model's
  :class:`ieu_jax._state.Variables` it runs in train mode and returns ``(loss,
  new_state)``.
  """

  def objective(params, batch: Batch, key=None, *aux):
    del key, aux
    inputs, labels = batch
    if _state.is_stateful(params):  # train mode: (loss, new_state)
      logits, state = apply_fn(params, inputs, train=True)
      return loss(logits, labels), state
    return loss(apply_fn(params, inputs), labels)

  return objective


def clip_by_norm(tree: Any, max_norm: float) -> Any:
  """``tree`` scaled to a global L2 norm of at most ``max_norm``.

  Exactly ``g * min(1, max_norm / (||tree|| + 1e-12))`` for every leaf ``g``,
  ``||tree||`` being :func:`optax.tree.norm` over all leaves.
  """
  norm = optax.tree.norm(tree)
  return jax.tree.map(lambda g: g * jnp.minimum(1.0, max_norm / (norm + 1e-12)), tree)


def _check_tx(tx: Any) -> None:
  if not (callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None))):
    raise TypeError(f"tx={tx!r} must be an optax GradientTransformation (init and update).")


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
  For a stateful model, ``params`` are its :class:`ieu_jax._state.Variables`, the
  forward pass runs in train mode, ``opt_state`` is ``tx.init(variables.params)``
  and the step returns the new params beside the new statistics.

  Raises:
    TypeError: when ``tx`` is not a gradient transformation.
  """
  _check_tx(tx)
  batch_loss = classifier_objective(apply_fn, loss)

  value_and_grad = _state.value_and_grad(batch_loss)

  def step(variables, opt_state, batch: Batch):
    value, grads, state = value_and_grad(variables, batch)
    params = _state.trainable(variables)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    finite = tree_is_finite(params) & jnp.isfinite(value)
    return _state.merge(params, state), opt_state, StepMetrics(jnp.nan, value, finite)

  return jax.jit(step) if jit else step


def make_unlearn_step(
    apply_fn: ApplyFn | None,
    tx: optax.GradientTransformation,
    *,
    loss: LossFn = softmax_cross_entropy,
    objective: Objective | None = None,
    retain_objective: Objective | None = None,
    max_grad_norm: float | None = None,
    jit: bool = True,
):
  """Returns one unlearning step over a forget batch and an optional retain batch.

  ``step(params, opt_state, forget_batch, retain_batch=None, keys=None)``
  computes the forget-set gradient (and the retain-set gradient when a retain
  batch is given) and applies ``tx``, which receives the forget gradient as its
  updates and the retain gradient as the extra argument ``retain_grads``:
  exactly what :func:`ieu_jax.ieu_transform` expects, and any chain around it.

  The objectives are the classifier's ``loss(apply_fn(params, inputs), labels)``
  by default; any other model (a diffusion model, a loss that draws noise) gives
  ``objective(params, batch, key) -> scalar`` instead, and ``keys=(forget_key,
  retain_key)`` at each call reach the two objectives (both None when ``keys``
  is None).

  ``max_grad_norm`` bounds each gradient on its own: the forget gradient, and
  the retain gradient when there is one, is scaled to a global L2 norm of at most
  ``max_grad_norm`` *before* ``tx`` sees it, as ``g * min(1, max_grad_norm /
  (||g|| + 1e-12))`` (:func:`clip_by_norm`). With ``ieu_transform`` this bounds a
  step's move through the ascent term by ``lr * ascent_scale * max_grad_norm``
  and through the retain term by ``lr * retain_scale * max_grad_norm``.

  Args:
    apply_fn: ``apply_fn(params, x) -> logits``; None when ``objective`` is given.
    tx: a gradient transformation, typically built on ``ieu_transform``.
    loss: ``loss(logits, labels) -> scalar`` (with ``apply_fn``).
    objective: ``objective(params, batch, key) -> scalar``, the forget objective,
      in place of ``apply_fn`` and ``loss``.
    retain_objective: the retain objective, of the same form (default: the
      forget objective).
    max_grad_norm: None (no clipping) or the bound on each gradient's global norm.
    jit: return the jitted step (the default) or the plain function.

  For a stateful model, ``params`` are its :class:`ieu_jax._state.Variables`: both
  forward passes run in train mode, the retain pass from the statistics the forget
  pass left; ``tx`` (``opt_state = tx.init(variables.params)``) sees the params
  only, and the step returns them beside the new statistics.

  Returns:
    ``step(params, opt_state, forget_batch, retain_batch=None, keys=None)``
    returning ``(params, opt_state, StepMetrics)``.

  Raises:
    ValueError: when both or neither of ``apply_fn`` and ``objective`` are given,
      or ``max_grad_norm`` is not a finite number > 0.
    TypeError: when ``tx`` is not a gradient transformation.
  """
  _check_tx(tx)
  if objective is not None and apply_fn is not None:
    raise ValueError("make_unlearn_step: give apply_fn or objective, not both.")
  if objective is None:
    if apply_fn is None:
      raise ValueError("make_unlearn_step: give apply_fn or objective.")
    objective = classifier_objective(apply_fn, loss)
  if retain_objective is None:
    retain_objective = objective
  if max_grad_norm is not None and not (
      isinstance(max_grad_norm, (int, float, np.integer, np.floating))
      and not isinstance(max_grad_norm, bool)
      and math.isfinite(max_grad_norm) and max_grad_norm > 0):
    raise ValueError(
        f"max_grad_norm={max_grad_norm!r}: use None (no clipping) or a finite bound > 0.")
  clip = (lambda g: g) if max_grad_norm is None else (lambda g: clip_by_norm(g, max_grad_norm))
  tx = optax.with_extra_args_support(tx)

  forget_value_and_grad = _state.value_and_grad(objective)
  retain_value_and_grad = _state.value_and_grad(retain_objective)

  def step(variables, opt_state, forget_batch: Batch, retain_batch: Batch | None = None,
           keys: tuple[Any, Any] | None = None):
    forget_key, retain_key = (None, None) if keys is None else keys
    params = _state.trainable(variables)
    # Train mode: the retain pass starts from the statistics the forget pass left.
    forget_loss, forget_grads, state = forget_value_and_grad(variables, forget_batch, forget_key)
    if retain_batch is None:
      retain_loss, extra = jnp.nan, {}
    else:
      retain_loss, retain_grads, state = retain_value_and_grad(
          _state.merge(params, state), retain_batch, retain_key
      )
      extra = {"retain_grads": clip(retain_grads)}
    updates, opt_state = tx.update(clip(forget_grads), opt_state, params, **extra)
    params = optax.apply_updates(params, updates)
    finite = tree_is_finite(params) & jnp.isfinite(forget_loss)
    return _state.merge(params, state), opt_state, StepMetrics(forget_loss, retain_loss, finite)

  return jax.jit(step) if jit else step
