"""Problems and models that several test files build the same way.

A plain module rather than fixtures, so that ``rcd_sharding_worker.py``, which runs
as a script in a subprocess, uses the same ones: pytest puts ``tests/`` on
``sys.path`` for the test files, and Python does for a script run from it.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np


# ----------------------------------------------------------------------------
# Relearning: a softmax regression.


def softmax_regression(seed=0, n=48, d=6, c=3):
  """A small softmax regression whose relearning hits at varied steps.

  Returns float64 ``(x, y, w0)``: ``n`` examples ``x (n, d)`` around ``c`` class
  centres, their labels ``y``, and starting weights ``w0 (d, c)`` for
  :func:`linear_apply`.
  """
  rng = np.random.default_rng(seed)
  centres = rng.normal(scale=1.5, size=(c, d))
  y = rng.integers(0, c, n)
  x = centres[y] + rng.normal(size=(n, d))
  w0 = rng.normal(scale=0.5, size=(d, c))
  return x, y, w0


def as_relearn_inputs(x, y, w0):
  """:func:`softmax_regression`'s arrays as ``ieu_jax.relearn`` takes them: float32
  ``(w0, (x, y))``."""
  return jnp.asarray(w0, jnp.float32), (jnp.asarray(x, jnp.float32), jnp.asarray(y))


def linear_apply(w, x):
  return x @ w


# ----------------------------------------------------------------------------
# The main job's small CNN (Fashion-MNIST's model config).


def small_cnn():
  """``(init_fn, apply_fn)`` of the small CNN: 28x28x1 inputs, 10 classes."""
  # Imported here: the sharding worker imports ieu_jax only once its set-up is done.
  from ieu_jax import models  # pylint: disable=g-import-not-at-top

  return models.build_model("cnn", 10, (28, 28, 1), features=(16, 32), hidden=128)


class FlaxLayersCNN(nn.Module):
  """The small CNN written with flax's layers: the same parameter tree.

  ``conv`` is the convolution layer, flax's ``nn.Conv`` or the library's ``Conv``;
  pooling is flax's ``nn.max_pool``.
  """

  conv: Any = nn.Conv
  features: tuple = (16, 32)

  @nn.compact
  def __call__(self, x):
    for f in self.features:
      x = nn.max_pool(nn.relu(self.conv(f, (3, 3))(x)), (2, 2), (2, 2))
    x = nn.relu(nn.Dense(128)(x.reshape(x.shape[0], -1)))
    return nn.Dense(10)(x)
