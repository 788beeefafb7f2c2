"""FT: fine-tune the original model on the retain set (catastrophic forgetting)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from ieu_jax import _state
from ieu_jax import training
from ieu_jax.methods import base


@dataclasses.dataclass(frozen=True, kw_only=True)
class FTHParams(base.SGDHParams):
  """FT's hyperparameters: those of :class:`ieu_jax.methods.base.SGDHParams`."""


def unlearn(problem: base.Problem, hparams: FTHParams, key: jax.Array, *, name: str = "FT") -> Any:
  """FT: ``hparams.epochs`` epochs of the baselines' SGD on the retain set."""
  tx = hparams.optimizer()
  step = training.make_indexed_step(
      training.descent_on(training.classifier_objective(problem.apply_fn), tx))
  params, _ = training.fit(
      problem.original, tx.init(_state.trainable(problem.original)), step,
      (problem.retain.x, problem.retain.y),
      epochs=hparams.epochs, batch_size=hparams.batch_size, key=key, name=name,
  )
  return params
