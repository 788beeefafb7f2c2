"""The training recipe's on-device augmentation (``config.train.augment``) and its schedule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ieu_jax import _augment
from ieu_jax import training
from ieu_jax.methods import retrain


def _images(n=6, h=8, w=7, c=3):
  # Distinct positive values everywhere, so zero padding and every offset are visible.
  return jnp.asarray(1.0 + np.arange(n * h * w * c, dtype=np.float32).reshape(n, h, w, c))


def test_crop_is_a_slice_of_the_padded_image_at_the_drawn_offsets():
  x = _images()
  pad = 4
  dy, dx, _ = _augment.crop_flip_draws(jax.random.key(3), x.shape[0], pad)
  no_flip = jnp.zeros(x.shape[0], bool)
  out = np.asarray(_augment.apply_crop_flip(x, dy, dx, no_flip, pad))
  padded = np.pad(np.asarray(x), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  for i in range(x.shape[0]):
    y0, x0 = int(dy[i]), int(dx[i])
    np.testing.assert_array_equal(out[i], padded[i, y0:y0 + 8, x0:x0 + 7])
  # The draws cover the range [0, 2 * pad] and nothing outside it.
  dy, dx, flip = _augment.crop_flip_draws(jax.random.key(0), 4000, pad)
  assert set(np.asarray(dy).tolist()) == set(range(2 * pad + 1))
  assert set(np.asarray(dx).tolist()) == set(range(2 * pad + 1))
  assert 0.45 < float(np.mean(np.asarray(flip))) < 0.55


def test_flip_mirrors_left_right():
  x = _images()
  n = x.shape[0]
  centre = jnp.full((n,), 4)
  flip = jnp.asarray([True, False] * (n // 2))
  out = np.asarray(_augment.apply_crop_flip(x, centre, centre, flip, 4))
  for i in range(n):
    expected = np.asarray(x[i])[:, ::-1] if flip[i] else np.asarray(x[i])
    np.testing.assert_array_equal(out[i], expected)


def test_same_key_same_batch_and_another_key_another():
  x = _images()
  a = _augment.crop_flip(jax.random.key(7), x)
  b = jax.jit(_augment.crop_flip)(jax.random.key(7), x)
  c = _augment.crop_flip(jax.random.key(8), x)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert not np.array_equal(np.asarray(a), np.asarray(c))
  assert a.shape == x.shape and a.dtype == x.dtype


def test_off_is_the_identity_and_on_changes_the_objectives_input():
  objective = training.classifier_objective(lambda p, x: x.reshape(x.shape[0], -1)[:, :3] * p)
  assert training.augmented(objective, "none") is objective
  seen = []

  def spy(params, batch, key=None, *aux):
    seen.append(batch[0])
    return jnp.sum(batch[0])

  x, y = _images(), jnp.zeros(6, jnp.int32)
  training.augmented(spy, "none")(1.0, (x, y), jax.random.key(0))
  training.augmented(spy, "crop_flip")(1.0, (x, y), jax.random.key(0))
  np.testing.assert_array_equal(np.asarray(seen[0]), np.asarray(x))
  assert not np.array_equal(np.asarray(seen[1]), np.asarray(x))
  with pytest.raises(ValueError, match="augment='flip'"):
    training.augmented(spy, "flip")


def test_multistep_schedule_divides_by_ten_at_each_milestone():
  hp = dict(optimizer="sgd", learning_rate=0.1, schedule="multistep", milestones=(2, 3),
            epochs=5, batch_size=4)
  lr = retrain.train_schedule(hp, total_steps=50, steps_per_epoch=10)
  got = [float(lr(s)) for s in (0, 19, 20, 29, 30, 49)]
  np.testing.assert_allclose(got, [0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-6)
  assert retrain.train_schedule(dict(hp, schedule="constant"), 50, 10) == 0.1
