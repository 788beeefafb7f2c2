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
  del name
  return base.descent_program(problem, hparams, training.classifier_objective(problem.apply_fn),
                              "retain", "descent")


def unlearn(problem: base.Problem, hparams: FTHParams, key: jax.Array, *, name: str = "FT") -> Any:
  """FT: ``hparams.epochs`` epochs (or ``hparams.steps`` steps) of the baselines' SGD on
  the retain set."""
  return base.run_program(program(problem, hparams, name), problem, hparams, key, name)
