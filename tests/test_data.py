"""Tests of ieu_jax.data: IDX reading, the three sources, splits, forget sets."""

import gzip
import os
import struct
import sys

import jax
import numpy as np
import PIL.Image
import pytest
from sklearn import datasets as sk_datasets
import tensorflow_datasets as tfds

from ieu_jax import data

FMNIST_FILES = (
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def write_idx(path, array, type_code=None, compress=False):
  """Writes an IDX file by hand from the format's definition."""
  codes = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C,
           np.float32: 0x0D, np.float64: 0x0E}
  array = np.asarray(array)
  if type_code is None:
    type_code = codes[array.dtype.type]
  header = bytes([0, 0, type_code, array.ndim]) + b"".join(
      struct.pack(">I", d) for d in array.shape)
  payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
  with open(path, "wb") as f:
    f.write(gzip.compress(payload) if compress else payload)
  return path


def write_fake_fmnist(directory, n_train=40, n_test=15, seed=0):
  rng = np.random.default_rng(seed)
  arrays = (rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
            (np.arange(n_train) % 10).astype(np.uint8),
            rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
            (np.arange(n_test) * 3 % 10).astype(np.uint8))
  for i, (name, array) in enumerate(zip(FMNIST_FILES, arrays)):
    # Mix the two spellings the loader accepts: compressed and plain.
    suffix = ".gz" if i % 2 == 0 else ""
    write_idx(os.path.join(directory, name + suffix), array, compress=bool(suffix))
  return arrays


@pytest.fixture(scope="module")
def digits_splits():
  return data.load_dataset("digits", seed=0)


def small_train(n=50, num_classes=10, seed=0):
  rng = np.random.default_rng(seed)
  return data.Dataset(
      x=jax.numpy.asarray(rng.random((n, 2, 2, 1), np.float32)),
      y=jax.numpy.asarray(np.arange(n) % num_classes, np.int32),
      num_classes=num_classes)


# ---------------------------------------------------------------------------
# read_idx


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("array", [
    np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
    np.array([-7, 0, 70000, 2**31 - 1], np.int32),
    np.array([[1.5, -2.25], [3e7, 0.0]], np.float32),
    np.array([-3, 1000], np.int16),
], ids=["uint8_3d", "int32_1d", "float32_2d", "int16_1d"])
def test_read_idx_round_trip(tmp_path, array, compress):
  path = write_idx(tmp_path / "a.idx", array, compress=compress)
  got = data.read_idx(path)
  assert got.shape == array.shape
  assert got.dtype == array.dtype  # native byte order, same kind and size
  np.testing.assert_array_equal(got, array)


def test_read_idx_errors_name_the_file_and_the_problem(tmp_path):
  with pytest.raises(FileNotFoundError, match="nowhere.idx"):
    data.read_idx(tmp_path / "nowhere.idx")
  bad_magic = tmp_path / "magic.idx"
  bad_magic.write_bytes(b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00")
  with pytest.raises(ValueError, match=r"magic.idx.*0x01000801"):
    data.read_idx(bad_magic)
  bad_type = write_idx(tmp_path / "type.idx", np.zeros(3, np.uint8), type_code=0x07)
  with pytest.raises(ValueError, match=r"type.idx.*type code 0x07"):
    data.read_idx(bad_type)
  truncated = write_idx(tmp_path / "short.idx", np.zeros((4, 5), np.uint8))
  truncated.write_bytes(truncated.read_bytes()[:-3])
  with pytest.raises(ValueError, match=r"short.idx.*\(4, 5\).*20 bytes.*17 bytes"):
    data.read_idx(truncated)
  header_only = tmp_path / "header.idx"
  header_only.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">I", 2))
  with pytest.raises(ValueError, match=r"header.idx.*truncated"):
    data.read_idx(header_only)


# ---------------------------------------------------------------------------
# Fashion-MNIST


