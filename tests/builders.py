"""Problems that several test files build the same way.

A plain module rather than fixtures, so that ``rcd_sharding_worker.py``, which runs
as a script in a subprocess, uses the same ones: pytest puts ``tests/`` on
``sys.path`` for the test files, and Python does for a script run from it.
"""

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
