"""On-device data augmentation for the training recipe (``config.train.augment``).

``'crop_flip'`` is the CIFAR recipe: each image is zero-padded by ``padding`` pixels on
every side, a window of its own size is cut out at a random offset, and it is mirrored
left-right with probability 1/2. Everything is a pure function of a PRNG key, jittable,
and runs inside the training step: the data never leave the device.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["AUGMENTATIONS", "augment", "crop_flip", "crop_flip_draws", "apply_crop_flip"]

AUGMENTATIONS = ("none", "crop_flip")


def crop_flip_draws(key: jax.Array, num: int, padding: int = 4):
  """``(dy, dx, flip)`` for ``num`` images: offsets in ``[0, 2 * padding]``, flips as bools."""
  k_y, k_x, k_f = jax.random.split(key, 3)
  dy = jax.random.randint(k_y, (num,), 0, 2 * padding + 1)
  dx = jax.random.randint(k_x, (num,), 0, 2 * padding + 1)
  flip = jax.random.bernoulli(k_f, 0.5, (num,))
  return dy, dx, flip


def apply_crop_flip(x: jax.Array, dy: jax.Array, dx: jax.Array, flip: jax.Array,
                    padding: int = 4) -> jax.Array:
  """Crops each padded image of ``x`` (NHWC) at ``(dy, dx)``, then mirrors where ``flip``."""
  h, w, c = x.shape[1:]
  padded = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))

  def one(image, y0, x0, f):
    crop = jax.lax.dynamic_slice(image, (y0, x0, 0), (h, w, c))
    return jnp.where(f, crop[:, ::-1], crop)

  return jax.vmap(one)(padded, dy, dx, flip)


def crop_flip(key: jax.Array, x: jax.Array, padding: int = 4) -> jax.Array:
  """Random crop (zero padding ``padding``) and horizontal flip of a batch ``x`` (NHWC)."""
  return apply_crop_flip(x, *crop_flip_draws(key, x.shape[0], padding), padding=padding)


def augment(kind: str, key: jax.Array, x: jax.Array) -> jax.Array:
  """``x`` augmented by ``kind`` (one of :data:`AUGMENTATIONS`; ``'none'``: ``x`` itself)."""
  if kind == "none":
    return x
  if kind == "crop_flip":
    return crop_flip(key, x)
  raise ValueError(f"augment={kind!r} is unknown: choose one of {AUGMENTATIONS}.")
