"""FT: fine-tune the original model on the retain set (catastrophic forgetting)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from ieu_jax import _program
from ieu_jax import training
from ieu_jax.methods import base


@dataclasses.dataclass(frozen=True, kw_only=True)
class FTHParams(base.SGDHParams):
  """FT's hyperparameters: those of :class:`ieu_jax.methods.base.SGDHParams`."""


def program(problem: base.Problem, hparams: FTHParams, name: str = "FT") -> _program.Program:
  """FT's program: epochs (or ``hparams.steps`` steps) of the baselines' SGD on the retain set."""
  objective = training.classifier_objective(problem.apply_fn)

  def step(variables, opt_state, batch, key, hp):
    return training.descent_on(objective, base.sgd_from(hp))(variables, opt_state, batch, key)

  def segments(key, budget):
    for epoch in _program.epochs_then_steps(hparams.epochs, budget):
      yield _program.Segment("descent", "retain", hparams.batch_size,
                             jax.random.fold_in(key, epoch), f"epoch {epoch + 1}")

  return _program.Program(
      steps={"descent": step}, init=lambda params, hp, key: base.sgd_from(hp).init(params),
      segments=segments, arrays=base.SGD_ARRAYS,
      data={"retain": (problem.retain.x, problem.retain.y)})


def unlearn(problem: base.Problem, hparams: FTHParams, key: jax.Array, *, name: str = "FT") -> Any:
  """FT: ``hparams.epochs`` epochs (or ``hparams.steps`` steps) of the baselines' SGD on
  the retain set."""
  return base.run_program(program(problem, hparams, name), problem, hparams, key, name)
