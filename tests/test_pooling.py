"""The CPU max-pool: flax's values and gradients, bit for bit, ties included."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import builders
from ieu_jax._conv import Conv
from ieu_jax._pooling import max_pool


def _images_with_ties(key, shape):
  """Random values where a third of the entries share one value (flat regions)."""
  k1, k2 = jax.random.split(key)
  x = jax.random.normal(k1, shape)
  return jnp.where(jax.random.uniform(k2, shape) < 0.35, 0.5, x)


@pytest.mark.parametrize("shape,window", [
    ((4, 8, 8, 3), (2, 2)),
    ((2, 3, 12, 6, 5), (3, 2)),  # two leading axes, a rectangular window
    ((3, 9, 9, 2), (3, 3)),
])
def test_window_pool_equals_flax_values_and_gradients(shape, window):
  x = _images_with_ties(jax.random.key(0), shape)
  ref = lambda v: nn.max_pool(v, window, window)
  ours = lambda v: max_pool(v, window, impl="window")
  np.testing.assert_array_equal(ours(x), ref(x))
  # A cotangent with distinct entries, so that routing to the wrong tie shows.
  ct = jax.random.normal(jax.random.key(1), ref(x).shape)
  g_ref = jax.vjp(ref, x)[1](ct)[0]
  g_ours = jax.jit(lambda v: jax.vjp(ours, v)[1](ct)[0])(x)
  np.testing.assert_array_equal(g_ours, g_ref)
  # Ties were exercised: the even split of jnp.max's own gradient differs here.
  naive = jax.vjp(lambda v: jnp.max(v.reshape(*v.shape[:-3], v.shape[-3] // window[0],
                                                window[0], v.shape[-2] // window[1],
                                                window[1], v.shape[-1]), axis=(-4, -2)),
                  x)[1](ct)[0]
  assert not np.array_equal(naive, g_ref)


def test_window_pool_refuses_windows_that_do_not_tile():
  with pytest.raises(ValueError, match=r"window=\(2, 2\).*\(1, 7, 8, 1\)"):
    max_pool(jnp.zeros((1, 7, 8, 1)), (2, 2), impl="window")
  with pytest.raises(ValueError, match="strides"):
    max_pool(jnp.zeros((1, 8, 8, 1)), (2, 2), (1, 1), impl="window")
  # 'auto' falls back to flax's form where the reshape does not apply.
  x = jnp.arange(49.0).reshape(1, 7, 7, 1)
  np.testing.assert_array_equal(max_pool(x, (2, 2)), nn.max_pool(x, (2, 2), (2, 2)))


def test_small_cnn_equals_the_flax_pool_model_and_takes_the_fast_path():
  init_fn, apply_fn = builders.small_cnn()
  params = init_fn(jax.random.key(0))
  # Positive biases: on a black background a convolution then outputs its bias over
  # whole windows, ties that survive the ReLU (zero biases would hide them).
  for layer, k in (("Conv_0", 3), ("Conv_1", 4)):
    b = params[layer]["bias"]
    params[layer]["bias"] = 0.1 + jax.random.uniform(jax.random.key(k), b.shape)
  # The same layers with flax's max_pool.
  ref = lambda p, x: builders.FlaxLayersCNN(conv=Conv).apply({"params": p}, x)
  # Images with black backgrounds, like Fashion-MNIST: whole windows tie.
  x = jnp.maximum(_images_with_ties(jax.random.key(2), (16, 28, 28, 1)) - 0.5, 0.0)
  y = jnp.arange(16) % 10
  loss = lambda fn: lambda p: jnp.mean(
      jax.nn.log_softmax(fn(p, x))[jnp.arange(16), y] * (1 + jnp.arange(16)))
  np.testing.assert_array_equal(jax.jit(apply_fn)(params, x), jax.jit(ref)(params, x))
  g_ours, g_ref = jax.jit(jax.grad(loss(apply_fn)))(params), jax.jit(jax.grad(loss(ref)))(params)
  jax.tree.map(np.testing.assert_array_equal, g_ours, g_ref)
  if jax.default_backend() == "cpu":
    jaxpr = str(jax.make_jaxpr(jax.grad(loss(apply_fn)))(params))
    assert "reduce_window" not in jaxpr and "select_and_scatter" not in jaxpr
