"""Retrain: train from a fresh initialisation on the retain set only (the gold standard)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import optax

from ieu_jax import _state
from ieu_jax import training
from ieu_jax.methods import base
from ieu_jax.hparams import HParams


@dataclasses.dataclass(frozen=True)
class RetrainHParams(HParams):
  """Retrain has no hyperparameters of its own: it follows ``Problem.train``."""


def train_model(init_fn, apply_fn, data, train_hparams, key, name):
  """Trains a fresh model on ``data`` with the original model's recipe.

  Args:
    init_fn: ``init_fn(key) -> params``.
    apply_fn: ``apply_fn(params, x) -> logits``.
    data: the training set.
    train_hparams: a mapping with ``learning_rate``, ``epochs``, ``batch_size``
      and optionally ``optimizer`` (``"adam"``), ``schedule`` (``"constant"``)
      and ``weight_decay`` (0.0); other keys (a model's) are not read.
    key: PRNG key of the initialisation and the data order.
    name: the phase, for logs and errors.

  Returns:
    The trained params.
  """
  init_key, data_key = jax.random.split(key)
  steps_per_epoch = -(-len(data) // int(train_hparams["batch_size"]))
  tx = make_train_optimizer(train_hparams, steps_per_epoch * int(train_hparams["epochs"]))
  params = init_fn(init_key)
  step = training.make_indexed_step(
      training.descent_on(training.classifier_objective(apply_fn), tx))
  params, _ = training.fit(
      params, tx.init(_state.trainable(params)), step, (data.x, data.y),
      epochs=int(train_hparams["epochs"]), batch_size=int(train_hparams["batch_size"]),
      key=data_key, name=name,
  )
  return params


def make_train_optimizer(train_hparams, total_steps: int):
  """Adam(W) or SGD with momentum; ``schedule='cosine'`` decays the rate to 0."""
  lr, wd = float(train_hparams["learning_rate"]), float(train_hparams.get("weight_decay", 0.0))
  if train_hparams.get("schedule", "constant") == "cosine":
    lr = optax.cosine_decay_schedule(lr, max(total_steps, 1))
  if train_hparams.get("optimizer", "adam") == "adam":
    return optax.adamw(lr, weight_decay=wd)
  return base.sgd(lr, momentum=0.9, weight_decay=wd)


def unlearn(problem: base.Problem, hparams: RetrainHParams, key: jax.Array, *,
            name: str = "Retrain") -> Any:
  """Retrain: :func:`train_model` on the retain set with ``problem.train``."""
  del hparams
  return train_model(problem.init_fn, problem.apply_fn, problem.retain, problem.train, key, name)
