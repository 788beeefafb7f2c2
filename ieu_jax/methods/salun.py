"""SalUn: RL restricted to the weights most salient for the forget set.

The saliency of a weight is ``|d L_forget / d theta|``, the magnitude of the
gradient of the mean cross-entropy over the whole forget set (true labels), taken
once at the original weights. The mask keeps the top ``mask_fraction`` (default
0.5) of all weights by saliency, ranked globally over every parameter of the
model, not per layer (:func:`saliency_mask`). Then RL runs
(:mod:`ieu_jax.methods.rl`: forget passes with fresh random labels, retain
passes) with the mask applied to every step of both passes.

Two behaviours have been published for the weights outside the mask, and
``mask_applies_to`` selects one:

* ``"updates"`` (default): non-salient weights are held fixed; the mask
  multiplies the optimizer's final updates, so momentum and weight decay cannot
  move them either. This is the paper's definition,
  ``theta_u = m * (theta_o + delta) + (1 - m) * theta_o``, and it is what the
  public reference code does now: after each SGD step on masked gradients
  (``param.grad *= mask``) it writes the masked-out weights back to their values
  before unlearning and zeroes their momentum. On the salient weights the
  momentum and decay are those of the unmasked SGD in both, so the two agree.
* ``"gradients"``: the mask multiplies the gradients before the optimizer and
  nothing more, as earlier versions of the reference code did; the coupled
  weight decay (and momentum carrying it) then still shrinks the non-salient
  weights, by the same factor for all of them. Kept to reproduce numbers
  published with that code.

Hyperparameters: :class:`SalUnHParams`, those of RL plus ``mask_fraction``
(0.5) and ``mask_applies_to`` (``"updates"``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ieu_jax import _program
from ieu_jax import _state
from ieu_jax._steps import ApplyFn
from ieu_jax.methods import base
from ieu_jax.methods import rl

__all__ = ["MaskState", "SalUnHParams", "forget_gradient", "keep_masked", "saliency_mask",
           "unlearn"]

MaskMode = Literal["updates", "gradients"]
MASK_MODES = typing.get_args(MaskMode)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SalUnHParams(rl.RLHParams):
  """SalUn's hyperparameters: RL's and those below.

  Attributes:
    mask_fraction: the share of weights the saliency mask keeps, in ``[0, 1]``.
    mask_applies_to: ``"updates"`` (non-salient weights held fixed) or
      ``"gradients"`` (masked gradients only, the reference code's earlier
      behaviour); see the module
      docstring.
  """

  mask_fraction: float = 0.5
  mask_applies_to: MaskMode = "updates"


def saliency_mask(grads: Any, fraction: float) -> Any:
  """The global top-``fraction`` of weights by ``|grads|``, as a boolean pytree.

  Exactly ``k = floor(fraction * total + 0.5)`` weights are kept (``fraction *
  total`` rounded half up; the reference code truncates instead), ``total``
  being the number of weights over all leaves. Weights are ranked by magnitude
  over all leaves together; among equal magnitudes the one earlier in the
  flattened order (leaves in ``jax.tree.leaves`` order, each leaf row-major) is
  kept, so the mask is deterministic.

  Args:
    grads: a pytree of finite gradients (the saliency of each weight is its
      absolute value).
    fraction: share of weights to keep, in ``[0, 1]``.

  Returns:
    A pytree of ``grads``' structure with boolean leaves of the same shapes.

  Raises:
    ValueError: if ``fraction`` is outside ``[0, 1]``.
  """
  if not 0.0 <= float(fraction) <= 1.0:
    raise ValueError(f"mask fraction must lie in [0, 1], got {fraction}.")
  leaves, treedef = jax.tree.flatten(grads)
  sizes = [int(np.prod(jnp.shape(g))) for g in leaves]
  total = sum(sizes)
  k = math.floor(float(fraction) * total + 0.5)
  flat = jnp.concatenate([jnp.abs(jnp.asarray(g, jnp.float32)).ravel() for g in leaves])
  order = jnp.argsort(-flat, stable=True)  # descending magnitude, ties by position
  keep = jnp.zeros(total, bool).at[order[:k]].set(True)
  parts = jnp.split(keep, np.cumsum(sizes)[:-1]) if leaves else []
  return jax.tree.unflatten(
      treedef, [p.reshape(jnp.shape(g)) for p, g in zip(parts, leaves)]
  )


def forget_gradient(
    apply_fn: ApplyFn, params: Any, x: jax.Array, y: jax.Array, batch_size: int = 256
) -> Any:
  """Gradient of the mean cross-entropy over all of ``(x, y)``, in chunks.

  Chunks have a fixed size (one compilation); the last one is padded and the
  padding weighted zero, so the result is the exact full-set gradient. For a
  stateful model the forward pass runs in eval mode (the original's statistics,
  so each example's loss is its own and chunks and padding change nothing) and
  the gradient is over the trainable params, the tree the saliency mask covers.
  """
  n = int(y.shape[0])
  if n == 0:
    raise ValueError("the forget set is empty: no saliency to compute.")
  batch = min(batch_size, n)
  num_chunks = -(-n // batch)

  params, state = _state.split(params)
  grads = _chunk_grad(apply_fn, n, batch, params, state, x, y, 0)
  for c in range(1, num_chunks):
    grads = jax.tree.map(jnp.add, grads,
                         _chunk_grad(apply_fn, n, batch, params, state, x, y, c * batch))
  return grads


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _chunk_grad(apply_fn, n, batch, params, state, x, y, start):
  """The gradient of ``sum_i w_i CE_i`` over the chunk at ``start`` (``w_i = 1/n``, 0 on
  the padding); compiled once per model, set size and chunk (shadow copies share it)."""
  idx = start + jnp.arange(batch)
  weight = (idx < n).astype(jnp.float32) / n
  idx = jnp.minimum(idx, n - 1)

  def total_loss(p):
    logits = apply_fn(_state.merge(p, state), x[idx])  # eval mode
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, y[idx])
    return jnp.sum(weight * losses)

  return jax.grad(total_loss)(params)


class MaskState(NamedTuple):
  """State of :func:`keep_masked`: the mask (kept in the state, so a jitted step
  receives it as an argument rather than as a constant)."""

  mask: Any


def keep_masked(mask: Any) -> optax.GradientTransformation:
  """Multiplies the updates by ``mask`` (1: kept, 0: zeroed), leaf by leaf.

  Chained after an optimizer, it holds the masked-out weights fixed; chained
  before, it masks the gradients that the optimizer sees. A boolean mask counts
  as 0/1.
  """

  def init_fn(params):
    del params
    return MaskState(mask)

  def update_fn(updates, state, params=None):
    del params
    updates = jax.tree.map(lambda u, m: u * jnp.asarray(m, u.dtype), updates, state.mask)
    return updates, state

  return optax.GradientTransformation(init_fn, update_fn)


def program(problem: base.Problem, hparams: SalUnHParams, name: str = "SalUn", *,
            mask: Any = None) -> _program.Program:
  """SalUn's program: RL's passes with the optimizer masked by the saliency of the
  original's forget gradient (computed once, when the program is built).

  The mask enters the optimizer's state through the program's ``init_aux`` (the
  steps read it from there), so ``mask`` may be given instead: a stacked one,
  one per copy, lets :func:`ieu_jax.shadow.unlearn_shadows` give each copy its own.
  """
  mode = hparams.mask_applies_to
  if mode not in MASK_MODES:
    raise ValueError(f"mask_applies_to={mode!r}: use one of {MASK_MODES}.")
  if mask is None:
    grads = forget_gradient(
        problem.apply_fn, problem.original, problem.forget.x, problem.forget.y,
        hparams.batch_size,
    )
    mask = saliency_mask(grads, hparams.mask_fraction)

  def tx(hp, mask):
    sgd = base.sgd_from(hp)
    return (optax.chain(sgd, keep_masked(mask)) if mode == "updates"
            else optax.chain(keep_masked(mask), sgd))

  # The steps' optimizer reads the mask from its state (MaskState), never from the
  # closure: the mask given here only shapes the trace.
  prog = rl.program(problem, hparams, name, tx=lambda hp: tx(hp, mask))
  return dataclasses.replace(prog, init=lambda params, hp, key, m: tx(hp, m).init(params),
                             init_aux=(mask,))


def unlearn(problem: base.Problem, hparams: SalUnHParams, key: jax.Array, *,
            name: str = "SalUn") -> Any:
  """SalUn; see the module docstring."""
  return base.run_program(program(problem, hparams, name), problem, hparams, key, name)
