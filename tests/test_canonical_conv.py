"""canonicalize_convs: the same values and gradients, through canonical convolutions.

Each case is checked three ways: the rewritten function against a float64
recomputation of the original (values and gradients with respect to every
argument), the rewritten function against the original in float32, and the
convolutions XLA is handed (the lowered StableHLO of the gradient), which must
all be ``NHWC x HWIO -> NHWC`` after the rewrite, and must be untouched for the
convolutions the rewrite documents that it leaves alone.
"""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from ieu_jax import models
from ieu_jax._canonical_conv import canonicalize_convs

NHWC = ("NHWC", "HWIO", "NHWC")
CANONICAL = "[b, 0, 1, f]x[0, 1, i, o]->[b, 0, 1, f]"  # StableHLO's dim_numbers


def _lax_conv(strides=(1, 1), padding="SAME", dn=NHWC, **kwargs):
  return lambda x, w: lax.conv_general_dilated(x, w, strides, padding,
                                               dimension_numbers=dn, **kwargs)


def _normal(seed, shape):
  return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


def _value_and_vjp(fn, args, ct):
  """``fn(*args)`` and its gradients along the cotangent ``ct``, in one jitted call."""

  def run(args, ct):
    out, pull = jax.vjp(fn, *args)
    return out, pull(ct)

  return jax.jit(run)(args, ct)


def _float64_reference(fn, args, ct):
  """Values and cotangent gradients of ``fn`` recomputed in float64."""
  with jax.enable_x64(True):
    args64 = jax.tree.map(lambda a: np.asarray(a, np.float64), args)
    out, grads = _value_and_vjp(fn, args64, np.asarray(ct, np.float64))
    assert jax.tree.leaves(out)[0].dtype == np.float64
    return jax.tree.map(np.asarray, (out, grads))


def _assert_float32_close(got, want):
  """``got`` equals ``want`` up to float32 rounding (relative to each array's scale)."""

  def check(g, w):
    assert g.shape == w.shape
    scale = max(1.0, float(np.abs(w).max()))
    np.testing.assert_allclose(np.asarray(g, np.float64), w, rtol=1e-5, atol=1e-5 * scale)

  jax.tree.map(check, got, want)


def _assert_same_as_original(fn, args):
  """Rewritten ``fn``: values and gradients equal the original's and float64's."""
  out = fn(*args)
  ct = jax.tree.map(lambda o: _normal(99, o.shape), out)
  want = _float64_reference(fn, args, ct)
  original = _value_and_vjp(fn, args, ct)
  rewritten = _value_and_vjp(canonicalize_convs(fn), args, ct)
  _assert_float32_close(original, want)  # the reference is sound ...
  _assert_float32_close(rewritten, want)  # ... and the rewrite agrees with it
  _assert_float32_close(rewritten, jax.tree.map(lambda a: np.asarray(a, np.float64), original))


def _convolutions(fn, args):
  """The convolutions XLA gets for ``fn``'s value and gradients, operands stripped."""
  loss = lambda *a: sum(jnp.sum(jnp.sin(o)) for o in jax.tree.leaves(fn(*a)))
  grad = jax.grad(loss, argnums=tuple(range(len(args))))
  text = jax.jit(grad).lower(*args).as_text()
  return sorted(re.findall(r"stablehlo\.convolution\([^)]*\) (.*)", text))


def _dim_numbers(convs):
  return [re.search(r"dim_numbers = (.*?), window", c).group(1) for c in convs]


def _custom_vjps(fn, args):
  return str(jax.make_jaxpr(fn)(*args)).count("custom_vjp_call[")


# Plain convolutions (stride 1, no dilation, no groups, two spatial dimensions):
# (input shape, kernel shape, padding, dimension numbers).
PLAIN = {
    "same_3x3": ((2, 7, 6, 3), (3, 3, 3, 5), "SAME", NHWC),
    "valid_5x3": ((3, 8, 7, 2), (5, 3, 2, 4), "VALID", NHWC),
    "even_kernel_asymmetric_padding": ((2, 6, 5, 3), (2, 3, 3, 4), ((1, 2), (0, 1)), NHWC),
    # Its input gradient pads by (kernel - 1 - padding) <= 0 on both sides. (Not a
    # negative low and a positive high padding there, e.g. ((3, 3), (3, 1)): XLA:CPU's
    # float32 convolution computes some of those wrong, rewritten or not.)
    "padding_wider_than_kernel": ((2, 6, 5, 3), (3, 3, 3, 4), ((3, 2), (2, 3)), NHWC),
    "negative_padding": ((2, 6, 5, 3), (3, 3, 3, 4), ((-1, 2), (0, 0)), NHWC),
    "one_input_channel": ((4, 9, 7, 1), (3, 3, 1, 6), "SAME", NHWC),
    "nchw_oihw": ((2, 3, 7, 6), (5, 3, 3, 3), "SAME", ("NCHW", "OIHW", "NCHW")),
    "nhwc_oihw_to_nchw": ((2, 7, 6, 3), (5, 3, 3, 3), "SAME", ("NHWC", "OIHW", "NCHW")),
}


