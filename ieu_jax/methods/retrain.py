"""Retrain: train from a fresh initialisation on the retain set only (the gold standard)."""

import jax

from ieu_jax import training
from ieu_jax.methods import base


def train_model(init_fn, apply_fn, data, train_hparams, key, name):
  """Trains a fresh model on ``data`` with the original model's recipe."""
  init_key, data_key = jax.random.split(key)
  steps_per_epoch = -(-len(data) // int(train_hparams["batch_size"]))
  tx = make_train_optimizer(train_hparams, steps_per_epoch * int(train_hparams["epochs"]))
  params = init_fn(init_key)
  step = training.make_indexed_step(
      training.descent_on(training.classifier_objective(apply_fn), tx))
  params, _ = training.fit(
      params, tx.init(params), step, (data.x, data.y),
      epochs=int(train_hparams["epochs"]), batch_size=int(train_hparams["batch_size"]),
      key=data_key, name=name,
  )
  return params


def make_train_optimizer(train_hparams, total_steps: int):
  """Adam(W) or SGD with momentum; ``schedule='cosine'`` decays the rate to 0."""
  import optax  # pylint: disable=g-import-not-at-top

  lr, wd = float(train_hparams["learning_rate"]), float(train_hparams.get("weight_decay", 0.0))
  if train_hparams.get("schedule", "constant") == "cosine":
    lr = optax.cosine_decay_schedule(lr, max(total_steps, 1))
  if train_hparams.get("optimizer", "adam") == "adam":
    return optax.adamw(lr, weight_decay=wd)
  return base.sgd({"learning_rate": lr, "weight_decay": wd, "momentum": 0.9})


def unlearn(problem: base.Problem, hparams, key):
  del hparams
  return train_model(
      problem.init_fn, problem.apply_fn, problem.retain, problem.train, key, "Retrain"
  )
