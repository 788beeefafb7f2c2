"""Per-channel input normalisation (``config.data.normalize``), against float64 NumPy.

The statistics must come from the training part alone: the tests compare them with a
float64 recomputation on the raw training images and check that including the
validation or test images would have given other numbers.
"""

import jax
import numpy as np
import pytest

from experiments.configs import fashion_mnist
from ieu_jax import data as data_lib
from ieu_jax import pipeline
from ieu_jax import sections


def _np_stats(x):
  x = np.asarray(x, np.float64)
  return x.mean(axis=(0, 1, 2)), x.std(axis=(0, 1, 2))


@pytest.fixture(scope="module")
def digits():
  kw = dict(val_size=0.2, seed=3)
  return (data_lib.load_dataset("digits", **kw),
          data_lib.load_dataset("digits", normalize="per_channel", **kw))


def test_channel_stats_equal_a_float64_recomputation_per_channel():
  rng = np.random.default_rng(0)
  # Three channels of different means and spreads, more examples than one chunk.
  x = (rng.normal(size=(5000, 3, 2, 3)) * [0.1, 2.0, 30.0] + [0.5, -1.0, 100.0]).astype(
      np.float32)
  mean, std = data_lib.channel_stats(x)
  want_mean, want_std = _np_stats(x)
  assert mean.dtype == std.dtype == np.float64
  np.testing.assert_allclose(mean, want_mean, rtol=1e-12, atol=1e-12)
  np.testing.assert_allclose(std, want_std, rtol=1e-12)
  with pytest.raises(ValueError, match="channel 1 is constant"):
    data_lib.channel_stats(np.stack([x[..., 0], np.ones_like(x[..., 1])], -1))


def test_stats_come_from_the_training_part_alone(digits):
  raw, norm = digits
  mean, std = _np_stats(raw.train.x)
  np.testing.assert_allclose(norm.channel_mean, mean, rtol=1e-12)
  np.testing.assert_allclose(norm.channel_std, std, rtol=1e-12)
  # The check can tell: with the validation or the test images the numbers differ.
  for other in (raw.val, raw.test):
    leaked_mean, leaked_std = _np_stats(np.concatenate([raw.train.x, other.x]))
    assert np.abs(leaked_mean - mean).max() > 1e-6
    assert np.abs(leaked_std - std).max() > 1e-6
  assert raw.channel_mean is None and raw.channel_std is None
  np.testing.assert_array_equal(norm.train_indices, raw.train_indices)
  np.testing.assert_array_equal(norm.test_indices, raw.test_indices)


def test_every_split_is_normalised_by_the_training_statistics(digits):
  raw, norm = digits
  mean, std = _np_stats(raw.train.x)
  for split in ("train", "val", "test"):
    got = np.asarray(getattr(norm, split).x, np.float64)
    want = (np.asarray(getattr(raw, split).x, np.float64) - mean) / std
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=split)
    np.testing.assert_array_equal(getattr(norm, split).y, getattr(raw, split).y)
  # The normalised training part has mean 0 and deviation 1 in each channel ...
  m, s = _np_stats(norm.train.x)
  np.testing.assert_allclose(m, 0.0, atol=1e-6)
  np.testing.assert_allclose(s, 1.0, rtol=1e-6)
  # ... and forget and retain sets, taken from it, are normalised with it.
  fs_raw, fs = (data_lib.select_forget(s.train, fraction=0.1, seed=3) for s in digits)
  np.testing.assert_array_equal(fs.forget_indices, fs_raw.forget_indices)
  for part in ("forget", "retain"):
    want = (np.asarray(getattr(fs_raw, part).x, np.float64) - mean) / std
    np.testing.assert_allclose(np.asarray(getattr(fs, part).x), want, rtol=1e-6, atol=1e-6)


def test_none_changes_no_image_and_a_bad_value_is_named(digits):
  raw, _ = digits
  for value in (None, "none"):
    again = data_lib.load_dataset("digits", val_size=0.2, seed=3, normalize=value)
    jax.tree.map(np.testing.assert_array_equal, again.train, raw.train)
  with pytest.raises(ValueError, match="normalize='zscore'"):
    data_lib.load_dataset("digits", normalize="zscore")


def test_config_normalize_is_checked_and_none_enters_no_fingerprint():
  config = fashion_mnist.get_config("small")
  assert config.data.normalize is None
  key = lambda c: pipeline.fingerprint(c, "original", ("data",))
  without = config.copy_and_resolve_references()
  del without.data["normalize"]
  base = key(without)
  for value, same in ((None, True), ("none", True), ("per_channel", False)):
    c = config.copy_and_resolve_references()
    c.data.normalize = value
    sections.validate_sections(c, {"data": sections.DataHParams})
    assert (key(c) == base) is same, value
  c.data.normalize = "zscore"
  with pytest.raises((TypeError, ValueError), match="normalize='zscore'"):
    sections.validate_sections(c, {"data": sections.DataHParams})
