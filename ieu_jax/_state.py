"""Models with non-trainable state (BatchNorm statistics): the variables contract.

A stateless model's variables are its params, exactly as before: every function
of the library receives them, differentiates them and updates them as one pytree.

A stateful model's variables are a :class:`Variables` pair ``(params, state)``:
``params`` the trainable weights (the ``"params"`` collection), ``state`` every
other collection (``{"batch_stats": ...}``). Its ``apply_fn`` has two modes:

* ``apply_fn(variables, x) -> logits``: eval mode, the stored statistics, pure;
  what every metric and every evaluation calls;
* ``apply_fn(variables, x, train=True) -> (logits, new_state)``: train mode, the
  batch's statistics, and the state updated from them (flax's
  ``mutable=["batch_stats"]``); what every training, unlearning and relearning
  forward pass calls.

Gradients, optimizer states and every optax transformation (IEU's ascent, decay
and noise included) see ``variables.params`` only (:func:`trainable`); the state
moves only through train-mode forward passes. An objective over stateful
variables returns ``(loss, new_state)`` (:func:`with_state`), and
:func:`value_and_grad` threads it. For stateless variables every helper here
reduces to the code the library ran before, so their numbers are unchanged.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax

__all__ = ["Variables", "forward", "is_stateful", "merge", "split", "trainable",
           "value_and_grad", "with_state"]


class Variables(NamedTuple):
  """A stateful model's variables: trainable ``params`` and non-trainable ``state``.

  ``state`` is a dict of flax collections other than ``"params"``, e.g.
  ``{"batch_stats": {...}}``.
  """

  params: Any
  state: Any


def is_stateful(variables: Any) -> bool:
  """Whether ``variables`` carry non-trainable state (a :class:`Variables`)."""
  return isinstance(variables, Variables)


def split(variables: Any) -> tuple[Any, Any]:
  """``(params, state)``; the state is None for a stateless model."""
  if is_stateful(variables):
    return variables.params, variables.state
  return variables, None


def merge(params: Any, state: Any) -> Any:
  """The inverse of :func:`split`: ``params`` alone when ``state`` is None."""
  return params if state is None else Variables(params, state)


def trainable(variables: Any) -> Any:
  """What gradients, optimizers and IEU's transformations see: the params."""
  return split(variables)[0]


def forward(apply_fn: Callable, variables: Any, x: jax.Array, *,
            train: bool) -> tuple[jax.Array, Any]:
  """``(logits, new_state)`` of ``apply_fn`` in train or eval mode.

  A stateless model is called as ``apply_fn(params, x)`` in both modes (its
  new state is None); a stateful one in train mode returns its updated state,
  in eval mode its state unchanged.
  """
  if not is_stateful(variables):
    return apply_fn(variables, x), None
  if train:
    return apply_fn(variables, x, train=True)
  return apply_fn(variables, x), variables.state


def with_state(value: jax.Array, state: Any) -> Any:
  """An objective's result: ``value`` alone (stateless) or ``(value, state)``."""
  return value if state is None else (value, state)


def value_and_grad(objective: Callable[..., Any]) -> Callable[..., tuple[Any, Any, Any]]:
  """``fn(variables, *args) -> (value, grads, new_variables_state)``.

  ``grads`` are with respect to the params only. For stateless variables it is
  ``jax.value_and_grad(objective)(params, *args)`` and the state is None; for a
  :class:`Variables`, ``objective(variables, *args)`` returns ``(value,
  new_state)`` and is differentiated in its params with the state held fixed.
  """

  def fn(variables, *args):
    params, state = split(variables)
    if state is None:
      value, grads = jax.value_and_grad(objective)(params, *args)
      return value, grads, None
    (value, new_state), grads = jax.value_and_grad(
        lambda p: objective(Variables(p, state), *args), has_aux=True)(params)
    return value, grads, new_state

  return fn
