"""A first-layer convolution that is cheap on XLA:CPU: one input channel, as taps.

A grayscale image's first convolution (one input channel, ``SAME`` padding, stride
1) is ``kh * kw`` shifted copies of the image, each times one row of the kernel,
summed: an elementwise loop that XLA:CPU fuses into one pass. Its library
convolution, and the layout transposes its kernel gradient needs, cost more than
that in the small CNN's step (``docs/performance.md``). :func:`conv` writes it so:

* forward: ``sum_t shift_t(x) * kernel[t]`` over the taps ``t``;
* kernel gradient: the stacked shifts ``(taps, N*H*W)`` times the output gradient
  ``(N*H*W, F)``, one matrix product;
* input gradient: the library convolution with the flipped kernel, as JAX's own.

Values and gradients equal ``lax.conv_general_dilated``'s up to float32 rounding (the
order of the sums). :func:`conv` uses the taps on CPU for one input channel and an
odd kernel, the library convolution otherwise; :class:`Conv` is ``flax.linen.Conv``
for that case, with the same parameters and initialisation.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["Conv", "conv", "taps_conv"]

_NHWC = ("NHWC", "HWIO", "NHWC")


def _library_conv(x, kernel):
  return lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=_NHWC)


def _shifts(image: jax.Array, kh: int, kw: int) -> list[jax.Array]:
  """The ``kh * kw`` shifted copies of ``image (N, H, W)`` that a SAME window sees."""
  _, h, w = image.shape
  padded = jnp.pad(image, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2)))
  return [padded[:, i:i + h, j:j + w] for i in range(kh) for j in range(kw)]


@jax.custom_vjp
def taps_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """``SAME``, stride-1 convolution of ``x (N, H, W, 1)`` with ``kernel (kh, kw, 1, F)``."""
  kh, kw, _, features = kernel.shape
  taps = kernel.reshape(kh * kw, features)
  out = None
  for t, shifted in enumerate(_shifts(x[..., 0], kh, kw)):
    term = shifted[..., None] * taps[t]
    out = term if out is None else out + term
  return out


def _taps_fwd(x, kernel):
  return taps_conv(x, kernel), (x, kernel)


def _taps_bwd(res, g):
  x, kernel = res
  kh, kw, _, features = kernel.shape
  dx = _library_conv(g, jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2))
  shifted = jnp.stack(_shifts(x[..., 0], kh, kw)).reshape(kh * kw, -1)
  dkernel = (shifted @ g.reshape(-1, features)).reshape(kernel.shape)
  return dx, dkernel


taps_conv.defvjp(_taps_fwd, _taps_bwd)


def conv(
    x: jax.Array,
    kernel: jax.Array,
    *,
    impl: Literal["auto", "taps", "library"] = "auto",
) -> jax.Array:
  """``SAME``, stride-1 convolution of ``x (N, H, W, C)`` with ``kernel (kh, kw, C, F)``.

  Args:
    x: NHWC inputs.
    kernel: HWIO kernel.
    impl: ``"taps"`` (needs one input channel and an odd kernel), ``"library"``
      (``lax.conv_general_dilated``), or ``"auto"``: the taps on CPU where they
      apply, the library convolution otherwise.
  """
  kh, kw, cin, _ = kernel.shape
  applies = x.ndim == 4 and cin == 1 and kh % 2 == 1 and kw % 2 == 1
  if impl == "auto":
    impl = "taps" if applies and jax.default_backend() == "cpu" else "library"
  if impl == "taps":
    if not applies:
      raise ValueError(f"impl='taps' needs NHWC inputs with one channel and an odd kernel;"
                       f" got inputs {x.shape}, kernel {kernel.shape}.")
    return taps_conv(x, kernel)
  if impl != "library":
    raise ValueError(f"impl={impl!r}: expected 'auto', 'taps' or 'library'.")
  return _library_conv(x, kernel)


class Conv(nn.Module):
  """``flax.linen.Conv(features, kernel_size)`` (SAME, stride 1, with bias) via :func:`conv`.

  Same parameter names, shapes and initialisers, so the same key gives the same
  parameters as ``nn.Conv``. ``dtype`` is the compute dtype, as ``nn.Conv``'s: the
  inputs, kernel and bias are cast to it (the params stay float32); None computes
  in the inputs' and params' dtype, as before the field existed.
  """

  features: int
  kernel_size: Sequence[int] = (3, 3)
  use_bias: bool = True  # False before a normalisation, as nn.Conv(use_bias=False)
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    shape = (*self.kernel_size, x.shape[-1], self.features)
    kernel = self.param("kernel", nn.initializers.lecun_normal(), shape)
    if self.dtype is not None:
      x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    if not self.use_bias:
      return conv(x, kernel)
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
    if self.dtype is not None:
      bias = bias.astype(self.dtype)
    return conv(x, kernel) + bias