@pytest.mark.parametrize("case", sorted(PLAIN))
def test_plain_lax_conv_values_and_gradients(case):
  x_shape, w_shape, padding, dn = PLAIN[case]
  fn = _lax_conv(padding=padding, dn=dn)
  _assert_same_as_original(fn, (_normal(0, x_shape), _normal(1, w_shape)))


@pytest.mark.parametrize("case", sorted(PLAIN))
def test_plain_lax_conv_is_rewritten_to_canonical_layout(case):
  x_shape, w_shape, padding, dn = PLAIN[case]
  fn = _lax_conv(padding=padding, dn=dn)
  args = (_normal(0, x_shape), _normal(1, w_shape))
  assert _custom_vjps(fn, args) == 0
  assert _custom_vjps(canonicalize_convs(fn), args) == 1
  # Without the rewrite the kernel gradient is not canonical (the test can tell) ...
  assert set(_dim_numbers(_convolutions(fn, args))) != {CANONICAL}
  # ... with it, the forward pass and both gradients are.
  assert _dim_numbers(_convolutions(canonicalize_convs(fn), args)) == [CANONICAL] * 3


class _TwoConvs(nn.Module):

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(4, (3, 3))(x))
    x = nn.relu(nn.Conv(5, (3, 2), padding="VALID")(x))
    return nn.Dense(3)(x.reshape(x.shape[0], -1))


def _flax_problem():
  model = _TwoConvs()
  x = _normal(2, (4, 7, 6, 2))
  return model.apply, (model.init(jax.random.key(3), x), x)


def test_flax_conv_model_values_and_gradients():
  apply_fn, args = _flax_problem()
  _assert_same_as_original(apply_fn, args)


def test_flax_conv_model_is_rewritten_to_canonical_layout():
  apply_fn, args = _flax_problem()
  assert _custom_vjps(canonicalize_convs(apply_fn), args) == 2
  assert set(_dim_numbers(_convolutions(apply_fn, args))) != {CANONICAL}
  assert _dim_numbers(_convolutions(canonicalize_convs(apply_fn), args)) == [CANONICAL] * 6


def test_library_small_cnn_values_gradients_and_layout():
  # The first layer (one channel) is the CPU taps, no convolution; the second is.
  init_fn, apply_fn = models.build_model("cnn", 10, (12, 12, 1), features=(4, 8), hidden=16)
  args = (init_fn(jax.random.key(4)), _normal(5, (3, 12, 12, 1)))
  _assert_same_as_original(apply_fn, args)
  added = _custom_vjps(canonicalize_convs(apply_fn), args) - _custom_vjps(apply_fn, args)
  assert added == 1
  # The taps' own input gradient is a canonical library convolution already.
  assert _dim_numbers(_convolutions(canonicalize_convs(apply_fn), args)) == [CANONICAL] * 4


def test_conv_in_a_nested_jit_with_a_closed_over_kernel():
  kernel = _normal(6, (3, 3, 2, 3))
  inner = jax.jit(lambda x: _lax_conv()(x, kernel.astype(x.dtype)))
  fn = lambda x: jnp.tanh(inner(x))
  args = (_normal(7, (2, 6, 6, 2)),)
  _assert_same_as_original(fn, args)
  assert _custom_vjps(canonicalize_convs(fn), args) == 1
  # Only the input gradient: the kernel is a constant.
  assert _dim_numbers(_convolutions(canonicalize_convs(fn), args)) == [CANONICAL] * 2


def test_per_example_gradients_under_vmap():
  apply_fn, (params, x) = _flax_problem()

  def per_example(fn):
    loss = lambda p, xi: jnp.sum(jnp.tanh(fn(p, xi[None])))
    return jax.vmap(jax.grad(loss), in_axes=(None, 0))(params, x)

  want = per_example(apply_fn)
  got = per_example(canonicalize_convs(apply_fn))
  _assert_float32_close(got, jax.tree.map(lambda a: np.asarray(a, np.float64), want))
  # The per-example gradients differ from each other (vmap kept the batch apart).
  kernel = np.asarray(got["params"]["Conv_0"]["kernel"])
  assert np.abs(kernel[0] - kernel[1]).max() > 1e-3


