"""The CPU first-layer convolution: lax's values and gradients, flax's parameters."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import builders
from ieu_jax._conv import Conv, conv


def _lax(x, k):
  return lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.parametrize("kernel_shape", [(3, 3, 1, 5), (5, 3, 1, 4), (1, 1, 1, 3)])
def test_taps_equal_the_library_convolution_and_its_gradients(kernel_shape):
  x = jax.random.normal(jax.random.key(0), (4, 9, 7, 1))
  k = jax.random.normal(jax.random.key(1), kernel_shape)
  out = conv(x, k, impl="taps")
  want = _lax(x, k)
  np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
  ct = jax.random.normal(jax.random.key(2), want.shape)
  taps_vjp = lambda a, b: jax.vjp(lambda *v: conv(*v, impl="taps"), a, b)[1](ct)
  got_dx, got_dk = jax.jit(taps_vjp)(x, k)
  want_dx, want_dk = jax.vjp(_lax, x, k)[1](ct)
  np.testing.assert_allclose(got_dx, want_dx, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got_dk, want_dk, rtol=1e-5, atol=1e-4)
  # The check can tell: a one-pixel shift of the image is far from it.
  shifted = conv(jnp.roll(x, 1, axis=1), k, impl="taps")
  assert np.abs(np.asarray(shifted - want)).max() > 1e-2


def test_taps_refuse_what_they_do_not_compute():
  with pytest.raises(ValueError, match=r"one channel.*\(2, 5, 5, 3\)"):
    conv(jnp.zeros((2, 5, 5, 3)), jnp.zeros((3, 3, 3, 4)), impl="taps")
  with pytest.raises(ValueError, match="odd kernel"):
    conv(jnp.zeros((2, 5, 5, 1)), jnp.zeros((2, 2, 1, 4)), impl="taps")
  with pytest.raises(ValueError, match="impl='fft'"):
    conv(jnp.zeros((2, 5, 5, 1)), jnp.zeros((3, 3, 1, 4)), impl="fft")


def test_conv_module_is_flax_conv_with_the_same_parameters():
  x = jax.random.normal(jax.random.key(3), (2, 8, 8, 6))
  ours, theirs = Conv(7, (3, 3)), nn.Conv(7, (3, 3))
  p_ours, p_theirs = ours.init(jax.random.key(4), x), theirs.init(jax.random.key(4), x)
  jax.tree.map(np.testing.assert_array_equal, p_ours, p_theirs)
  # Several input channels: the library convolution, exactly flax's.
  np.testing.assert_array_equal(ours.apply(p_ours, x), theirs.apply(p_theirs, x))
  # One channel: the taps on CPU, flax's up to rounding.
  x1 = x[..., :1]
  p1 = ours.init(jax.random.key(5), x1)
  np.testing.assert_allclose(ours.apply(p1, x1), theirs.apply(p1, x1), rtol=1e-5, atol=1e-6)


def test_small_cnn_initialises_as_with_flax_layers():
  init_fn, _ = builders.small_cnn()
  flax_cnn = builders.FlaxLayersCNN(conv=nn.Conv)
  want = flax_cnn.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))["params"]
  jax.tree.map(np.testing.assert_array_equal, init_fn(jax.random.key(0)), want)
