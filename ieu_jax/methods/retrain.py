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
      and optionally ``optimizer`` (``"adam"``), ``schedule`` (``"constant"``),
      ``milestones`` (for ``schedule="multistep"``), ``weight_decay`` (0.0) and
      ``augment`` (``"none"``; ``"crop_flip"``: random crop and flip of every batch,
      on the device, in the step); other keys (a model's) are not read.
    key: PRNG key of the initialisation and the data order.
    name: the phase, for logs and errors.

  Returns:
    The trained params.
  """
  init_key, data_key = jax.random.split(key)
  steps_per_epoch = -(-len(data) // int(train_hparams["batch_size"]))
  tx = make_train_optimizer(train_hparams, steps_per_epoch * int(train_hparams["epochs"]),
                            steps_per_epoch=steps_per_epoch)
  params = init_fn(init_key)
  objective = training.augmented(training.classifier_objective(apply_fn),
                                 str(train_hparams.get("augment", "none")))
  step = training.make_indexed_step(training.descent_on(objective, tx))
  params, _ = training.fit(
      params, tx.init(_state.trainable(params)), step, (data.x, data.y),
      epochs=int(train_hparams["epochs"]), batch_size=int(train_hparams["batch_size"]),
      key=data_key, name=name,
  )
  return params


def train_schedule(train_hparams, total_steps: int, steps_per_epoch: int = 1):
  """The recipe's learning rate: a number, or an optax schedule ``step -> rate``.

  ``schedule='cosine'`` decays the rate to 0 over ``total_steps``; ``'multistep'``
  multiplies it by 0.1 at the start of each epoch in ``milestones`` (0-based epoch
  numbers: with ``(91, 136)`` epochs 0-90 run at the rate, 91-135 at a tenth, the rest
  at a hundredth), that is from step ``milestone * steps_per_epoch`` on.
  """
  lr = float(train_hparams["learning_rate"])
  schedule = train_hparams.get("schedule", "constant")
  if schedule == "cosine":
    return optax.cosine_decay_schedule(lr, max(total_steps, 1))
  if schedule == "multistep":
    milestones = train_hparams.get("milestones") or ()
    return optax.piecewise_constant_schedule(
        lr, {int(m) * steps_per_epoch: 0.1 for m in milestones})
  return lr


def make_train_optimizer(train_hparams, total_steps: int, steps_per_epoch: int = 1):
  """Adam(W) or SGD with momentum, at :func:`train_schedule`'s rate."""
  lr = train_schedule(train_hparams, total_steps, steps_per_epoch)
  wd = float(train_hparams.get("weight_decay", 0.0))
  if train_hparams.get("optimizer", "adam") == "adam":
    return optax.adamw(lr, weight_decay=wd)
  return base.sgd(lr, momentum=0.9, weight_decay=wd)


def unlearn(problem: base.Problem, hparams: RetrainHParams, key: jax.Array, *,
            name: str = "Retrain") -> Any:
  """Retrain: :func:`train_model` on the retain set with ``problem.train``."""
  del hparams
  return train_model(problem.init_fn, problem.apply_fn, problem.retain, problem.train, key, name)