def test_fashion_mnist_missing_files_say_where_and_which_package(tmp_path):
  with pytest.raises(FileNotFoundError) as info:
    data.load_dataset("fashion_mnist", data_dir=tmp_path)
  message = str(info.value)
  assert str(tmp_path) in message
  assert "train-images-idx3-ubyte[.gz]" in message
  assert "dataset-fashion-mnist" in message
  assert "data_dir" in message
  with pytest.raises(FileNotFoundError, match=r"no such directory"):
    data.load_dataset("fashion_mnist", data_dir=tmp_path / "absent")
  # Only the test labels missing: the message names that file alone as missing.
  write_fake_fmnist(tmp_path)
  os.remove(tmp_path / "t10k-labels-idx1-ubyte")
  with pytest.raises(FileNotFoundError,
                     match=r"missing t10k-labels-idx1-ubyte\[\.gz\]\. Install"):
    data.load_dataset("fashion_mnist", data_dir=tmp_path)


def test_fashion_mnist_from_a_data_dir(tmp_path):
  xtr, ytr, xte, yte = write_fake_fmnist(tmp_path, n_train=40, n_test=15)
  splits = data.load_dataset("fashion_mnist", data_dir=str(tmp_path),
                             val_size=8, seed=3)
  assert splits.train.x.shape == (32, 28, 28, 1)
  assert splits.val.x.shape == (8, 28, 28, 1)
  assert splits.test.x.shape == (15, 28, 28, 1)
  assert splits.train.num_classes == 10
  for ds, idx, images, labels in (
      (splits.train, splits.train_indices, xtr, ytr),
      (splits.val, splits.val_indices, xtr, ytr),
      (splits.test, splits.test_indices, xte, yte)):
    assert isinstance(ds.x, jax.Array) and isinstance(ds.y, jax.Array)
    assert ds.x.dtype == np.float32 and ds.y.dtype == np.int32
    np.testing.assert_array_equal(np.asarray(ds.x)[..., 0] * 255, images[idx])
    np.testing.assert_array_equal(np.asarray(ds.y), labels[idx])


def test_fashion_mnist_installed():
  paths = [os.path.join(data.FASHION_MNIST_DIR, f + ".gz") for f in FMNIST_FILES]
  if not all(os.path.isfile(p) for p in paths):
    pytest.skip(f"Fashion-MNIST IDX files are not in {data.FASHION_MNIST_DIR} "
                "(Debian's package dataset-fashion-mnist is not installed).")
  labels = data.read_idx(paths[1])
  assert data.read_idx(paths[0]).shape == (60000, 28, 28)
  np.testing.assert_array_equal(np.bincount(labels), np.full(10, 6000))
  np.testing.assert_array_equal(np.bincount(data.read_idx(paths[3])),
                                np.full(10, 1000))
  splits = data.load_dataset("fashion_mnist", max_train=600, max_test=100)
  assert (len(splits.train), len(splits.val), len(splits.test)) == (540, 60, 100)

  def raw(path, offset):  # an independent parse: fixed MNIST header sizes
    with gzip.open(path, "rb") as f:
      return np.frombuffer(f.read(), np.uint8, offset=offset)

  train_images = raw(paths[0], 16).reshape(-1, 28, 28)
  test_labels = raw(paths[3], 8)
  np.testing.assert_array_equal(
      np.round(np.asarray(splits.val.x)[..., 0] * 255),
      train_images[splits.val_indices])
  np.testing.assert_array_equal(np.asarray(splits.test.y),
                                test_labels[splits.test_indices])


# ---------------------------------------------------------------------------
# digits, and the splits


def test_digits_match_sklearn(digits_splits):
  ref = sk_datasets.load_digits()
  s = digits_splits
  assert (len(s.train), len(s.val), len(s.test)) == (1294, 144, 359)
  assert s.train.x.shape[1:] == (8, 8, 1)
  assert s.train.num_classes == 10
  for ds, idx in ((s.train, s.train_indices), (s.val, s.val_indices),
                  (s.test, s.test_indices)):
    np.testing.assert_allclose(np.asarray(ds.x)[..., 0], ref.images[idx] / 16,
                               rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(ds.y), ref.target[idx])
  every = np.concatenate([s.train_indices, s.val_indices, s.test_indices])
  np.testing.assert_array_equal(np.sort(every), np.arange(1797))
  assert float(s.train.x.min()) == 0.0 and float(s.train.x.max()) == 1.0


