"""GA: the published gradient-ascent baseline, ascent on the forget set with the baselines' SGD.

Every step takes a batch of the forget set (shuffled epochs) and descends on minus
the cross-entropy under the true labels (:func:`ascent_objective`), with the
optimizer the unlearning papers' reference code uses for it
(:func:`ieu_jax.methods.base.sgd`: momentum 0.9, coupled weight decay 5e-4). The
decay is added to the gradient of ``-CE`` before the momentum, so it still pulls
the weights towards 0 while the ascent pushes the loss up.

This is not IEU's ascent-only ablation: that one (``GA-plain`` in the registry and
the configs) is :func:`ieu_jax.ieu_transform` with the ascent term alone, plain
SGD with no momentum and no decay. With momentum 0.9 a steady gradient moves the
weights about ten times as far per step as plain SGD at the same learning rate, so
GA's learning rates sit a factor of ten below GA-plain's in the configs.

Ascent on cross-entropy is unbounded; a NaN stops the run with
:class:`ieu_jax.training.NonFiniteError` (reported as diverged).

Hyperparameters: :class:`GAHParams`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import optax

from ieu_jax import _program
from ieu_jax import _state
from ieu_jax import training
from ieu_jax._steps import ApplyFn, softmax_cross_entropy
from ieu_jax.methods import base

__all__ = ["GAHParams", "ascent_objective", "ascent_step", "program", "unlearn"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class GAHParams(base.SGDHParams):
  """GA's hyperparameters: the baselines' SGD fields (momentum 0.9, weight decay 5e-4).

  ``epochs`` and ``learning_rate`` are required, as for every SGD baseline; the
  configs set them for the small CNN (see ``experiments/configs/fashion_mnist.py``).
  """


def ascent_objective(apply_fn: ApplyFn):
  """``objective(params, batch, key) = -CE``: descending on it ascends the forget loss
  (train mode: a stateful model's objective returns ``(-CE, new_state)``)."""

  def objective(params, batch, key):
    del key
    inputs, labels = batch
    logits, state = _state.forward(apply_fn, params, inputs, train=True)
    return _state.with_state(-softmax_cross_entropy(logits, labels), state)

  return objective


def ascent_step(apply_fn: ApplyFn, tx: optax.GradientTransformation):
  """``loss_and_update(params, opt_state, batch, key)`` of one GA step (loss: ``-CE`` before it)."""
  return training.descent_on(ascent_objective(apply_fn), tx)


def program(problem: base.Problem, hparams: GAHParams, name: str = "GA") -> _program.Program:
  """GA's program: epochs (or ``hparams.steps`` steps) of ascent on the forget set."""
  del name
  return base.descent_program(problem, hparams, ascent_objective(problem.apply_fn), "forget",
                              "ascent")


def unlearn(problem: base.Problem, hparams: GAHParams, key: jax.Array, *,
            name: str = "GA") -> Any:
  """GA with the baselines' SGD; see the module docstring."""
  return base.run_program(program(problem, hparams, name), problem, hparams, key, name)