def test_sgd_steps_in_a_scan_use_canonical_convolutions_only():
  apply_fn, (params, x) = _flax_problem()

  def train(fn):
    loss = lambda p: jnp.mean(jnp.tanh(fn(p, x)) ** 2)

    def step(p, _):
      return jax.tree.map(lambda a, g: a - 0.5 * g, p, jax.grad(loss)(p)), loss(p)

    return jax.jit(lambda p: lax.scan(step, p, None, length=4))

  want_params, want_losses = train(apply_fn)(params)
  got_params, got_losses = train(canonicalize_convs(apply_fn))(params)
  as64 = lambda t: jax.tree.map(lambda a: np.asarray(a, np.float64), t)
  _assert_float32_close((got_params, got_losses), as64((want_params, want_losses)))
  assert float(got_losses[-1]) < float(got_losses[0])  # the steps did train
  text = train(canonicalize_convs(apply_fn)).lower(params).as_text()
  assert "stablehlo.while" in text
  convs = re.findall(r"stablehlo\.convolution\([^)]*\) (.*)", text)
  assert len(convs) >= 6 and set(_dim_numbers(convs)) == {CANONICAL}


# What the rewrite leaves alone: (convolution, input shape, kernel shape).
LEFT_ALONE = {
    "strided": (_lax_conv(strides=(2, 2)), (2, 7, 6, 3), (3, 3, 3, 4)),
    "kernel_dilation": (_lax_conv(rhs_dilation=(2, 2)), (2, 8, 7, 3), (3, 3, 3, 4)),
    "input_dilation": (_lax_conv(padding=((1, 1), (1, 1)), lhs_dilation=(2, 1)),
                       (2, 5, 6, 3), (3, 3, 3, 4)),
    "feature_groups": (_lax_conv(feature_group_count=2), (2, 6, 6, 4), (3, 3, 2, 6)),
    "batch_groups": (_lax_conv(padding="VALID", batch_group_count=2), (4, 6, 6, 3),
                     (3, 3, 3, 4)),
    "one_spatial_dim": (_lax_conv(strides=(1,), dn=("NWC", "WIO", "NWC")), (2, 9, 3),
                        (3, 3, 4)),
    "three_spatial_dims": (_lax_conv(strides=(1, 1, 1), dn=("NDHWC", "DHWIO", "NDHWC")),
                           (2, 5, 4, 4, 2), (3, 3, 3, 2, 3)),
    "preferred_element_type": (
        lambda x, w: _lax_conv(preferred_element_type=x.dtype)(x, w),
        (2, 6, 5, 3), (3, 3, 3, 4)),
}


@pytest.mark.parametrize("case", sorted(LEFT_ALONE))
def test_other_convolutions_are_left_alone_and_still_correct(case):
  fn, x_shape, w_shape = LEFT_ALONE[case]
  args = (_normal(0, x_shape), _normal(1, w_shape))
  _assert_same_as_original(fn, args)
  assert _custom_vjps(canonicalize_convs(fn), args) == 0
  # XLA gets exactly the convolutions it gets without the rewrite.
  assert _convolutions(canonicalize_convs(fn), args) == _convolutions(fn, args)


def test_a_plain_and_a_strided_conv_together():
  plain, strided = _lax_conv(), _lax_conv(strides=(2, 2), padding="VALID")
  fn = lambda x, w1, w2: strided(jnp.tanh(plain(x, w1)), w2)
  args = (_normal(0, (2, 9, 9, 2)), _normal(1, (3, 3, 2, 4)), _normal(2, (3, 3, 4, 3)))
  _assert_same_as_original(fn, args)
  assert _custom_vjps(canonicalize_convs(fn), args) == 1
  original, rewritten = _convolutions(fn, args), _convolutions(canonicalize_convs(fn), args)
  # The strided convolution's value and gradients (stride 2, or a dilation of 2 in
  # its gradients) are kept as they were; the plain one's are canonical.
  is_strided = lambda c: re.search(r"(stride|lhs_dilate|rhs_dilate) = \[2, 2\]", c)
  strided_ops = [c for c in original if is_strided(c)]
  assert len(strided_ops) == 3 and [c for c in rewritten if is_strided(c)] == strided_ops
  assert _dim_numbers(c for c in rewritten if not is_strided(c)) == [CANONICAL] * 3
