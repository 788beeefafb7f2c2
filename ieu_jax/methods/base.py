"""The method interface: what every unlearning method receives and returns.

A method is a function ``unlearn(problem, hparams, key) -> params``: pure in the
sense that everything it uses arrives in its arguments, and everything random
comes from ``key``. Adding a method is one new module with such a function and one
line in :data:`ieu_jax.methods.REGISTRY`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Protocol

import jax
import optax

from ieu_jax._steps import ApplyFn
from ieu_jax.data import Dataset

__all__ = ["Problem", "Method", "sgd", "hp"]


@dataclasses.dataclass(frozen=True)
class Problem:
  """Everything a method may use.

  Attributes:
    apply_fn: ``apply_fn(params, x) -> logits``.
    init_fn: ``init_fn(key) -> params``, a fresh initialisation (for Retrain).
    original: the original model's params (trained on forget + retain).
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


class Method(Protocol):

  def __call__(self, problem: Problem, hparams: Mapping[str, Any], key: jax.Array) -> Any:
    ...


def hp(hparams: Mapping[str, Any], name: str, default: Any = None) -> Any:
  """``hparams[name]``, or ``default`` when absent; ``default=None`` means required."""
  if name in hparams:
    return hparams[name]
  if default is None:
    raise KeyError(f"missing hyperparameter {name!r}; given {sorted(hparams)}.")
  return default


def sgd(hparams: Mapping[str, Any]) -> optax.GradientTransformation:
  """The baselines' shared optimizer: SGD with momentum and (coupled) weight decay."""
  return optax.chain(
      optax.add_decayed_weights(hp(hparams, "weight_decay", 5e-4)),
      optax.sgd(hp(hparams, "learning_rate"), momentum=hp(hparams, "momentum", 0.9) or None),
  )
