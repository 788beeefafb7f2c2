"""The method interface: what every unlearning method receives and returns.

A method is a function ``unlearn(problem, hparams, key, *, name) -> params``
(a stateful model's variables, statistics included; ``docs/design.md``, "Models"):
pure in the sense that everything it uses arrives in its arguments, and
everything random comes from ``key``. ``hparams`` is an instance of the method's
own frozen dataclass of hyperparameters (a subclass of
:class:`ieu_jax.hparams.HParams`, defaults written once, there); ``name`` is the
name the method runs under (``"GA-plain"`` for IEU's ascent-only setting), for logs and
errors. Adding a method is one new module with such a function and its class, and
one line in :data:`ieu_jax.methods.REGISTRY`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, NamedTuple, Protocol

import jax
import optax

from ieu_jax._steps import ApplyFn
from ieu_jax.data import Dataset
from ieu_jax.hparams import HParams

__all__ = ["Method", "Problem", "SGDHParams", "UnlearnFn", "sgd"]


@dataclasses.dataclass(frozen=True)
class Problem:
  """Everything a method may use.

  Attributes:
    apply_fn: ``apply_fn(variables, x) -> logits`` (eval mode); for a stateful
      model also ``apply_fn(variables, x, train=True) -> (logits, new_state)``
      (:mod:`ieu_jax._state`).
    init_fn: ``init_fn(key) -> variables``, a fresh initialisation (for Retrain).
    original: the original model's variables (trained on forget + retain): its
      params, or a stateful model's :class:`ieu_jax._state.Variables`. A method
      returns the same kind, with the statistics its train-mode passes left.
    forget: the forget set, with the labels the original model was trained on.
    retain: the retain set.
    num_classes: number of classes.
    train: the original model's training hyperparameters (a mapping), for
      methods that retrain.
  """

  apply_fn: ApplyFn
  init_fn: Callable[[jax.Array], Any]
  original: Any
  forget: Dataset
  retain: Dataset
  num_classes: int
  train: Mapping[str, Any]


class UnlearnFn(Protocol):

  def __call__(self, problem: Problem, hparams: HParams, key: jax.Array, *,
               name: str = ...) -> Any:
    ...


class Method(NamedTuple):
  """A registered method: its function and the class of its hyperparameters."""

  unlearn: UnlearnFn
  hparams_class: type[HParams]


@dataclasses.dataclass(frozen=True, kw_only=True)
class SGDHParams(HParams):
  """The fields the descent baselines share: epochs of the baselines' SGD.

  Attributes:
    epochs: passes over the method's data (required).
    learning_rate: SGD's step size (required).
    momentum: SGD's momentum (0: none).
    weight_decay: coupled weight decay, added to the gradient before SGD.
    batch_size: examples per step.
  """

  epochs: int
  learning_rate: float
  momentum: float = 0.9
  weight_decay: float = 5e-4
  batch_size: int = 128

  def optimizer(self) -> optax.GradientTransformation:
    """:func:`sgd` with these hyperparameters."""
    return sgd(self.learning_rate, momentum=self.momentum, weight_decay=self.weight_decay)


def sgd(learning_rate: float | optax.Schedule, *, momentum: float = 0.9,
        weight_decay: float = 5e-4) -> optax.GradientTransformation:
  """The baselines' shared optimizer: SGD with momentum and (coupled) weight decay."""
  return optax.chain(
      optax.add_decayed_weights(weight_decay),
      optax.sgd(learning_rate, momentum=momentum or None),
  )
