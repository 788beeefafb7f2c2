"""l1-sparse: fine-tune on the retain set with a decaying l1 penalty on the weights.

The loss of epoch ``e`` (``e = 0, ..., E - 1`` of ``E = epochs``) is::

    CE(theta; B_r) + a_e * ||theta||_1,    a_e = alpha * (1 - e / E),

over every parameter, biases included, as in the public SalUn reference code:
``a_e`` decays linearly from ``alpha`` in the first epoch to ``alpha / E`` in
the last (it would reach 0 at ``e = E``, after the end), constant within an
epoch. The penalty's gradient is ``a_e * sign(theta)``, with ``sign(0) = 0``
(the subgradient the reference's autograd uses; JAX's own derivative of ``abs``
at 0 is 1, which would push weights initialised at 0, such as biases, away from
0). The optimizer is the baselines' SGD (:func:`ieu_jax.methods.base.sgd`),
whose own weight decay is separate from the penalty.

Hyperparameters: :class:`L1SparseHParams`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from ieu_jax import _program
from ieu_jax import _state
from ieu_jax import training
from ieu_jax._steps import ApplyFn, softmax_cross_entropy
from ieu_jax.methods import base

__all__ = ["L1SparseHParams", "l1_coefficient", "l1_norm", "loss", "program", "unlearn"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class L1SparseHParams(base.SGDHParams):
  """l1-sparse's hyperparameters: the baselines' SGD fields and those below.

  Attributes:
    alpha: the penalty's weight in the first epoch (required).
  """

  alpha: float


def l1_coefficient(epoch: int, epochs: int, alpha: float) -> float:
  """``a_e = alpha * (1 - epoch / epochs)``: the penalty's weight in ``epoch`` (0-based)."""
  if epochs < 1:
    raise ValueError(f"epochs must be at least 1, got {epochs}.")
  return float(alpha) * (1.0 - epoch / epochs)


def l1_norm(params: Any) -> jax.Array:
  """``sum |theta|`` over all leaves, with gradient ``sign(theta)`` (0 at 0)."""
  leaves = jax.tree.leaves(params)
  # theta * sign(theta) is |theta| exactly; stopping the gradient through sign
  # makes the derivative sign(theta).
  return sum(jnp.sum(p * jax.lax.stop_gradient(jnp.sign(p))) for p in leaves)


def loss(apply_fn: ApplyFn, params: Any, batch, coefficient) -> jax.Array:
  """Cross-entropy on ``batch`` plus ``coefficient * ||params||_1``.

  For a stateful model's variables: train mode, the penalty over the trainable
  params only (not the statistics), and ``(loss, new_state)``.
  """
  inputs, labels = batch
  logits, state = _state.forward(apply_fn, params, inputs, train=True)
  return _state.with_state(
      softmax_cross_entropy(logits, labels) + coefficient * l1_norm(_state.trainable(params)),
      state)


def program(problem: base.Problem, hparams: L1SparseHParams,
            name: str = "l1-sparse") -> _program.Program:
  """l1-sparse's program: retain epochs with the penalty's weight of each epoch.

  With a step budget, ``E`` (the epochs the weight decays over) is the number of
  retain epochs the budget starts, ``ceil(steps / steps_per_epoch)``.
  """
  apply_fn = problem.apply_fn

  def objective(params, batch, key, coefficient):
    del key
    return loss(apply_fn, params, batch, coefficient)

  def step(variables, opt_state, batch, key, hp):
    return training.descent_on(objective, base.sgd_from(hp))(
        variables, opt_state, batch, key, hp["coefficient"])

  def segments(key, budget):
    epochs = hparams.epochs
    if budget is not None:
      per_epoch = -(-int(problem.retain.y.shape[0]) // min(hparams.batch_size,
                                                          int(problem.retain.y.shape[0])))
      epochs = -(-budget // per_epoch)
    for epoch in range(epochs):
      yield _program.Segment(
          "descent", "retain", hparams.batch_size,
          jax.random.fold_in(jax.random.fold_in(key, epoch), 0), f"epoch {epoch + 1}/{epochs}",
          values=lambda hp, e=epoch: {"coefficient": l1_coefficient(e, epochs, hp["alpha"])})

  return _program.Program(
      steps={"descent": step}, init=lambda params, hp, key: base.sgd_from(hp).init(params),
      segments=segments, arrays=base.SGD_ARRAYS + ("alpha",),
      data={"retain": (problem.retain.x, problem.retain.y)}, prefix_consistent=False)


def unlearn(problem: base.Problem, hparams: L1SparseHParams, key: jax.Array, *,
            name: str = "l1-sparse") -> Any:
  """l1-sparse; see the module docstring."""
  return base.run_program(program(problem, hparams, name), problem, hparams, key, name)
