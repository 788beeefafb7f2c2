"""The data set containers, and loading a data set into train, val and test."""

from __future__ import annotations

import dataclasses
import functools
import numbers
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ieu_jax.data._random import _check_seed
from ieu_jax.data._random import _rng
from ieu_jax.data._random import _STREAM_TEST_SUBSAMPLE
from ieu_jax.data._random import _STREAM_TRAIN_PERMUTATION
from ieu_jax.data._sources import _digits_source
from ieu_jax.data._sources import _fashion_mnist_source
from ieu_jax.data._sources import _tfds_source


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["x", "y"],
    meta_fields=["num_classes"],
)
@dataclasses.dataclass(frozen=True)
class Dataset:
  """A labelled image data set held on the device; a pytree.

  ``x`` and ``y`` are the pytree's leaves and ``num_classes`` its static
  metadata, so a ``Dataset`` passes through ``jax.jit`` and ``jax.tree.map``.
  Nothing is validated at construction (pytree transformations rebuild the
  object with arbitrary leaves); the loaders validate what they build.

  Attributes:
    x: images, ``float32`` in ``[0, 1]``, shape ``(N, H, W, C)``.
    y: labels, ``int32`` in ``[0, num_classes)``, shape ``(N,)``.
    num_classes: the number of classes of the data set (not only those present).
  """

  x: jax.Array
  y: jax.Array
  num_classes: int

  def __len__(self) -> int:
    return int(self.y.shape[0])

  def take(self, indices: Any) -> Dataset:
    """Returns the examples at ``indices`` (integers, in that order).

    Args:
      indices: integer indices into this data set (a sequence, NumPy array or
        JAX array).

    Returns:
      A ``Dataset`` with the same ``num_classes``.
    """
    if not isinstance(indices, jax.Array):
      indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    return Dataset(x=self.x[indices], y=self.y[indices],
                   num_classes=self.num_classes)


@dataclasses.dataclass(frozen=True)
class Splits:
  """Train, validation and test sets, and where their examples came from.

  Attributes:
    train: the training set (what the original model is trained on, and what
      :func:`select_forget` divides).
    val: a validation set carved out of the data set's own training split; may
      be empty (``val_size=0``).
    test: the test set.
    train_indices: for each example of ``train``, its index in the source's
      training split (for ``'digits'``: in the 1797 examples).
    val_indices: the same for ``val``.
    test_indices: for each example of ``test``, its index in the source's test
      split (for ``'digits'``: in the 1797 examples).
    name: the name the data set was loaded by.
    channel_mean: with ``normalize='per_channel'``, each channel's mean over the
      raw training part (float64, shape ``(C,)``); None otherwise.
    channel_std: likewise, each channel's standard deviation (``ddof=0``).
  """

  train: Dataset
  val: Dataset
  test: Dataset
  train_indices: np.ndarray
  val_indices: np.ndarray
  test_indices: np.ndarray
  name: str = ""
  channel_mean: np.ndarray | None = None
  channel_std: np.ndarray | None = None


NORMALIZATIONS = ("none", "per_channel")
"""The input normalisations of :func:`load_dataset` (``config.data.normalize``)."""

_CHUNK = 4096  # examples per float64 pass: bounds the float64 copies' memory


