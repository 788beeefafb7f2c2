"""IDX files (the MNIST format) and the Fashion-MNIST files in that format."""

from __future__ import annotations

import gzip
import math
import os

import numpy as np

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
"""Where Debian's package ``dataset-fashion-mnist`` installs the IDX files."""

_FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# IDX type codes (third byte of the magic number) and their big-endian dtypes.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


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
