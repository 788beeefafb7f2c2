"""Typed hyperparameters: each method declares a frozen dataclass, built from a config.

A method's hyperparameters are written once, with their defaults, as a subclass of
:class:`HParams`::

  @dataclasses.dataclass(frozen=True)
  class FTHParams(HParams):
    epochs: int = 5
    learning_rate: float = 0.01

  hp = FTHParams.from_config(config.method.FT, method="FT")

:meth:`HParams.from_config` rejects a key the class does not declare (a misspelt
key is an error that names it and lists the valid ones, never silently ignored),
a required field left out, and a value of the wrong kind; numbers are converted to
the declared type (an ``int`` given for a ``float`` field becomes a float), so the
method reads ``hp.learning_rate`` with no ``float(...)`` at the use site.

Ranges are checked when an instance is made (:data:`RULES`, by field name, the same
meaning everywhere: a learning rate is finite and positive, a decay or a noise
scale is finite and non-negative, epochs and batch sizes are positive integers,
...), so a meaningless setting is refused before any work, with a message naming
the value.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from typing import Any, Callable, Mapping, TypeVar

import numpy as np

__all__ = ["HParams", "RULES"]

_H = TypeVar("_H", bound="HParams")


@functools.lru_cache(maxsize=None)
def _hints(cls) -> dict[str, Any]:
  return typing.get_type_hints(cls)


def _as_dict(values: Any) -> dict[str, Any]:
  if values is None:
    return {}
  if isinstance(values, HParams):
    return values.to_dict()
  if hasattr(values, "to_dict"):  # ml_collections.ConfigDict
    return dict(values.to_dict())
  if isinstance(values, Mapping):
    return dict(values)
  raise TypeError(f"hyperparameters must be a mapping; got {type(values).__name__}.")


def _coerce(owner: str, name: str, kind: Any, value: Any) -> Any:
  """``value`` as the declared ``kind``; a clear error for a value of another kind."""

  def bad():
    return TypeError(f"{owner}: hyperparameter {name}={value!r} must be {_describe(kind)}.")

  origin = typing.get_origin(kind)
  if origin is tuple:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
      raise bad()
    args = typing.get_args(kind)
    kinds = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
    if len(kinds) != len(value):
      raise bad()
    return tuple(_coerce(owner, name, k, v) for k, v in zip(kinds, value))
  if origin is typing.Literal:
    if value not in typing.get_args(kind):
      raise ValueError(
          f"{owner}: hyperparameter {name}={value!r}: expected one of {typing.get_args(kind)}.")
    return value
  if origin in (typing.Union, types.UnionType):
    args = typing.get_args(kind)
    if value is None and type(None) in args:
      return None
    for arg in args:
      if arg is type(None):
        continue
      try:
        return _coerce(owner, name, arg, value)
      except (TypeError, ValueError):
        continue
    raise bad()
  if kind is bool:
    if isinstance(value, (bool, np.bool_)):
      return bool(value)
    raise bad()
  if kind is int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
      raise bad()
    return int(value)
  if kind is float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
      raise bad()
    return float(value)
  if kind is str:
    if not isinstance(value, str):
      raise bad()
    return value
  return value


def _describe(kind: Any) -> str:
  names = {bool: "True or False", int: "an integer", float: "a number", str: "a string"}
  origin = typing.get_origin(kind)
  if origin is typing.Literal:
    return f"one of {typing.get_args(kind)}"
  if origin is tuple:
    return f"a sequence of {_describe(typing.get_args(kind)[0])}"
  if origin in (typing.Union, types.UnionType):
    return " or ".join(_describe(a) for a in typing.get_args(kind) if a is not type(None))
  return names.get(kind, str(kind))


def _finite(v) -> bool:
  return isinstance(v, (int, float)) and math.isfinite(v)


def _rule(test: Callable[[Any], bool], says: str):
  return test, says


_POSITIVE = _rule(lambda v: _finite(v) and v > 0, "a finite positive number")
_NON_NEGATIVE = _rule(lambda v: _finite(v) and v >= 0, "a finite number >= 0")
_AT_LEAST_ONE = _rule(lambda v: v >= 1, "a positive integer")
_AT_LEAST_ZERO = _rule(lambda v: v >= 0, "an integer >= 0")
_PROBABILITY = _rule(lambda v: _finite(v) and 0 <= v < 1, "in [0, 1)")
_FRACTION = _rule(lambda v: _finite(v) and 0 < v < 1, "in (0, 1)")
_SHARE = _rule(lambda v: _finite(v) and 0 < v <= 1, "in (0, 1]")

RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    # Steps and sizes.
    "epochs": _AT_LEAST_ONE, "steps": _AT_LEAST_ONE, "batch_size": _AT_LEAST_ONE, "forget_batch_size": _AT_LEAST_ONE,
    "max_steps": _AT_LEAST_ONE, "eval_every": _AT_LEAST_ONE, "probe_every": _AT_LEAST_ONE,
    "num_trajectories": _AT_LEAST_ONE, "relearn_size": _AT_LEAST_ONE,
    "heldout_size": _AT_LEAST_ONE, "guard_size": _AT_LEAST_ONE,
    "msteps": _AT_LEAST_ZERO, "warmup_steps": _AT_LEAST_ZERO, "num_steps": _AT_LEAST_ONE,
    "max_train": _AT_LEAST_ONE, "max_test": _AT_LEAST_ONE, "hidden": _AT_LEAST_ONE,
    "features": _rule(lambda v: len(v) > 0 and all(f >= 1 for f in v),
                      "a non-empty sequence of positive integers"),
    "channels": _rule(lambda v: len(v) > 0 and all(f >= 1 for f in v),
                      "a non-empty sequence of positive integers"),
    "num_res_blocks": _AT_LEAST_ONE, "emb_dim": _AT_LEAST_ONE,
    "image_size": _AT_LEAST_ONE, "eval_samples": _AT_LEAST_ONE,
    "samples_per_class": _AT_LEAST_ONE, "sample_steps": _AT_LEAST_ONE,
    "grid_per_class": _AT_LEAST_ONE, "mia_max_per_class": _AT_LEAST_ONE,
    "mask_batch_size": _AT_LEAST_ONE, "mask_draws": _AT_LEAST_ONE,
    "pseudo_label": _AT_LEAST_ZERO,
    # Rates and scales.
    "learning_rate": _POSITIVE, "temperature": _POSITIVE, "adam_learning_rate": _POSITIVE,
    "sgd_learning_rate": _POSITIVE,
    "learning_rates": _rule(lambda v: all(_finite(x) and x > 0 for x in
                                          (v if isinstance(v, tuple) else (v,))) and v != (),
                            "finite positive numbers"),
    "max_grad_norm": _NON_NEGATIVE,  # 0 (or None): no clipping
    "weight_decay": _NON_NEGATIVE, "noise_std": _NON_NEGATIVE, "ascent_scale": _NON_NEGATIVE,
    "retain_scale": _NON_NEGATIVE, "alpha": _NON_NEGATIVE, "gamma": _NON_NEGATIVE,
    "tolerance": _NON_NEGATIVE, "collapse_margin": _NON_NEGATIVE, "guard_drop": _NON_NEGATIVE,
    "guidance_scale": _NON_NEGATIVE, "mask_guidance": _NON_NEGATIVE,
    "momentum": _PROBABILITY, "val_size": _PROBABILITY, "label_drop": _PROBABILITY,
    "fraction": _FRACTION, "beta_start": _FRACTION, "beta_end": _FRACTION,
    "mask_fraction": _SHARE, "threshold_fraction": _SHARE,
}
"""The range of every field, by name (None, where a field allows it, is not checked)."""


@dataclasses.dataclass(frozen=True)
class HParams:
  """Base class of a method's hyperparameters (subclasses are frozen dataclasses).

  A subclass may add checks that involve several fields in ``validate()``.
  """

  def __post_init__(self):
    for f in dataclasses.fields(self):
      value = getattr(self, f.name)
      if f.name in RULES and value is not None:
        test, says = RULES[f.name]
        try:
          ok = bool(test(value))
        except TypeError:
          ok = False
        if not ok:
          raise ValueError(f"{type(self).__name__}: {f.name}={value!r} must be {says}.")
    self.validate()

  def validate(self) -> None:
    """Checks across fields (none by default); raises ValueError naming the values."""

  def program_key(self) -> dict[str, Any]:
    """Facts about hyperparameters a sweep passes as arrays that still shape the
    method's program (none by default); settings that differ in them run as
    different programs (:func:`ieu_jax.sweep`)."""
    return {}

  @classmethod
  def from_config(cls: type[_H], values: Any = None, /, *, method: str | None = None,
                  **overrides: Any) -> _H:
    """The hyperparameters given in ``values`` (a mapping or ConfigDict), the rest defaults.

    Args:
      values: the configured values; None for all defaults.
      method: the method's name, for error messages (default: the class name).
      **overrides: values that replace those of ``values``.

    Raises:
      ValueError: for a key the class does not declare (naming it and the valid
        keys), a required key left out, or a value outside a fixed set of choices.
      TypeError: for a value of the wrong kind (a string for a number, ...).
    """
    owner = method or cls.__name__
    values = dict(_as_dict(values), **overrides)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
      raise ValueError(
          f"{owner}: unknown hyperparameter(s) {unknown}; valid keys are {sorted(fields)}.")
    missing = sorted(
        n for n, f in fields.items()
        if n not in values and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING)
    if missing:
      raise ValueError(f"{owner}: missing required hyperparameter(s) {missing}.")
    hints = _hints(cls)
    try:
      return cls(**{n: _coerce(owner, n, hints[n], v) for n, v in values.items()})
    except ValueError as e:  # name the method, not the class
      prefix = f"{cls.__name__}: "
      raise ValueError(f"{owner}: {str(e)[len(prefix):]}" if str(e).startswith(prefix)
                       else str(e)) from None

  def replace(self: _H, **changes: Any) -> _H:
    """A copy with ``changes``, checked as :meth:`from_config` checks a config."""
    return type(self).from_config(self.to_dict(), **changes)

  def to_dict(self) -> dict[str, Any]:
    """Every hyperparameter, defaults included (what a results file records)."""
    return dataclasses.asdict(self)

  def fingerprint_dict(self) -> dict[str, Any]:
    """:meth:`to_dict` as cache keys see it: a field of :data:`UNKEYED_DEFAULTS` at
    its default is left out, so a field's arrival keeps every cached result made
    before it (they were made with that default)."""
    d = self.to_dict()
    for f in dataclasses.fields(self):
      if f.name in UNKEYED_DEFAULTS and d.get(f.name) == f.default:
        del d[f.name]
    return d


UNKEYED_DEFAULTS = ("steps",)
"""Fields that enter a fingerprint only when set off their default (``steps``: None
is the method's epochs, how every result before the field was made)."""
