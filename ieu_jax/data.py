"""Data sets for the unlearning experiments: loading, splitting, forget sets.

Three sources, chosen by name in :func:`load_dataset`:

* ``'fashion_mnist'``: Fashion-MNIST read from its IDX files (the default
  embedded data set, no network). Debian's package ``dataset-fashion-mnist``
  installs them in ``/usr/share/datasets/fashion-mnist``; ``data_dir`` points
  elsewhere.
* ``'digits'``: scikit-learn's bundled 8x8 digits (1797 examples), for tiny
  tests. It has no test split of its own: one is carved out (20%).
* ``'tfds:<name>'`` (``'tfds:cifar10'``, ``'tfds:cifar100'``, ...): any
  TensorFlow Datasets data set that is prepared on disk in a random-access
  format (``array_record``), read through ``tfds.data_source``, which needs no
  TensorFlow. ``data_dir`` is the TFDS data directory. Nothing is downloaded
  unless ``download=True`` is passed.

Every data set becomes a :class:`Splits` of three :class:`Dataset` s (train,
val, test) with images as ``float32`` in ``[0, 1]``, layout NHWC, and ``int32``
labels, held on the default JAX device. All randomness (the validation
carve-out, subsampling, forget-set selection, relabelling) comes from an integer
seed through NumPy's ``SeedSequence``, so a split is the same on every machine
and every host of a multi-host run, and it is recorded as index arrays.

:func:`select_forget` divides a training set into a forget set and a retain set
for the scenarios of the experiments: random forgetting of a fraction, forgetting
a whole class, and removal of contaminated data (a random fraction relabelled to
wrong classes, which then is the forget set).

Example::

  splits = load_dataset('digits', seed=0)
  fs = select_forget(splits.train, mode='random', fraction=0.1, seed=0)
  len(fs.forget), len(fs.retain)   # (129, 1165)
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import math
import numbers
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Dataset",
    "ForgetSplit",
    "Splits",
    "FASHION_MNIST_DIR",
    "FORGET_MODES",
    "load_dataset",
    "read_idx",
    "select_forget",
]

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
"""Where Debian's package ``dataset-fashion-mnist`` installs the IDX files."""

FORGET_MODES = ("random", "class", "mislabel")
"""The forget-set selection modes of :func:`select_forget`."""

_FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_DIGITS_TEST_FRACTION = 0.2

# Distinct streams of randomness drawn from one seed: each purpose gets its own
# SeedSequence spawn key, so changing e.g. max_test never changes the train split.
_STREAM_TRAIN_PERMUTATION = 1
_STREAM_TEST_SUBSAMPLE = 2
_STREAM_DIGITS_TEST = 3
_STREAM_FORGET = 4
_STREAM_RELABEL = 5

# IDX type codes (third byte of the magic number) and their big-endian dtypes.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


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
  """

  train: Dataset
  val: Dataset
  test: Dataset
  train_indices: np.ndarray
  val_indices: np.ndarray
  test_indices: np.ndarray
  name: str = ""


@dataclasses.dataclass(frozen=True)
class ForgetSplit:
  """A training set divided into a forget set and a retain set.

  Attributes:
    forget: the examples to unlearn, with the labels the original model was
      trained on (for ``mode='mislabel'``: the wrong labels).
    retain: the other examples of ``train`` (the retrained reference's data).
    forget_indices: sorted indices of the forget examples in ``train``.
    retain_indices: sorted indices of the retain examples in ``train``; with
      ``forget_indices``, a partition of ``range(len(train))``.
    train: the training set the original model is trained on: the input
      training set, or for ``mode='mislabel'`` that set with the forget
      examples relabelled. ``forget`` and ``retain`` are taken from it.
    forget_clean: the forget examples with their true labels (the same as
      ``forget`` except for ``mode='mislabel'``), to measure whether the wrong
      labels were unlearned.
    mode: the selection mode.
  """

  forget: Dataset
  retain: Dataset
  forget_indices: np.ndarray
  retain_indices: np.ndarray
  train: Dataset
  forget_clean: Dataset
  mode: str


# ----------------------------------------------------------------------------
# Randomness.


def _check_seed(seed: Any) -> int:
  if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
    raise ValueError(f"seed={seed!r} must be a non-negative integer.")
  return int(seed)


def _rng(seed: int, stream: int) -> np.random.Generator:
  """An independent NumPy generator for one purpose, from an integer seed."""
  return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream,)))


# ----------------------------------------------------------------------------
# IDX files.


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
  """Reads an IDX file (the MNIST format), gzip-compressed or plain.

  Compression is detected from the content (the gzip magic bytes), not the
  file name.

  Args:
    path: the file.

  Returns:
    The array, in native byte order, with the dimensions the header declares.

  Raises:
    FileNotFoundError: if ``path`` does not exist.
    ValueError: if the file is not a well-formed IDX file: a bad magic number,
      an unknown type code, a truncated header, or a payload whose size is not
      what the dimensions declare.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"IDX file {path!r} does not exist.")
  with open(path, "rb") as f:
    raw = f.read()
  if raw[:2] == b"\x1f\x8b":
    try:
      raw = gzip.decompress(raw)
    except (OSError, EOFError) as e:
      raise ValueError(f"IDX file {path!r} is not a valid gzip file: {e}") from e
  if len(raw) < 4:
    raise ValueError(
        f"IDX file {path!r} is too short ({len(raw)} bytes) for an IDX header.")
  if raw[0] != 0 or raw[1] != 0:
    raise ValueError(
        f"IDX file {path!r} has magic number 0x{raw[:4].hex()}: an IDX file "
        "starts with two zero bytes.")
  type_code, ndim = raw[2], raw[3]
  if type_code not in _IDX_DTYPES:
    raise ValueError(
        f"IDX file {path!r} has unknown type code 0x{type_code:02x} (known: "
        f"{', '.join(f'0x{c:02x}' for c in _IDX_DTYPES)}).")
  if ndim == 0:
    raise ValueError(f"IDX file {path!r} declares 0 dimensions.")
  header_size = 4 + 4 * ndim
  if len(raw) < header_size:
    raise ValueError(
        f"IDX file {path!r} is truncated: {ndim} dimensions need a "
        f"{header_size}-byte header, the file has {len(raw)} bytes.")
  dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
  dtype = _IDX_DTYPES[type_code]
  expected = math.prod(dims) * dtype.itemsize
  actual = len(raw) - header_size
  if actual != expected:
    raise ValueError(
        f"IDX file {path!r} declares dimensions {dims} of {dtype.name} "
        f"({expected} bytes of data) but holds {actual} bytes of data.")
  data = np.frombuffer(raw, dtype, offset=header_size).reshape(dims)
  return data.astype(dtype.newbyteorder("="))


