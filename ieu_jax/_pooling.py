"""Max-pooling whose gradient is cheap on XLA:CPU, with the same values and gradients.

``flax.linen.max_pool`` lowers to ``reduce_window``, whose gradient is XLA's
``select_and_scatter``; on XLA:CPU that gradient alone cost more than the rest of
the small CNN's training step (``docs/performance.md``). For non-overlapping
windows (window = strides, no padding) the same pooling is a reshape followed by
a ``max`` over the window axes, and its gradient can be written by hand:

* the forward pass is ``max`` over the window axes (the same values, bit for bit);
* the backward pass routes each output's gradient to the **first** maximal
  element of its window in row-major order, exactly as ``select_and_scatter``
  does. (The automatic gradient of ``jnp.max`` instead splits it evenly between
  tied maxima; ties are common in images with constant backgrounds, where a
  convolution's output equals its bias over whole windows.)

:func:`max_pool` picks this form on CPU and ``reduce_window`` elsewhere (GPU and
TPU run the standard one well); ``impl=`` overrides the choice.
"""

from __future__ import annotations

import functools
from typing import Literal, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["max_pool", "window_max_pool"]


def _windows(x: jax.Array, window: tuple[int, int]) -> jax.Array:
  """``(..., H, W, C) -> (..., H/wh, wh, W/ww, ww, C)`` (a free reshape)."""
  *lead, h, w, c = x.shape
  wh, ww = window
  return x.reshape(*lead, h // wh, wh, w // ww, ww, c)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def window_max_pool(x: jax.Array, window: tuple[int, int]) -> jax.Array:
  """Non-overlapping max-pooling of ``(..., H, W, C)``; ``H, W`` divisible by ``window``."""
  return jnp.max(_windows(x, window), axis=(-4, -2))


def _pool_fwd(x, window):
  y = window_max_pool(x, window)
  return y, (x, y)


def _pool_bwd(window, res, g):
  x, y = res
  wh, ww = window
  xw = _windows(x, window)
  y = y[..., :, None, :, None, :]
  # Element (i, j) of a window takes the gradient when it is maximal and no
  # element before it in row-major order is: written with the window's own
  # elements, so that XLA fuses it into one loop (a reduction over the window
  # for the index of the first maximum measured slower).
  seen, rows = None, []
  for i in range(wh):
    row = []
    for j in range(ww):
      row.append(jnp.ones_like(y, bool) if seen is None else ~seen)
      here = xw[..., i:i + 1, :, j:j + 1, :] == y
      seen = here if seen is None else seen | here
    rows.append(jnp.concatenate(row, axis=-2))
  first = jnp.concatenate(rows, axis=-4)
  dx = jnp.where((xw == y) & first, g[..., :, None, :, None, :], jnp.zeros((), g.dtype))
  return (dx.reshape(x.shape),)


window_max_pool.defvjp(_pool_fwd, _pool_bwd)


def max_pool(
    x: jax.Array,
    window: Sequence[int],
    strides: Sequence[int] | None = None,
    *,
    impl: Literal["auto", "window", "reduce_window"] = "auto",
) -> jax.Array:
  """``flax.linen.max_pool(x, window, strides)`` with ``VALID`` padding, fast on CPU.

  Args:
    x: ``(..., H, W, C)``.
    window: the pooling window ``(wh, ww)``.
    strides: defaults to ``window``.
    impl: ``"window"`` (the reshape form above; needs ``strides == window`` and
      ``H, W`` divisible by it), ``"reduce_window"`` (flax's), or ``"auto"``: the
      reshape form on CPU where it applies, flax's otherwise.

  Returns:
    The pooled array; values and gradients equal ``flax.linen.max_pool``'s.
  """
  window = tuple(int(w) for w in window)
  strides = window if strides is None else tuple(int(s) for s in strides)
  applies = (len(window) == 2 and strides == window and x.ndim >= 3
             and x.shape[-3] % window[0] == 0 and x.shape[-2] % window[1] == 0)
  if impl == "auto":
    impl = "window" if applies and jax.default_backend() == "cpu" else "reduce_window"
  if impl == "window":
    if not applies:
      raise ValueError(
          f"impl='window' needs non-overlapping windows that tile the input; got"
          f" window={window}, strides={strides}, input shape {x.shape}.")
    return window_max_pool(x, window)
  if impl != "reduce_window":
    raise ValueError(f"impl={impl!r}: expected 'auto', 'window' or 'reduce_window'.")
  return nn.max_pool(x, window, strides)