def test_splits_are_deterministic_in_the_seed(digits_splits):
  again = data.load_dataset("digits", seed=0)
  other = data.load_dataset("digits", seed=1)
  for field in ("train_indices", "val_indices", "test_indices"):
    np.testing.assert_array_equal(getattr(again, field),
                                  getattr(digits_splits, field))
    assert not np.array_equal(getattr(other, field), getattr(digits_splits, field))
  np.testing.assert_array_equal(np.asarray(again.train.x),
                                np.asarray(digits_splits.train.x))


def test_val_size_max_train_max_test(tmp_path):
  write_fake_fmnist(tmp_path, n_train=40, n_test=15)
  load = lambda **kw: data.load_dataset("fashion_mnist", data_dir=tmp_path, **kw)
  s = load(val_size=0.25, max_train=20, max_test=5)
  assert (len(s.train), len(s.val), len(s.test)) == (15, 5, 5)
  assert len(np.unique(s.test_indices)) == 5
  big = load(val_size=0.25, max_train=36)
  # Same seed: the smaller pool is a subset of the larger one.
  assert set(np.r_[s.train_indices, s.val_indices]) <= set(
      np.r_[big.train_indices, big.val_indices])
  assert not set(s.train_indices) & set(s.val_indices)
  empty_val = load(val_size=0)
  assert len(empty_val.val) == 0 and empty_val.val.x.shape == (0, 28, 28, 1)
  assert len(empty_val.train) == 40
  assert len(load(max_train=10**6, max_test=10**6).test) == 15


@pytest.mark.parametrize("kwargs, match", [
    (dict(val_size=1.5), r"val_size=1.5"),
    (dict(val_size=40), r"val_size=40 leaves 0 of 40"),
    (dict(val_size="10"), r"val_size='10'"),
    (dict(max_train=0), r"max_train=0"),
    (dict(max_test=-1), r"max_test=-1"),
    (dict(seed=-1), r"seed=-1"),
])
def test_load_dataset_bad_arguments(tmp_path, kwargs, match):
  write_fake_fmnist(tmp_path, n_train=40, n_test=15)
  with pytest.raises(ValueError, match=match):
    data.load_dataset("fashion_mnist", data_dir=tmp_path, **kwargs)


def test_unknown_name():
  with pytest.raises(ValueError, match=r"name='cifar10'.*tfds:"):
    data.load_dataset("cifar10")


def test_dataset_is_a_pytree_with_static_num_classes(digits_splits):
  ds = digits_splits.val
  leaves, treedef = jax.tree_util.tree_flatten(ds)
  assert len(leaves) == 2
  doubled = jax.jit(lambda d: jax.tree.map(lambda a: a * 2, d))(ds)
  assert isinstance(doubled, data.Dataset) and doubled.num_classes == 10
  np.testing.assert_array_equal(np.asarray(doubled.y), 2 * np.asarray(ds.y))
  sub = ds.take([5, 0, 5])
  assert len(sub) == 3
  np.testing.assert_array_equal(np.asarray(sub.y), np.asarray(ds.y)[[5, 0, 5]])


# ---------------------------------------------------------------------------
# select_forget


def check_partition(fs, train):
  n = len(train)
  assert np.all(np.diff(fs.forget_indices) > 0)
  assert np.all(np.diff(fs.retain_indices) > 0)
  np.testing.assert_array_equal(
      np.sort(np.r_[fs.forget_indices, fs.retain_indices]), np.arange(n))
  np.testing.assert_array_equal(np.asarray(fs.forget.x),
                                np.asarray(train.x)[fs.forget_indices])
  np.testing.assert_array_equal(np.asarray(fs.retain.x),
                                np.asarray(train.x)[fs.retain_indices])


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5])
def test_random_forget_set(digits_splits, fraction):
  train = digits_splits.train
  fs = data.select_forget(train, mode="random", fraction=fraction, seed=0)
  assert len(fs.forget) == round(fraction * len(train))
  assert len(fs.retain) == len(train) - len(fs.forget)
  check_partition(fs, train)
  np.testing.assert_array_equal(np.asarray(fs.forget.y),
                                np.asarray(train.y)[fs.forget_indices])
  assert fs.train is train and fs.forget_clean.num_classes == 10
  again = data.select_forget(train, fraction=fraction, seed=0)
  other = data.select_forget(train, fraction=fraction, seed=1)
  np.testing.assert_array_equal(again.forget_indices, fs.forget_indices)
  assert not np.array_equal(other.forget_indices, fs.forget_indices)