def _find_idx(data_dir: str, base: str) -> str | None:
  for candidate in (base + ".gz", base):
    path = os.path.join(data_dir, candidate)
    if os.path.isfile(path):
      return path
  return None


def _read_fashion_mnist(data_dir: str) -> tuple[np.ndarray, ...]:
  """Returns (train_images, train_labels, test_images, test_labels), uint8."""
  paths = {k: _find_idx(data_dir, base) for k, base in _FASHION_MNIST_FILES.items()}
  missing = [_FASHION_MNIST_FILES[k] for k, p in paths.items() if p is None]
  if missing:
    hint = (f"Install Debian's package dataset-fashion-mnist (it puts them in "
            f"{FASHION_MNIST_DIR}) or set data_dir to a directory that holds them.")
    if not os.path.isdir(data_dir):
      where = f"{data_dir} (no such directory)"
    else:
      where = data_dir
    if len(missing) == len(_FASHION_MNIST_FILES):
      raise FileNotFoundError(
          f"no Fashion-MNIST IDX files in {where} (looked for "
          f"{', '.join(base + '[.gz]' for base in missing)}). {hint}")
    raise FileNotFoundError(
        f"incomplete Fashion-MNIST IDX files in {where}: missing "
        f"{', '.join(base + '[.gz]' for base in missing)}. {hint}")
  arrays = {k: read_idx(p) for k, p in paths.items()}
  for split in ("train", "test"):
    images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
    where = paths[f"{split}_images"]
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
      raise ValueError(
          f"{where}: Fashion-MNIST images must be uint8 of shape (N, 28, 28), "
          f"got {images.dtype} {images.shape}.")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
      raise ValueError(
          f"{paths[f'{split}_labels']}: expected {images.shape[0]} labels (one "
          f"per image), got shape {labels.shape}.")
    if labels.size and labels.max() >= 10:
      raise ValueError(
          f"{paths[f'{split}_labels']}: label {int(labels.max())} is outside 0..9.")
  return (arrays["train_images"], arrays["train_labels"],
          arrays["test_images"], arrays["test_labels"])


# ----------------------------------------------------------------------------
# Sources. Each returns a _Source: the two splits' sizes and a reader that
# materialises chosen indices, so large sources read only what is used.


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
  splits = builder.info.splits
  for split in ("train", "test"):
    if split not in splits:
      raise ValueError(
          f"TFDS data set {name!r} has no {split!r} split (it has "
          f"{sorted(splits)}).")
  features = builder.info.features
  for key in ("image", "label"):
    if key not in features:
      raise ValueError(
          f"TFDS data set {name!r} has no {key!r} feature (it has "
          f"{sorted(features)}).")
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


