"""RL: Random Labels, descent on the forget set relabelled at random, then the retain set.

One epoch is a pass over the forget set, in which every batch gets fresh labels
drawn uniformly at random (:func:`random_labels`, keyed by the step's key, so
labels differ between batches and between epochs), followed by a pass over the
retain set with its true labels; both are cross-entropy descent with one shared
optimizer (the baselines' SGD, :func:`ieu_jax.methods.base.sgd`). This follows
the per-batch relabelling of the public SalUn reference code; its cost is about
FT's.

The random labels are uniform over *all* classes, the true one included, as in
that reference (so a forget example keeps its label with probability
``1 / num_classes``); ``exclude_true=True`` draws from the other classes only.

Hyperparameters: :class:`RLHParams`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import optax

from ieu_jax import _program
from ieu_jax import _state
from ieu_jax import training
from ieu_jax._steps import ApplyFn, softmax_cross_entropy
from ieu_jax.methods import base

__all__ = ["RLHParams", "program", "random_labels", "relabel_descent", "relabel_objective",
           "unlearn"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class RLHParams(base.SGDHParams):
  """RL's hyperparameters: the baselines' SGD fields and those below.

  Attributes:
    exclude_true: draw random labels from the other classes only (default:
      from all classes, the true one included, as the reference does).
  """

  exclude_true: bool = False


def random_labels(
    key: jax.Array, labels: jax.Array, num_classes: int, exclude_true: bool = False
) -> jax.Array:
  """Labels drawn independently and uniformly at random, one per example.

  Args:
    key: PRNG key; a new key gives new labels.
    labels: the true integer labels, shape ``(n,)``.
    num_classes: number of classes.
    exclude_true: if False (the default, as in the SalUn reference code), each
      label is uniform over all ``num_classes`` classes, the true class
      included; if True, uniform over the ``num_classes - 1`` other classes.

  Returns:
    Integer labels of the shape and dtype of ``labels``.
  """
  if not exclude_true:
    return jax.random.randint(key, labels.shape, 0, num_classes, dtype=labels.dtype)
  if num_classes < 2:
    raise ValueError("exclude_true=True needs at least two classes.")
  other = jax.random.randint(key, labels.shape, 0, num_classes - 1, dtype=labels.dtype)
  return other + (other >= labels).astype(labels.dtype)  # skip the true class


def relabel_objective(apply_fn: ApplyFn, num_classes: int, exclude_true: bool = False):
  """``objective(params, batch, key)``: cross-entropy under labels drawn from ``key``.

  The labels are :func:`random_labels` of the batch's true labels, fresh for
  every key. Train mode (a stateful model's objective returns ``(loss, new_state)``).
  """

  def objective(params, batch, key):
    inputs, labels = batch
    new_labels = random_labels(key, labels, num_classes, exclude_true)
    logits, state = _state.forward(apply_fn, params, inputs, train=True)
    return _state.with_state(softmax_cross_entropy(logits, new_labels), state)

  return objective


def relabel_descent(
    apply_fn: ApplyFn,
    tx: optax.GradientTransformation,
    num_classes: int,
    exclude_true: bool = False,
):
  """``loss_and_update`` of one forget step: fresh random labels, then descent.

  The labels come from the step's key (see :func:`random_labels`); the returned
  loss is the cross-entropy under those labels.
  """
  return training.descent_on(relabel_objective(apply_fn, num_classes, exclude_true), tx)


def program(problem: base.Problem, hparams: RLHParams, name: str = "RL",
            tx: Callable[[Mapping[str, Any]], optax.GradientTransformation] | None = None
            ) -> _program.Program:
  """RL's program: per epoch a forget pass under random labels, then a retain pass.

  Args:
    problem: the unlearning problem.
    hparams: RL's hyperparameters (or a subclass's, such as SalUn's): the static ones.
    name: the method's name (unused: every pass is named by its kind).
    tx: ``tx(hp) -> optimizer`` from the step's hyperparameter arrays; default the
      baselines' SGD (:func:`ieu_jax.methods.base.sgd_from`; SalUn passes a masked one).
  """
  del name
  tx = base.sgd_from if tx is None else tx
  retain_loss = training.classifier_objective(problem.apply_fn)

  def forget_step(variables, opt_state, batch, key, hp):
    return relabel_descent(problem.apply_fn, tx(hp), problem.num_classes,
                           hparams.exclude_true)(variables, opt_state, batch, key)

  def retain_step(variables, opt_state, batch, key, hp):
    return training.descent_on(retain_loss, tx(hp))(variables, opt_state, batch, key)

  def segments(key, budget):
    forget_key, retain_key = jax.random.split(key)
    for epoch in _program.epochs_then_steps(hparams.epochs, budget):
      for kind, k in (("forget", forget_key), ("retain", retain_key)):
        # As one epoch of training.fit keyed by fold_in(k, epoch): its epoch 0.
        yield _program.Segment(kind, kind, hparams.batch_size,
                               jax.random.fold_in(jax.random.fold_in(k, epoch), 0),
                               f"{kind} pass, epoch {epoch + 1}")

  return _program.Program(
      steps={"forget": forget_step, "retain": retain_step},
      init=lambda params, hp, key: tx(hp).init(params), segments=segments,
      arrays=base.SGD_ARRAYS,
      data={"forget": (problem.forget.x, problem.forget.y),
            "retain": (problem.retain.x, problem.retain.y)})


def unlearn(problem: base.Problem, hparams: RLHParams, key: jax.Array, *,
            name: str = "RL") -> Any:
  """RL with the baselines' SGD; see the module docstring."""
  return base.run_program(program(problem, hparams, name), problem, hparams, key, name)
