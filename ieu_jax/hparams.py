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
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Any, Mapping, TypeVar

import numpy as np

__all__ = ["HParams"]

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
  if origin is typing.Literal:
    if value not in typing.get_args(kind):
      raise ValueError(
          f"{owner}: hyperparameter {name}={value!r}: expected one of {typing.get_args(kind)}.")
    return value
  if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
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
  if typing.get_origin(kind) is typing.Literal:
    return f"one of {typing.get_args(kind)}"
  return names.get(kind, str(kind))


@dataclasses.dataclass(frozen=True)
class HParams:
  """Base class of a method's hyperparameters (subclasses are frozen dataclasses)."""

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
    return cls(**{n: _coerce(owner, n, hints[n], v) for n, v in values.items()})

  def replace(self: _H, **changes: Any) -> _H:
    """A copy with ``changes``, checked as :meth:`from_config` checks a config."""
    return type(self).from_config(self.to_dict(), **changes)

  def to_dict(self) -> dict[str, Any]:
    """Every hyperparameter, defaults included (what a results file records)."""
    return dataclasses.asdict(self)