# ----------------------------------------------------------------------------
# Loading and splitting.


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

  Returns:
    The :class:`Splits`, arrays on the default device.

  Raises:
    FileNotFoundError: if the data are not there (the message says where they
      were looked for and how to get them).
    ValueError: for an unknown name, or a bad ``val_size``, ``seed``,
      ``max_train`` or ``max_test``.
  """
  seed = _check_seed(seed)
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

  def build(read, idx, split):
    x, y = read(idx)
    return _to_device(x, y, source.num_classes, f"{name} {split}")

  train = build(source.read_train, train_idx, "train")
  val = build(source.read_train, val_idx, "val")
  test = build(source.read_test, test_idx, "test")
  if digits_pools is not None:  # report indices into the 1797 examples
    train_pool, test_pool = digits_pools
    train_idx, val_idx, test_idx = (
        train_pool[train_idx], train_pool[val_idx], test_pool[test_idx])
  return Splits(train=train, val=val, test=test, train_indices=train_idx,
                val_indices=val_idx, test_indices=test_idx, name=name)


# ----------------------------------------------------------------------------
# Forget sets.


def select_forget(
    train: Dataset,
    *,
    mode: str = "random",
    fraction: float = 0.1,
    forget_class: int | None = None,
    seed: int = 0,
) -> ForgetSplit:
  """Divides a training set into a forget set and a retain set.

  Modes:

  * ``'random'``: ``round(fraction * len(train))`` examples drawn uniformly
    without replacement (the paper's 10%, 30%, 50% scenarios).
  * ``'class'``: every example of class ``forget_class``.
  * ``'mislabel'``: contaminated data. ``round(fraction * len(train))``
    examples drawn uniformly are each relabelled to a different class drawn
    uniformly from the other ``num_classes - 1``; the relabelled examples are
    the forget set, and ``ForgetSplit.train`` (what the original model is
    trained on) carries the wrong labels.

  Args:
    train: the training set.
    mode: one of :data:`FORGET_MODES`.
    fraction: for ``'random'`` and ``'mislabel'``, the share of the training set
      to forget, in ``(0, 1)``; ignored for ``'class'``.
    forget_class: for ``'class'``, the class to forget; must be None otherwise.
    seed: a non-negative integer; the same seed gives the same selection (and
      the same wrong labels).

  Returns:
    The :class:`ForgetSplit`.

  Raises:
    ValueError: for an unknown mode, a fraction outside ``(0, 1)``, a class that
      does not exist, ``forget_class`` given to another mode, an empty forget
      set, or a forget set that is the whole training set.
  """
  seed = _check_seed(seed)
  n = len(train)
  if mode not in FORGET_MODES:
    raise ValueError(f"mode={mode!r} is not one of {FORGET_MODES}.")
  if mode != "class" and forget_class is not None:
    raise ValueError(
        f"forget_class={forget_class!r} is only used with mode='class', not "
        f"mode={mode!r}.")

  if mode == "class":
    if forget_class is None:
      raise ValueError("mode='class' needs forget_class (got None).")
    if (isinstance(forget_class, bool) or
        not isinstance(forget_class, numbers.Integral) or
        not 0 <= forget_class < train.num_classes):
      raise ValueError(
          f"forget_class={forget_class!r} does not exist: classes are "
          f"0..{train.num_classes - 1}.")
    forget_idx = np.flatnonzero(np.asarray(train.y) == int(forget_class))
    what = f"forget_class={forget_class}"
  else:
    if (isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or
        not 0.0 < fraction < 1.0):
      raise ValueError(f"fraction={fraction!r} is outside (0, 1).")
    num_forget = round(fraction * n)
    forget_idx = np.sort(
        _rng(seed, _STREAM_FORGET).choice(n, num_forget, replace=False))
    what = f"fraction={fraction} of {n} examples"

  if forget_idx.size == 0:
    raise ValueError(f"the forget set is empty ({what}, mode={mode!r}).")
  if forget_idx.size == n:
    raise ValueError(
        f"the forget set is the whole training set ({what}, mode={mode!r}): "
        "nothing would be retained.")

  mask = np.zeros(n, bool)
  mask[forget_idx] = True
  retain_idx = np.flatnonzero(~mask)
  forget = forget_clean = train.take(forget_idx)

  if mode == "mislabel":
    if train.num_classes < 2:
      raise ValueError(
          f"mode='mislabel' needs at least 2 classes, got "
          f"num_classes={train.num_classes}.")
    y = np.asarray(train.y).copy()
    shift = _rng(seed, _STREAM_RELABEL).integers(
        1, train.num_classes, size=forget_idx.size)
    y[forget_idx] = (y[forget_idx] + shift) % train.num_classes
    train = Dataset(x=train.x, y=jnp.asarray(y, jnp.int32),
                    num_classes=train.num_classes)
    forget = train.take(forget_idx)

  return ForgetSplit(
      forget=forget, retain=train.take(retain_idx),
      forget_indices=forget_idx, retain_indices=retain_idx, train=train,
      forget_clean=forget_clean, mode=mode)
