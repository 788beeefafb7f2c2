"""Models (parameter counts against hand counts) and the epoch loop."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import builders
from ieu_jax import models
from ieu_jax import training


def _count(params):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))


def test_resnet18_cifar_form_has_the_reference_parameter_count():
  init_fn, apply_fn = models.build_model("resnet18", 10, (32, 32, 3))
  params = jax.eval_shape(init_fn, jax.random.key(0))
  # 11,173,962: torchvision-style ResNet-18 with a 3x3 stem and 10 classes (BatchNorm's
  # scale and bias per channel = GroupNorm's, so the count is the same).
  assert _count(params) == 11_173_962
  out = jax.eval_shape(apply_fn, params, jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32))
  assert out.shape == (2, 10)
  # No max-pool, stride-1 stem: the first stage keeps 32x32 (checked by the stem's kernel).
  assert params["Conv_0"]["kernel"].shape == (3, 3, 3, 64)


def test_small_cnn_parameter_count_by_hand():
  init_fn, apply_fn = builders.small_cnn()
  params = init_fn(jax.random.key(0))
  want = (3 * 3 * 1 * 16 + 16) + (3 * 3 * 16 * 32 + 32) + (7 * 7 * 32 * 128 + 128) + (128 * 10 + 10)
  assert _count(params) == want
  assert apply_fn(params, jnp.zeros((5, 28, 28, 1))).shape == (5, 10)


def test_unknown_model_is_named():
  with pytest.raises(ValueError, match="'vgg'"):
    models.build_model("vgg", 10, (28, 28, 1))


@pytest.mark.parametrize("n,batch", [(10, 4), (8, 4), (3, 8)])
def test_epoch_indices_cover_every_example(n, batch):
  idx = np.asarray(training.epoch_indices(jax.random.key(0), n, batch))
  assert idx.shape == (-(-n // min(batch, n)), min(batch, n))
  assert set(idx.ravel().tolist()) == set(range(n))
  flat = idx.ravel()
  pad = flat.size - n  # the last batch is filled from the start of the same permutation
  np.testing.assert_array_equal(flat[n:], flat[:pad])
  assert np.bincount(flat, minlength=n).max() <= 2
  other = np.asarray(training.epoch_indices(jax.random.key(1), n, batch))
  assert n < 4 or not np.array_equal(idx, other)


def _linear_problem():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(40, 1, 1, 5)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 3, 40))
  init_fn, apply_fn = models.build_model("mlp", 3, (1, 1, 5), hidden=())
  return init_fn(jax.random.key(0)), apply_fn, (x, y)


def test_fit_is_deterministic_and_keeps_the_callers_params():
  params, apply_fn, data = _linear_problem()
  tx = optax.sgd(0.1)
  step = training.make_indexed_step(training.descent(apply_fn, tx))
  a, _ = training.fit(params, tx.init(params), step, data, epochs=3, batch_size=8,
                      key=jax.random.key(5))
  b, _ = training.fit(params, tx.init(params), step, data, epochs=3, batch_size=8,
                      key=jax.random.key(5))
  jax.tree.map(np.testing.assert_array_equal, a, b)
  # The step donates its inputs, yet the caller's params are intact and unchanged.
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(params))
  assert not np.allclose(a["Dense_0"]["kernel"], params["Dense_0"]["kernel"])


def test_fit_compiles_its_step_once_for_restored_params_and_a_fresh_optimizer():
  # Restored weights are committed to a device, a fresh Adam count is not; the
  # step's outputs are all committed. Without a common placement the step is
  # compiled twice, once for each (seconds per method on a UNet).
  params, apply_fn, data = _linear_problem()
  params = jax.device_put(params, jax.devices()[0])
  tx = optax.adam(0.1)
  step = training.make_indexed_step(training.descent(apply_fn, tx))
  training.fit(params, tx.init(params), step, data, epochs=2, batch_size=8,
               key=jax.random.key(0))
  assert step._cache_size() == 1  # pylint: disable=protected-access


def test_fit_stops_with_a_named_error_when_a_nan_appears():
  params, apply_fn, (x, y) = _linear_problem()
  data = (x.at[3].set(jnp.nan), y)  # one poisoned example: the loss turns NaN
  tx = optax.sgd(0.1)
  step = training.make_indexed_step(training.descent(apply_fn, tx))
  with pytest.raises(training.NonFiniteError, match=r"GA-test: .* epoch 1/2"):
    training.fit(params, tx.init(params), step, data, epochs=2, batch_size=8,
                 key=jax.random.key(0), name="GA-test")
