"""A small class-conditional UNet (Flax linen) that predicts the noise of a DDPM.

``UNet(num_classes)(x_t, t, labels)`` maps images ``(B, H, W, C)``, integer
timesteps ``(B,)`` and labels ``(B,)`` in ``[0, num_classes]`` to a noise
estimate of the shape of ``x_t``. The label ``num_classes`` is the "no class"
token of classifier-free guidance. The timestep enters through a sinusoidal
embedding and an MLP, the label through a learned embedding added to it; both
condition every residual block through a per-channel shift.

There is no attention (it is a CPU model); ``H`` and ``W`` must be divisible by
``2 ** (len(channels) - 1)``. The diffusion code never sees this module, only
``eps_fn`` (:func:`make_eps_fn`), so any network with that signature replaces it.
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["UNet", "timestep_embedding", "make_eps_fn", "build_unet"]


def timestep_embedding(t: jax.Array, dim: int, max_period: float = 10_000.0) -> jax.Array:
  """Sinusoidal embedding ``(B, dim)`` of integer timesteps ``(B,)`` (cos half, sin half)."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  args = t.astype(jnp.float32)[:, None] * freqs[None]
  emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
  if dim % 2:
    emb = jnp.pad(emb, ((0, 0), (0, 1)))
  return emb


def _norm(channels: int) -> nn.GroupNorm:
  return nn.GroupNorm(num_groups=math.gcd(8, channels))


class _ResBlock(nn.Module):
  features: int

  @nn.compact
  def __call__(self, x, emb):
    h = nn.Conv(self.features, (3, 3))(nn.swish(_norm(x.shape[-1])(x)))
    h = h + nn.Dense(self.features)(nn.swish(emb))[:, None, None, :]
    h = nn.Conv(self.features, (3, 3))(nn.swish(_norm(self.features)(h)))
    if x.shape[-1] != self.features:
      x = nn.Conv(self.features, (1, 1))(x)
    return x + h


class UNet(nn.Module):
  """A small conditional UNet.

  Attributes:
    num_classes: real classes; the embedding has one more row, the null label.
    channels: feature channels per resolution level (the first at full size).
    num_res_blocks: residual blocks per level on each side.
    emb_dim: width of the timestep / label embedding.
  """

  num_classes: int
  channels: Sequence[int] = (32, 64)
  num_res_blocks: int = 1
  emb_dim: int = 128

  @nn.compact
  def __call__(self, x, t, labels):
    factor = 2 ** (len(self.channels) - 1)
    if x.shape[-3] % factor or x.shape[-2] % factor:
      raise ValueError(f"image size {x.shape[-3:-1]} is not divisible by {factor}.")
    emb = timestep_embedding(t, self.emb_dim)
    emb = nn.Dense(self.emb_dim)(nn.swish(nn.Dense(self.emb_dim)(emb)))
    emb = emb + nn.Embed(self.num_classes + 1, self.emb_dim)(labels)

    h = nn.Conv(self.channels[0], (3, 3))(x)
    skips = []
    for level, ch in enumerate(self.channels):
      for _ in range(self.num_res_blocks):
        h = _ResBlock(ch)(h, emb)
      skips.append(h)
      if level + 1 < len(self.channels):
        h = nn.Conv(ch, (3, 3), strides=(2, 2))(h)
    h = _ResBlock(self.channels[-1])(h, emb)
    for level in reversed(range(len(self.channels))):
      ch = self.channels[level]
      h = jnp.concatenate([h, skips[level]], axis=-1)
      for _ in range(self.num_res_blocks):
        h = _ResBlock(ch)(h, emb)
      if level > 0:
        b, hh, ww, c = h.shape
        h = jax.image.resize(h, (b, 2 * hh, 2 * ww, c), "nearest")
        h = nn.Conv(self.channels[level - 1], (3, 3))(h)
    h = nn.swish(_norm(h.shape[-1])(h))
    return nn.Conv(x.shape[-1], (3, 3), kernel_init=nn.initializers.zeros)(h)


def make_eps_fn(module: nn.Module):
  """``eps_fn(params, x_t, t, labels)`` of a linen module called as ``module(x_t, t, labels)``."""

  def eps_fn(params, x_t, t, labels):
    return module.apply({"params": params}, x_t, t, labels)

  return eps_fn


def build_unet(num_classes: int, image_shape: Sequence[int], **kwargs):
  """``(init_fn, eps_fn)`` of a :class:`UNet`; ``init_fn(key) -> params``."""
  module = UNet(num_classes=num_classes, **kwargs)

  def init_fn(key):
    x = jnp.zeros((1, *image_shape), jnp.float32)
    zeros = jnp.zeros((1,), jnp.int32)
    return module.init(key, x, zeros, zeros)["params"]

  return init_fn, make_eps_fn(module)
