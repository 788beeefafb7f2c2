"""IEU as optax gradient transformations.

One IEU step, with forget-set gradient ``g_f``, retain-set gradient ``g_r``,
learning rate ``eta``, ascent scale ``alpha_f``, retain scale ``alpha_r``, weight
decay ``lambda`` and weight-noise scale ``sigma``, moves the weights by::

    delta = eta * alpha_f * g_f - eta * alpha_r * g_r - eta * lambda * theta
            + sigma * xi,        xi ~ N(0, I), fresh at every step.

It is the chain of three transformations, each usable on its own:

1. :func:`ascent` turns the forget gradient into a *descent direction*
   ``-alpha_f * g_f + alpha_r * g_r`` (the gradient of ``alpha_r * R - alpha_f * F``);
2. :func:`decoupled_weight_decay` adds ``lambda * theta`` to that direction, before
   the learning rate, as AdamW does, so the decay is ``eta * lambda`` per step;
3. the learning rate (``optax.scale_by_learning_rate``);
4. :func:`add_weight_noise` adds ``sigma * xi`` *after* the learning rate, so
   ``sigma`` is in the units of the parameters, not of the gradients.

Everything is traceable: hyperparameters may be arrays (``jax.vmap`` over a sweep,
``optax.inject_hyperparams``), and the PRNG key lives in the noise state, so copies
vmapped over different keys draw different noise.

The builders refuse a hyperparameter known to be wrong when they are called:
None, a bool, a non-number, or a Python number or concrete array that is
negative or not finite. Schedules and traced values (inside ``jit``, ``vmap`` or
the jitted update of ``inject_hyperparams``) are only known when the step runs,
and pass unchecked.
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = [
    "WeightNoiseState",
    "add_weight_noise",
    "ascent",
    "decoupled_weight_decay",
    "ieu_transform",
    "as_key",
]

KeyLike = jax.Array | int


def as_key(key: KeyLike) -> jax.Array:
  """Returns a typed PRNG key from a seed, a raw ``uint32[2]`` key or a typed key.

  A seed may be a Python int or an integer array (``optax.inject_hyperparams``
  stores hyperparameters as arrays, so a seed arrives that way there).

  Raises:
    TypeError: if ``key`` is none of the accepted forms.
  """
  if isinstance(key, numbers.Integral):
    return jax.random.key(int(key))
  dtype = getattr(key, "dtype", None)
  if dtype is None:
    raise TypeError(f"key must be an int seed or a PRNG key, got {key!r}.")
  if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
    return key
  if jnp.issubdtype(dtype, jnp.integer):
    if key.shape == ():
      return jax.random.key(key)
    if key.shape == (2,) and dtype == jnp.uint32:
      return jax.random.wrap_key_data(key)
  raise TypeError(
      "key must be an int seed, an integer scalar array, a raw uint32[2] key or"
      f" a typed PRNG key; got dtype {dtype} and shape {getattr(key, 'shape', None)}."
  )


def _check_nonnegative(name: str, value: Any, *, schedule: bool = False) -> None:
  """Refuses a hyperparameter that is known now and is not finite and ``>= 0``.

  A Python number, a NumPy value or a concrete JAX array (every element) is
  checked; a traced value passes, and so does a callable where ``schedule``
  allows one: both are only known when the step runs.

  Args:
    name: the argument's name, for the message.
    value: the hyperparameter.
    schedule: whether a callable (an optax schedule) is a legal value.

  Raises:
    TypeError: for None, a bool, a callable where no schedule is allowed, or
      anything that is not numeric.
    ValueError: for a negative, NaN or infinite value.
  """
  if (schedule and callable(value)) or isinstance(value, jax.core.Tracer):
    return
  expected = "a finite number >= 0" + (" or an optax schedule" if schedule else "")
  if value is None or isinstance(value, (bool, np.bool_, str, bytes)) or callable(value):
    raise TypeError(f"{name}={value!r} must be {expected}.")
  try:
    array = np.asarray(value)
  except (TypeError, ValueError):
    raise TypeError(f"{name}={value!r} must be {expected}.") from None
  if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
    raise TypeError(f"{name}={value!r} must be {expected}.")
  if not np.all(np.isfinite(array)) or np.any(array < 0):
    raise ValueError(f"{name}={value!r} must be {expected}.")


def ascent(
    ascent_scale: jax.typing.ArrayLike = 1.0,
    retain_scale: jax.typing.ArrayLike = 0.0,
) -> optax.GradientTransformationExtraArgs:
  """Turns a forget-set gradient into the direction that ascends on it.

  ``update(forget_grads, state, params=None, *, retain_grads=None)`` returns
  ``-ascent_scale * forget_grads + retain_scale * retain_grads``: a direction to
  *descend* (what optax expects before the learning rate), which climbs the forget
  loss and, if a retain gradient is given, descends the retain loss.

  Args:
    ascent_scale: ``alpha_f``, the weight of the forget loss (scalar or array).
    retain_scale: ``alpha_r``, the weight of the retain loss. If it is a nonzero
      Python number, ``retain_grads`` must be passed to ``update``.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` with an empty state.

  Raises:
    TypeError: when a scale is None, a bool, a callable or not numeric.
    ValueError: when a concrete scale is negative or not finite.

  Examples:
    >>> import jax.numpy as jnp, optax, ieu_jax
    >>> ga = optax.chain(ieu_jax.ascent(), optax.sgd(0.1))
    >>> params = jnp.ones(2)
    >>> updates, _ = ga.update(jnp.array([1., -1.]), ga.init(params), params)
    >>> updates
    Array([ 0.1, -0.1], dtype=float32)
  """
  _check_nonnegative("ascent_scale", ascent_scale)
  _check_nonnegative("retain_scale", retain_scale)

  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params=None, *, retain_grads=None, **extra):
    del params, extra
    direction = jax.tree.map(lambda g: -ascent_scale * g, updates)
    if retain_grads is None:
      if isinstance(retain_scale, numbers.Real) and retain_scale != 0:
        raise ValueError(
            f"ascent(retain_scale={retain_scale}) needs retain_grads: pass"
            " update(..., retain_grads=...) or set retain_scale=0."
        )
      return direction, state
    if jax.tree.structure(retain_grads) != jax.tree.structure(updates):
      raise ValueError(
          "retain_grads must have the structure of the forget gradients:"
          f" {jax.tree.structure(retain_grads)} vs {jax.tree.structure(updates)}."
      )
    direction = jax.tree.map(
        lambda d, r: d + retain_scale * r, direction, retain_grads
    )
    return direction, state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def decoupled_weight_decay(
    weight_decay: optax.ScalarOrSchedule = 0.0,
    mask: Any = None,
) -> optax.GradientTransformation:
  """Adds ``weight_decay * params`` to the updates (decay in parameter space).

  Placed before the learning rate, as in AdamW, it shrinks the weights by
  ``learning_rate * weight_decay * params`` per step, independent of the gradient's
  scale. This is ``optax.add_decayed_weights``; IEU names it for what it does here.

  Args:
    weight_decay: ``lambda``, a scalar, array or schedule.
    mask: optional tree (or function of params) of booleans choosing the leaves to
      decay, as in ``optax.masked``.

  Returns:
    An ``optax.GradientTransformation``.

  Raises:
    TypeError: when ``weight_decay`` is None, a bool or not numeric.
    ValueError: when a concrete ``weight_decay`` is negative or not finite.
  """
  _check_nonnegative("weight_decay", weight_decay, schedule=True)
  return optax.add_decayed_weights(weight_decay, mask)


class WeightNoiseState(NamedTuple):
  """State of :func:`add_weight_noise`: the step count and the PRNG key."""

  count: jax.Array  # int32 scalar
  key: jax.Array  # a typed PRNG key


def add_weight_noise(
    noise_std: optax.ScalarOrSchedule,
    key: KeyLike = 0,
) -> optax.GradientTransformation:
  """Adds ``noise_std * xi``, ``xi ~ N(0, I)`` fresh at every step, to the updates.

  Put it *after* the learning rate in a chain: the noise is then in parameter
  units, and ``noise_std`` is exactly the standard deviation of the perturbation of
  each weight per step.

  Args:
    noise_std: ``sigma``, a scalar, array or schedule ``count -> sigma``.
    key: an int seed, an integer array or a PRNG key. It is stored in the state
      and split at every update, so copies initialised with different keys under
      ``jax.vmap`` draw different noise.

  Returns:
    An ``optax.GradientTransformation`` with a :class:`WeightNoiseState`.

  Raises:
    TypeError: when ``noise_std`` is None, a bool or not numeric.
    ValueError: when a concrete ``noise_std`` is negative or not finite.
  """
  _check_nonnegative("noise_std", noise_std, schedule=True)

  def init_fn(params):
    del params
    return WeightNoiseState(count=jnp.zeros([], jnp.int32), key=as_key(key))

  # A noise level known to be zero when the step is traced (GA, GA+Decay) draws
  # nothing: the updates are the same, and the step compiles without one
  # random-number generator per leaf.
  static_zero = isinstance(noise_std, (int, float)) and noise_std == 0

  def update_fn(updates, state, params=None):
    del params
    std = noise_std(state.count) if callable(noise_std) else noise_std
    next_key, noise_key = jax.random.split(state.key)
    new_state = WeightNoiseState(count=optax.safe_increment(state.count), key=next_key)
    if static_zero:
      return updates, new_state
    leaves, treedef = jax.tree.flatten(updates)
    leaf_keys = jax.random.split(noise_key, max(len(leaves), 1))
    noisy = [
        u + jnp.asarray(std, u.dtype) * jax.random.normal(k, u.shape, u.dtype)
        for u, k in zip(leaves, leaf_keys)
    ]
    return jax.tree.unflatten(treedef, noisy), new_state

  return optax.GradientTransformation(init_fn, update_fn)


def ieu_transform(
    learning_rate: optax.ScalarOrSchedule,
    *,
    ascent_scale: jax.typing.ArrayLike = 1.0,
    retain_scale: jax.typing.ArrayLike = 0.0,
    weight_decay: jax.typing.ArrayLike = 0.0,
    noise_std: optax.ScalarOrSchedule = 0.0,
    key: KeyLike = 0,
) -> optax.GradientTransformationExtraArgs:
  """Influence Eliminating Unlearning as one optax transformation.

  ``update(forget_grads, state, params, retain_grads=None)`` returns updates that,
  applied with ``optax.apply_updates``, move the weights by exactly::

      lr * ascent_scale * forget_grads - lr * retain_scale * retain_grads
      - lr * weight_decay * params + noise_std * xi

  It is ``chain(ascent, decoupled_weight_decay, scale_by_learning_rate,
  add_weight_noise)``; the paper's ablations are settings of it (GA-plain:
  ``weight_decay=0, noise_std=0``; Noisy: ``ascent_scale=0`` with a retain term;
  GA+Decay: ``noise_std=0``).

  Args:
    learning_rate: ``eta``, a scalar ``>= 0`` (0 moves nothing but the noise)
      or an optax schedule.
    ascent_scale: ``alpha_f``.
    retain_scale: ``alpha_r`` (0: IEU needs no retain data).
    weight_decay: ``lambda``, decoupled: the weights shrink by ``eta * lambda``.
    noise_std: ``sigma``, per-weight standard deviation of the injected noise,
      in parameter units; a scalar or a schedule.
    key: int seed or PRNG key of the noise.

  Returns:
    An ``optax.GradientTransformationExtraArgs``.

  Raises:
    TypeError: when a hyperparameter is None, a bool or not numeric (a callable
      is a schedule only for ``learning_rate``, ``weight_decay`` and
      ``noise_std``).
    ValueError: when a concrete hyperparameter is negative or not finite.

  Examples:
    >>> import jax, jax.numpy as jnp, optax, ieu_jax
    >>> tx = ieu_jax.ieu_transform(0.1, weight_decay=0.5)
    >>> params = {'w': jnp.ones(2)}
    >>> state = tx.init(params)
    >>> updates, state = tx.update({'w': jnp.array([1., 0.])}, state, params)
    >>> optax.apply_updates(params, updates)['w']
    Array([1.05, 0.95], dtype=float32)
  """
  _check_nonnegative("learning_rate", learning_rate, schedule=True)
  return optax.chain(
      ascent(ascent_scale, retain_scale),
      decoupled_weight_decay(weight_decay),
      optax.scale_by_learning_rate(learning_rate),
      add_weight_noise(noise_std, key),
  )
