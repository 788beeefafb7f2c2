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

A method that can be swept also gives ``program(problem, hparams, name) ->``
:class:`ieu_jax._program.Program`: its steps with the hyperparameters of
``program.arrays`` passed as arrays. Its ``unlearn`` is then
:func:`run_program`, the same steps for one setting, and
:func:`ieu_jax.sweep` runs many settings as one program.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, NamedTuple, Protocol

import jax
import optax

from ieu_jax import _program
from ieu_jax import training
from ieu_jax._steps import ApplyFn
from ieu_jax.data import Dataset
from ieu_jax.hparams import HParams

__all__ = ["Method", "Problem", "SGD_ARRAYS", "SGDHParams", "UnlearnFn", "descent_program",
           "run_program", "sgd", "sgd_from"]


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
  """A registered method: its function, the class of its hyperparameters, and its
  program builder (None for a method that cannot be swept, such as Retrain)."""

  unlearn: UnlearnFn
  hparams_class: type[HParams]
  program: Callable[..., _program.Program] | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class SGDHParams(HParams):
  """The fields the descent baselines share: epochs of the baselines' SGD.

  Attributes:
    epochs: passes over the method's data (required).
    learning_rate: SGD's step size (required).
    steps: None (``epochs`` decides the length) or the run's length in optimizer
      steps, whatever the data's size (``epochs`` is then ignored).
    momentum: SGD's momentum (0: none).
    weight_decay: coupled weight decay, added to the gradient before SGD.
    batch_size: examples per step.
  """

  epochs: int
  learning_rate: float
  momentum: float = 0.9
  weight_decay: float = 5e-4
  batch_size: int = 128
  steps: int | None = None

  def optimizer(self) -> optax.GradientTransformation:
    """:func:`sgd` with these hyperparameters."""
    return sgd(self.learning_rate, momentum=self.momentum, weight_decay=self.weight_decay)


SGD_ARRAYS = ("learning_rate", "momentum", "weight_decay")
"""The SGD baselines' hyperparameters that a sweep passes as arrays."""


def sgd(learning_rate: float | optax.Schedule, *, momentum: Any = 0.9,
        weight_decay: Any = 5e-4) -> optax.GradientTransformation:
  """The baselines' shared optimizer: SGD with momentum and (coupled) weight decay.

  Every hyperparameter may be an array (traced in a sweep). A momentum known to be
  0 when the optimizer is built keeps no trace; a traced one always does (a trace
  with decay 0 is the gradient itself, the same steps).
  """
  static_zero = isinstance(momentum, (int, float)) and momentum == 0
  return optax.chain(
      optax.add_decayed_weights(weight_decay),
      optax.sgd(learning_rate, momentum=None if static_zero else momentum),
  )


def sgd_from(hp: Mapping[str, Any]) -> optax.GradientTransformation:
  """:func:`sgd` from the arrays of :data:`SGD_ARRAYS` in ``hp``."""
  return sgd(hp["learning_rate"], momentum=hp["momentum"], weight_decay=hp["weight_decay"])


def descent_program(problem: Problem, hparams: SGDHParams, objective: Any, data: str,
                    kind: str) -> _program.Program:
  """A program of one pass per epoch: the baselines' SGD descending on ``objective``
  over ``data`` (``"forget"`` or ``"retain"``), epoch ``e`` keyed by ``fold_in(key, e)``
  (FT on the retain set, GA's ascent objective on the forget set)."""
  def step(variables, opt_state, batch, key, hp):
    return training.descent_on(objective, sgd_from(hp))(variables, opt_state, batch, key)

  def segments(key, budget):
    for epoch in _program.epochs_then_steps(hparams.epochs, budget):
      yield _program.Segment(kind, data, hparams.batch_size, jax.random.fold_in(key, epoch),
                             f"epoch {epoch + 1}")

  dataset = getattr(problem, data)
  return _program.Program(
      steps={kind: step}, init=lambda params, hp, key: sgd_from(hp).init(params),
      segments=segments, arrays=SGD_ARRAYS, data={data: (dataset.x, dataset.y)})


def run_program(program: _program.Program, problem: Problem, hparams: HParams,
                key: jax.Array, name: str) -> Any:
  """``unlearn`` of a method that has a program: the program for this one setting."""
  values = {k: getattr(hparams, k) for k in program.arrays}
  return _program.run(program, problem.original, values, key,
                      budget=getattr(hparams, "steps", None), name=name)