def test_class_forget_set_is_exactly_that_class(digits_splits):
  train = digits_splits.train
  y = np.asarray(train.y)
  fs = data.select_forget(train, mode="class", forget_class=3)
  np.testing.assert_array_equal(fs.forget_indices, np.flatnonzero(y == 3))
  assert np.all(np.asarray(fs.forget.y) == 3)
  assert not np.any(np.asarray(fs.retain.y) == 3)
  check_partition(fs, train)


def test_mislabel_forget_set(digits_splits):
  train = digits_splits.train
  true_y = np.asarray(train.y)
  fs = data.select_forget(train, mode="mislabel", fraction=0.3, seed=2)
  assert len(fs.forget) == round(0.3 * len(train))
  check_partition(fs, train)
  wrong = np.asarray(fs.forget.y)
  assert np.all(wrong != true_y[fs.forget_indices])
  assert np.all((wrong >= 0) & (wrong < 10))
  np.testing.assert_array_equal(np.asarray(fs.forget_clean.y),
                                true_y[fs.forget_indices])
  np.testing.assert_array_equal(np.asarray(fs.retain.y), true_y[fs.retain_indices])
  new_y = np.asarray(fs.train.y)
  np.testing.assert_array_equal(np.flatnonzero(new_y != true_y), fs.forget_indices)
  # The wrong class is uniform over the 9 others: each offset 1..9 about 1/9.
  offsets = np.bincount((wrong - true_y[fs.forget_indices]) % 10, minlength=10)
  assert offsets[0] == 0
  assert np.all(np.abs(offsets[1:] - len(wrong) / 9) < 5 * np.sqrt(len(wrong) / 9))
  again = data.select_forget(train, mode="mislabel", fraction=0.3, seed=2)
  np.testing.assert_array_equal(np.asarray(again.forget.y), wrong)


@pytest.mark.parametrize("kwargs, match", [
    (dict(fraction=1.5), r"fraction=1.5 is outside \(0, 1\)"),
    (dict(fraction=0.0), r"fraction=0.0 is outside \(0, 1\)"),
    (dict(fraction=1), r"fraction=1 is outside \(0, 1\)"),
    (dict(mode="mislabel", fraction=-0.2), r"fraction=-0.2 is outside \(0, 1\)"),
    (dict(mode="class", forget_class=12),
     r"forget_class=12 does not exist: classes are 0..9"),
    (dict(mode="class", forget_class=-1), r"forget_class=-1 does not exist"),
    (dict(mode="class"), r"needs forget_class"),
    (dict(mode="random", forget_class=2), r"forget_class=2 is only used"),
    (dict(mode="backdoor"), r"mode='backdoor'"),
    (dict(fraction=0.001), r"forget set is empty.*fraction=0.001"),
    (dict(fraction=0.995), r"whole training set.*fraction=0.995"),
])
def test_select_forget_errors(kwargs, match):
  with pytest.raises(ValueError, match=match):
    data.select_forget(small_train(n=50), **kwargs)


def test_class_forget_set_empty_or_everything():
  train = small_train(n=20, num_classes=10)
  only_low = train.take(np.flatnonzero(np.asarray(train.y) < 5))
  with pytest.raises(ValueError, match=r"empty.*forget_class=7"):
    data.select_forget(only_low, mode="class", forget_class=7)
  only_two = train.take(np.flatnonzero(np.asarray(train.y) == 2))
  with pytest.raises(ValueError, match=r"whole training set.*forget_class=2"):
    data.select_forget(only_two, mode="class", forget_class=2)


# ---------------------------------------------------------------------------
# TFDS, on data sets built here (array_record, no TensorFlow, no network)

def tiny_images(n, channels, id_offset):
  """Images whose first pixel is a unique id, so examples can be matched."""
  rng = np.random.default_rng(id_offset)
  images = rng.integers(0, 256, (n, 4, 5, channels), dtype=np.uint8)
  images[:, 0, 0, 0] = id_offset + np.arange(n)
  labels = (np.arange(n) * 7 + id_offset) % 5
  return images, labels