def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Each channel's mean and standard deviation (``ddof=0``) of NHWC ``x``, in float64.

  Two passes over chunks of examples, each cast to float64, so no float64 copy
  of the whole array is made.

  Raises:
    ValueError: for no examples, or a channel whose deviation is 0 (it cannot be
      normalised), naming the channel.
  """
  n = x.shape[0]
  if n == 0:
    raise ValueError("channel_stats: no examples to compute channel statistics of.")
  count = n * x.shape[1] * x.shape[2]
  total = np.zeros(x.shape[-1], np.float64)
  for i in range(0, n, _CHUNK):
    total += x[i:i + _CHUNK].astype(np.float64).sum(axis=(0, 1, 2))
  mean = total / count
  squares = np.zeros(x.shape[-1], np.float64)
  for i in range(0, n, _CHUNK):
    squares += ((x[i:i + _CHUNK].astype(np.float64) - mean) ** 2).sum(axis=(0, 1, 2))
  std = np.sqrt(squares / count)
  for c in np.flatnonzero(std == 0):
    raise ValueError(f"channel_stats: channel {int(c)} is constant ({mean[c]!r}) over the"
                     " training part; per-channel normalisation would divide by 0.")
  return mean, std


def _normalized(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
  """``(x - mean) / std``, computed in float64 chunk by chunk, returned as float32."""
  out = np.empty(x.shape, np.float32)
  for i in range(0, x.shape[0], _CHUNK):
    out[i:i + _CHUNK] = (x[i:i + _CHUNK].astype(np.float64) - mean) / std
  return out


def _to_device(x: np.ndarray, y: np.ndarray, num_classes: int,
               name: str) -> Dataset:
  y = np.asarray(y)
  if y.size and (y.min() < 0 or y.max() >= num_classes):
    raise ValueError(
        f"{name}: labels span {int(y.min())}..{int(y.max())}, outside "
        f"0..{num_classes - 1}.")
  return Dataset(x=jnp.asarray(x, jnp.float32), y=jnp.asarray(y, jnp.int32),
                 num_classes=num_classes)


def _count(value: Any, pool: int, what: str, *, allow_zero: bool) -> int:
  """Resolves an int count or a float fraction of ``pool``."""
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    raise ValueError(f"{what}={value!r} must be an int or a float.")
  if isinstance(value, numbers.Integral):
    n = int(value)
  else:
    if not 0.0 <= value < 1.0:
      raise ValueError(f"{what}={value!r} as a fraction must be in [0, 1).")
    n = round(value * pool)
  if n < (0 if allow_zero else 1) or n >= pool:
    raise ValueError(
        f"{what}={value!r} leaves {pool - n} of {pool} training examples for "
        "training; it must be smaller.")
  return n


def _cap(value: int | None, total: int, what: str) -> int:
  if value is None:
    return total
  if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
    raise ValueError(f"{what}={value!r} must be a positive integer or None.")
  return min(int(value), total)


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    val_size: int | float = 0.1,
    seed: int = 0,
    max_train: int | None = None,
    max_test: int | None = None,
    download: bool = False,
    normalize: str | None = "none",
) -> Splits:
  """Loads a data set and splits it into train, val and test, deterministically.

  The data set's own training split is permuted with ``seed``; its first
  ``max_train`` examples (all by default) form the pool, whose first
  ``val_size`` examples become ``val`` and the rest ``train``. ``max_test``
  draws that many test examples at random (all by default). With the same seed,
  a smaller ``max_train`` gives a subset of the larger one's pool. Indices are
  sorted within each split.

  Args:
    name: ``'fashion_mnist'``, ``'digits'`` or ``'tfds:<name>'`` (a TFDS name,
      optionally with config and version: ``'tfds:cifar10'``,
      ``'tfds:cifar10:3.0.2'``). A TFDS data set must have ``'train'`` and
      ``'test'`` splits, an ``'image'`` feature and a ``ClassLabel``
      ``'label'`` feature.
    data_dir: for ``'fashion_mnist'``, the directory of the IDX files (default
      :data:`FASHION_MNIST_DIR`); for TFDS, the TFDS data directory (default:
      TFDS's, ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``). Unused for
      ``'digits'``.
    val_size: the validation set: a number of examples (int) or a fraction
      (float in ``[0, 1)``) of the pool; 0 gives an empty ``val``.
    seed: a non-negative integer; the same seed gives the same splits.
    max_train: at most this many examples of the data set's training split are
      used (train and val together); for small configurations.
    max_test: at most this many test examples are used.
    download: TFDS only: let TFDS download and prepare a missing data set (in
      ``array_record`` format; preparing image data sets needs TensorFlow).
      Never done otherwise.
    normalize: ``'none'`` (or None): images stay in ``[0, 1]``.
      ``'per_channel'``: each channel's mean and standard deviation are
      computed in float64 over ``train`` alone (never ``val`` or ``test``), and
      every split becomes ``(x - mean) / std``; the statistics are recorded in
      the :class:`Splits`. Forget and retain sets, taken from ``train``, are
      normalised with it.

  Returns:
    The :class:`Splits`, arrays on the default device.

  Raises:
    FileNotFoundError: if the data are not there (the message says where they
      were looked for and how to get them).
    ValueError: for an unknown name, or a bad ``val_size``, ``seed``,
      ``max_train``, ``max_test`` or ``normalize``.
  """
  seed = _check_seed(seed)
  normalize = "none" if normalize is None else normalize
  if normalize not in NORMALIZATIONS:
    raise ValueError(f"normalize={normalize!r} is unknown: choose one of {NORMALIZATIONS}.")
  data_dir = os.fspath(data_dir) if data_dir is not None else None
  digits_pools = None
  if name == "fashion_mnist":
    source = _fashion_mnist_source(data_dir)
  elif name == "digits":
    source, *digits_pools = _digits_source(seed)
  elif isinstance(name, str) and name.startswith("tfds:") and len(name) > 5:
    source = _tfds_source(name[len("tfds:"):], data_dir, download)
  else:
    raise ValueError(
        f"unknown data set name={name!r}: use 'fashion_mnist', 'digits' or "
        "'tfds:<name>' (e.g. 'tfds:cifar10').")

  pool = _cap(max_train, source.num_train, "max_train")
  num_val = _count(val_size, pool, "val_size", allow_zero=True)
  perm = _rng(seed, _STREAM_TRAIN_PERMUTATION).permutation(source.num_train)
  val_idx = np.sort(perm[:num_val])
  train_idx = np.sort(perm[num_val:pool])
  num_test = _cap(max_test, source.num_test, "max_test")
  if num_test == source.num_test:
    test_idx = np.arange(source.num_test)
  else:
    test_idx = np.sort(_rng(seed, _STREAM_TEST_SUBSAMPLE).choice(
        source.num_test, num_test, replace=False))

  raw = {"train": source.read_train(train_idx), "val": source.read_train(val_idx),
         "test": source.read_test(test_idx)}
  mean = std = None
  if normalize == "per_channel":  # the training part's statistics, for every split
    mean, std = channel_stats(raw["train"][0])
    raw = {k: (_normalized(x, mean, std), y) for k, (x, y) in raw.items()}
  train, val, test = (_to_device(*raw[k], source.num_classes, f"{name} {k}")
                      for k in ("train", "val", "test"))
  if digits_pools is not None:  # report indices into the 1797 examples
    train_pool, test_pool = digits_pools
    train_idx, val_idx, test_idx = (
        train_pool[train_idx], train_pool[val_idx], test_pool[test_idx])
  return Splits(train=train, val=val, test=test, train_indices=train_idx,
                val_indices=val_idx, test_indices=test_idx, name=name,
                channel_mean=mean, channel_std=std)
