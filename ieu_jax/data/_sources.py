"""The sources of :func:`ieu_jax.data.load_dataset`.

Each returns a _Source: the two splits' sizes and a reader that materialises
chosen indices, so large sources read only what is used.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from ieu_jax.data._idx import _read_fashion_mnist
from ieu_jax.data._idx import FASHION_MNIST_DIR
from ieu_jax.data._random import _rng
from ieu_jax.data._random import _STREAM_DIGITS_TEST

_DIGITS_TEST_FRACTION = 0.2


@dataclasses.dataclass(frozen=True)
class _Source:
  num_train: int
  num_test: int
  num_classes: int
  read_train: Any  # Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
  read_test: Any


def _from_arrays(images: np.ndarray, labels: np.ndarray, scale: float):
  def read(indices):
    x = images[indices].astype(np.float32) / np.float32(scale)
    return x[..., None] if x.ndim == 3 else x, labels[indices]
  return read


def _fashion_mnist_source(data_dir: str | None) -> _Source:
  xtr, ytr, xte, yte = _read_fashion_mnist(data_dir or FASHION_MNIST_DIR)
  return _Source(len(ytr), len(yte), 10,
                 _from_arrays(xtr, ytr, 255.0), _from_arrays(xte, yte, 255.0))


def _digits_source(seed: int) -> tuple[_Source, np.ndarray, np.ndarray]:
  """Digits with a test split carved out: (source, train pool, test pool).

  The pools are indices into the 1797 examples; the source's splits index them.
  """
  from sklearn import datasets as sk_datasets  # pylint: disable=g-import-not-at-top
  digits = sk_datasets.load_digits()
  images, labels = digits.images, digits.target  # float64 in 0..16, int
  n = len(labels)
  num_test = round(_DIGITS_TEST_FRACTION * n)
  perm = _rng(seed, _STREAM_DIGITS_TEST).permutation(n)
  test_pool, train_pool = np.sort(perm[:num_test]), np.sort(perm[num_test:])
  read = _from_arrays(images, labels, 16.0)
  source = _Source(len(train_pool), num_test, 10,
                   lambda i: read(train_pool[i]), lambda i: read(test_pool[i]))
  return source, train_pool, test_pool


def _require_tfds_keys(name: str, present: Any, wanted: tuple[str, ...],
                       kind: str) -> None:
  """Checks that a TFDS data set has each of ``wanted`` among ``present``.

  Args:
    name: the TFDS name, for the message.
    present: the data set's splits or features (a mapping).
    wanted: the keys it must have.
    kind: ``'split'`` or ``'feature'``, for the message.

  Raises:
    ValueError: naming the first missing key and those present.
  """
  for key in wanted:
    if key not in present:
      raise ValueError(
          f"TFDS data set {name!r} has no {key!r} {kind} (it has "
          f"{sorted(present)}).")


def _tfds_source(name: str, data_dir: str | None, download: bool) -> _Source:
  """A TFDS data set through ``tfds.data_source`` (random access, no TF)."""
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        f"loading 'tfds:{name}' needs tensorflow-datasets and array-record "
        "(pip install tensorflow-datasets array-record).") from e
  builder_kwargs = {"file_format": "array_record"} if download else None
  try:
    builder = tfds.builder(name, data_dir=data_dir, **(builder_kwargs or {}))
  except tfds.core.registered.DatasetNotFoundError:
    raise ValueError(
        f"no TFDS data set named {name!r} (neither a registered builder nor a "
        f"prepared directory in data_dir={data_dir!r}).") from None
  except ModuleNotFoundError as e:
    raise ImportError(
        f"the TFDS builder of {name!r} needs the module {e.name!r}; install it "
        f"(pip install {e.name}).") from e
  where = os.fspath(builder.data_path)
  if not download and not builder.is_prepared():
    raise FileNotFoundError(
        f"TFDS data set {name!r} is not prepared in {where}, and download=False. "
        f"Prepare it in array_record format (e.g. `tfds build {name} "
        "--file_format=array_record --data_dir=DIR`, which needs TensorFlow), "
        "set data_dir to the TFDS data directory that holds it, or pass "
        "download=True.")
  file_format = builder.info.file_format
  if builder.is_prepared() and file_format is not None and (
      file_format not in tfds.core.file_adapters.FileFormat.with_random_access()):
    raise ValueError(
        f"TFDS data set {name!r} in {where} is stored as {file_format.value}, "
        "which has no random access; prepare it again with "
        "--file_format=array_record.")
  _require_tfds_keys(name, builder.info.splits, ("train", "test"), "split")
  features = builder.info.features
  _require_tfds_keys(name, features, ("image", "label"), "feature")
  if not hasattr(features["label"], "num_classes"):
    raise ValueError(
        f"TFDS data set {name!r}: feature 'label' is {features['label']!r}, "
        "not a ClassLabel.")
  sources = tfds.data_source(
      name, data_dir=data_dir, download=download, builder_kwargs=builder_kwargs)

  def reader(split):
    source = sources[split]

    def read(indices):
      examples = source.__getitems__([int(i) for i in indices])
      images = np.stack([np.asarray(e["image"]) for e in examples]) if len(
          examples) else np.zeros((0, *features["image"].shape), np.uint8)
      labels = np.asarray([e["label"] for e in examples], np.int64)
      if images.ndim == 3:
        images = images[..., None]
      if np.issubdtype(images.dtype, np.integer):
        scale = float(np.iinfo(images.dtype).max)
        images = images.astype(np.float32) / np.float32(scale)
      return images.astype(np.float32), labels
    return read

  return _Source(len(sources["train"]), len(sources["test"]),
                 int(features["label"].num_classes),
                 reader("train"), reader("test"))