with tfds.core.registered.skip_registration():

  class _TinyBase(tfds.core.GeneratorBasedBuilder):
    """A 5-class data set of 4x5 images: 30 train and 10 test examples."""

    VERSION = tfds.core.Version("1.0.0")
    CHANNELS = 3

    def _info(self):
      # DatasetInfo directly: dataset_info_from_configs reads package metadata.
      return tfds.core.DatasetInfo(
          builder=self,
          features=tfds.features.FeaturesDict({
              "image": tfds.features.Image(shape=(4, 5, self.CHANNELS)),
              "label": tfds.features.ClassLabel(num_classes=5)}),
          supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
      del dl_manager  # nothing to download
      return {"train": self._generate_examples(30, 0),
              "test": self._generate_examples(10, 100)}

    def _generate_examples(self, n, id_offset):
      images, labels = tiny_images(n, self.CHANNELS, id_offset)
      for i in range(n):
        # PIL images are PNG-encoded by PIL; arrays would need TensorFlow.
        image = images[i, ..., 0] if self.CHANNELS == 1 else images[i]
        yield i, {"image": PIL.Image.fromarray(image), "label": int(labels[i])}


class IeuTestTinyRgb(_TinyBase):
  """Registered: TFDS finds it by name, as it finds cifar10."""


with tfds.core.registered.skip_registration():

  class IeuTestTinyGray(_TinyBase):
    """Not registered: TFDS reads it from its prepared files alone."""

    CHANNELS = 1


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
  """Prepares two tiny data sets: one with a registered builder, one not."""
  root = tmp_path_factory.mktemp("tfds")
  for cls in (IeuTestTinyRgb, IeuTestTinyGray):
    cls(data_dir=str(root), file_format="array_record").download_and_prepare()
  return root


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch, tmp_path):
  """Any attempt by TFDS to download or prepare a data set fails the test."""
  def refuse(*args, **kwargs):
    raise AssertionError("a test tried to download or prepare a TFDS data set")
  monkeypatch.setattr(tfds.download.DownloadManager, "download", refuse)
  monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract", refuse)
  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", refuse)
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds_default"))


@pytest.mark.parametrize("name, channels", [
    ("ieu_test_tiny_rgb", 3),     # a registered builder
    ("ieu_test_tiny_gray", 1),    # read from its files alone
])
def test_tfds_data_source(tfds_dir, name, channels):
  splits = data.load_dataset(f"tfds:{name}", data_dir=tfds_dir, val_size=6,
                             seed=0)
  assert "tensorflow" not in sys.modules
  assert splits.train.num_classes == 5
  assert (len(splits.train), len(splits.val), len(splits.test)) == (24, 6, 10)
  assert splits.train.x.shape[1:] == (4, 5, channels)
  assert splits.train.x.dtype == np.float32 and splits.train.y.dtype == np.int32
  for parts, n, id_offset in (((splits.train, splits.val), 30, 0),
                              ((splits.test,), 10, 100)):
    images, labels = tiny_images(n, channels, id_offset)
    x = np.concatenate([np.asarray(p.x) for p in parts])
    y = np.concatenate([np.asarray(p.y) for p in parts])
    ids = np.round(x[:, 0, 0, 0] * 255).astype(int) - id_offset
    np.testing.assert_array_equal(np.sort(ids), np.arange(n))  # each once
    np.testing.assert_array_equal(np.round(x * 255), images[ids])
    np.testing.assert_array_equal(y, labels[ids])
  again = data.load_dataset(f"tfds:{name}", data_dir=tfds_dir, val_size=6)
  np.testing.assert_array_equal(np.asarray(again.val.x), np.asarray(splits.val.x))
  small = data.load_dataset(f"tfds:{name}", data_dir=tfds_dir, val_size=0.2,
                            max_train=10, max_test=4)
  assert (len(small.train), len(small.val), len(small.test)) == (8, 2, 4)


def test_tfds_not_prepared_is_an_error_not_a_download(tmp_path):
  empty = tmp_path / "empty"
  with pytest.raises(FileNotFoundError) as info:
    data.load_dataset("tfds:cifar10", data_dir=empty)
  message = str(info.value)
  assert "'cifar10' is not prepared" in message and str(empty) in message
  assert "array_record" in message
  assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_tfds_unknown_name(tmp_path):
  with pytest.raises(ValueError, match=r"no TFDS data set named 'ieu_no_such_set'"):
    data.load_dataset("tfds:ieu_no_such_set", data_dir=tmp_path)
