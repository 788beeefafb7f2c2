"""A model's compute dtype (``config.model.dtype``): bfloat16 layers, float32 params.

The bfloat16 forward pass is inspected in its jaxpr (the convolutions and dot products
really take bfloat16 operands), its params, gradients and BatchNorm statistics are
float32, and its logits are float32 and near, but not equal to, the float32 model's.
"""

import jax
import jax.extend as jex
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.configs import fashion_mnist
from ieu_jax import models
from ieu_jax import pipeline
from ieu_jax import sections
from ieu_jax import training

_HEAVY = ("conv_general_dilated", "dot_general")


def _eqns(jaxpr):
  """Every equation of ``jaxpr``, those of its sub-jaxprs (pjit, custom_vjp, ...) too."""
  for eqn in jaxpr.eqns:
    yield eqn
    for param in eqn.params.values():
      for sub in param if isinstance(param, (list, tuple)) else (param,):
        if isinstance(sub, jex.core.ClosedJaxpr):
          yield from _eqns(sub.jaxpr)
        elif isinstance(sub, jex.core.Jaxpr):
          yield from _eqns(sub)


def _heavy_operand_dtypes(fn, *args):
  """``{primitive: set of its operands' dtypes}`` for the convolutions and dot products."""
  found = {}
  for eqn in _eqns(jax.make_jaxpr(fn)(*args).jaxpr):
    if eqn.primitive.name in _HEAVY:
      found.setdefault(eqn.primitive.name, set()).update(
          str(v.aval.dtype) for v in eqn.invars)
  return found


def _resnet(dtype, norm="batch"):
  return models.build_model("resnet18", 10, (8, 8, 3), width=4, norm=norm, dtype=dtype)


def _images(n=6, shape=(8, 8, 3), seed=0):
  return jnp.asarray(np.random.default_rng(seed).normal(size=(n, *shape)), jnp.float32)


@pytest.mark.parametrize("name,kwargs,shape", [
    ("resnet18", dict(width=4, norm="batch"), (8, 8, 3)),
    ("cnn", dict(features=(4, 8), hidden=8, norm="batch"), (8, 8, 3)),
    ("mlp", dict(hidden=(8,)), (4, 4, 1)),
])
def test_bfloat16_forward_computes_convolutions_and_dots_in_bfloat16(name, kwargs, shape):
  x = _images(shape=shape)
  found = {}
  for dtype in ("float32", "bfloat16"):
    init_fn, apply_fn = models.build_model(name, 10, shape, dtype=dtype, **kwargs)
    v = init_fn(jax.random.key(0))
    found[dtype] = _heavy_operand_dtypes(apply_fn, v, x)
  assert found["float32"] and all(d == {"float32"} for d in found["float32"].values())
  assert set(found["bfloat16"]) == set(found["float32"])  # the same layers ...
  assert all(d == {"bfloat16"} for d in found["bfloat16"].values())  # ... in bfloat16
  if name != "mlp":
    assert "conv_general_dilated" in found["bfloat16"]


def test_bfloat16_params_state_gradients_and_logits_are_float32():
  init_fn, apply_fn = _resnet("bfloat16")
  v = init_fn(jax.random.key(0))
  assert {str(a.dtype) for a in jax.tree.leaves(v)} == {"float32"}  # params, batch_stats
  x, y = _images(), jnp.arange(6) % 10
  logits = apply_fn(v, x)
  assert logits.dtype == jnp.float32
  train_logits, state = apply_fn(v, x, train=True)
  assert train_logits.dtype == jnp.float32
  assert {str(a.dtype) for a in jax.tree.leaves(state)} == {"float32"}

  def loss(params):
    out, _ = apply_fn(v._replace(params=params), x, train=True)
    return optax.softmax_cross_entropy_with_integer_labels(out, y).mean()

  value, grads = jax.value_and_grad(loss)(v.params)
  assert value.dtype == jnp.float32
  assert {str(a.dtype) for a in jax.tree.leaves(grads)} == {"float32"}


def test_bfloat16_batchnorm_normalises_in_float32_between_bfloat16_convolutions():
  module = models.ResNet18(num_classes=10, width=4, norm="batch", dtype="bfloat16")
  x = _images()
  variables = module.init(jax.random.key(0), x)
  _, inter = module.apply(variables, x, capture_intermediates=True)
  stem = inter["intermediates"]
  assert stem["Conv_0"]["__call__"][0].dtype == jnp.bfloat16
  assert stem["BatchNorm_0"]["__call__"][0].dtype == jnp.float32
  block = stem["_BasicBlock_0"]
  assert block["BatchNorm_0"]["__call__"][0].dtype == jnp.float32


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_bfloat16_logits_are_near_float32_logits_but_not_equal(norm):
  x = _images(n=16)
  (init32, apply32), (_, apply16) = _resnet("float32", norm), _resnet("bfloat16", norm)
  v = init32(jax.random.key(1))  # the same params serve both: float32 either way
  for train in (False, True):
    out32, out16 = (np.asarray(f(v, x, train=train)[0] if train else f(v, x), np.float64)
                    for f in (apply32, apply16))
    scale = np.abs(out32).max()
    assert scale > 0
    # bfloat16 keeps 8 significant bits (relative rounding 2**-8 = 0.4%); a few layers
    # of accumulated rounding stay within a few percent of the logits' scale ...
    np.testing.assert_allclose(out16, out32, atol=0.05 * scale)
    # ... and are there: the bfloat16 model is not the float32 one.
    assert np.abs(out16 - out32).max() > 1e-4 * scale


def test_bfloat16_train_steps_lower_the_loss_and_keep_float32_params():
  init_fn, apply_fn = _resnet("bfloat16")
  x = _images(n=16, seed=3)
  y = jnp.arange(16) % 4
  tx = optax.sgd(0.05, momentum=0.9)
  step = jax.jit(training.descent_on(training.classifier_objective(apply_fn), tx))
  v = init_fn(jax.random.key(2))
  opt_state = tx.init(v.params)
  losses = []
  for t in range(15):
    v, opt_state, loss = step(v, opt_state, (x, y), jax.random.key(t))
    losses.append(float(loss))
  assert np.all(np.isfinite(losses))
  assert losses[-1] < 0.5 * losses[0], losses
  assert {str(a.dtype) for a in jax.tree.leaves((v, opt_state))} <= {"float32", "int32"}


def test_config_dtype_is_checked_and_float32_enters_no_fingerprint():
  config = fashion_mnist.get_config("small")
  assert config.model.dtype is None
  key = lambda c: pipeline.fingerprint(c, "original", ("model",))
  without = config.copy_and_resolve_references()
  del without.model["dtype"]
  base = key(without)
  for dtype, same in ((None, True), ("float32", True), ("bfloat16", False)):
    c = config.copy_and_resolve_references()
    c.model.dtype = dtype
    sections.check_model(c.model)
    assert (key(c) == base) is same, dtype
  c.model.dtype = "float16"
  with pytest.raises(ValueError, match="dtype='float16'"):
    sections.check_model(c.model)
  with pytest.raises(ValueError, match="dtype='float16'"):
    models.build_model("mlp", 3, (2, 2, 1), dtype="float16")[0](jax.random.key(0))
