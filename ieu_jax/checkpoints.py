"""Saving, restoring and verifying params pytrees with orbax-checkpoint.

Orbax writes into a temporary directory and renames it when complete, so a run
killed while saving never leaves a half-written checkpoint that a rerun would
mistake for a finished one. Saving is synchronous: a failed save (an unwritable
directory, a full disk) raises at once, naming the path.

What orbax cannot tell, damaged bytes in an array's data file, :func:`checksum`
can: :func:`restore_params` compares the restored params with the checksum
recorded when they were saved, and raises :class:`CorruptCheckpointError` for a
checkpoint that does not read back as saved.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from ieu_jax import _state

__all__ = ["CorruptCheckpointError", "checksum", "exists", "restore_params", "save_params"]


class CorruptCheckpointError(ValueError):
  """A checkpoint that does not read back as it was saved.

  Attributes:
    path: the checkpoint's directory.
    reason: what is wrong with it.
  """

  def __init__(self, path: str | os.PathLike, reason: str,
               advice: str = "delete it to retrain"):
    self.path = os.fspath(path)
    self.reason = reason
    super().__init__(f"checkpoint {self.path} is corrupt ({reason}); {advice}")


def checksum(params: Any) -> str:
  """SHA-256 hex digest of every leaf of ``params``, in tree order.

  Each leaf contributes its dtype, its shape and its bytes (C order), so a
  changed value, shape, dtype or leaf count changes the digest; the tree's key
  names do not enter. The leaves are copied to the host as NumPy arrays.
  """
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(params):
    a = np.ascontiguousarray(np.asarray(leaf))
    digest.update(f"{a.dtype.name}{a.shape}{a.nbytes};".encode())
    digest.update(a.tobytes())
  return digest.hexdigest()


def exists(path: str | os.PathLike) -> bool:
  """Whether a finished checkpoint is at ``path``."""
  return os.path.isdir(path) and ocp.utils.is_checkpoint_finalized(path)


@contextlib.contextmanager
def _quiet():
  """Orbax logs every stage of a save at INFO; keep the experiment's log readable."""
  level = logging.get_verbosity()
  logging.set_verbosity(min(level, logging.WARNING))  # absl: larger is more verbose
  try:
    yield
  finally:
    logging.set_verbosity(level)


def _checkpointer(options: ocp.options.MultiprocessingOptions) -> ocp.Checkpointer:
  """A synchronous checkpointer: its ``save`` returns once the files are final."""
  return ocp.Checkpointer(ocp.StandardCheckpointHandler(multiprocessing_options=options),
                          multiprocessing_options=options)


def _unwrapped(error: BaseException) -> BaseException:
  """The error under orbax's bare ``Exception`` wrappers (it wraps TensorStore's errors)."""
  while type(error) is Exception and error.__cause__ is not None:
    error = error.__cause__
  return error


def _describe(error: BaseException, limit: int = 300) -> str:
  """``Type: message`` of the unwrapped ``error``: its first line, at most ``limit`` characters.

  TensorStore's messages run to dozens of lines of JSON spec.
  """
  error = _unwrapped(error)
  text = f"{type(error).__name__}: {error}".splitlines()[0]
  return text if len(text) <= limit else text[:limit - 3] + "..."


def _is_file_error(error: Exception) -> bool:
  """Whether ``error``, raised by orbax, comes from files that cannot be read or written.

  Missing or unwritable files raise ``OSError``; undecodable metadata and
  TensorStore failures (missing, truncated or damaged OCDBT files) ``ValueError``,
  the latter wrapped in a bare ``Exception`` when reading an array. Anything else
  (a ``RuntimeError`` for device memory, a ``TypeError``) is not the files' fault.
  """
  return isinstance(_unwrapped(error), (OSError, ValueError, KeyError))


def _to_saved(tree: Any) -> Any:
  """What orbax writes: a stateful model's variables as ``{"params", "state"}``
  (a plain dict, in the same leaf order), a stateless model's params as they are."""
  if isinstance(tree, _state.Variables):
    return {"params": tree.params, "state": tree.state}
  return tree


def _from_saved(tree: Any, like: Any) -> Any:
  if isinstance(like, _state.Variables):
    return _state.Variables(tree["params"], tree["state"])
  return tree


def save_params(path: str | os.PathLike, params: Any) -> None:
  """Saves ``params`` to the directory ``path`` (absolute or relative).

  A stateful model's :class:`ieu_jax._state.Variables` are saved whole, params
  and statistics (as ``{"params": ..., "state": ...}``).

  The calling process saves alone (no barrier with other processes under
  ``jax.distributed``): call it from process 0 (:func:`ieu_jax.outputs.is_writer`),
  with params every process holds in full. A checkpoint already at ``path`` is
  replaced.

  Raises:
    OSError: when the checkpoint cannot be written (naming ``path``; the
      original error is its ``__cause__``).
  """
  path = os.path.abspath(path)
  alone = ocp.options.MultiprocessingOptions(
      primary_host=jax.process_index(), active_processes={jax.process_index()})
  try:
    with _quiet(), _checkpointer(alone) as ckpt:
      ckpt.save(path, args=ocp.args.StandardSave(_to_saved(params)), force=True)
  except Exception as e:  # pylint: disable=broad-except  (narrowed by _is_file_error)
    if not _is_file_error(e):
      raise
    raise OSError(f"could not save checkpoint {path}: {_describe(e)}") from e


def restore_params(path: str | os.PathLike, like: Any, expected_checksum: str | None = None) -> Any:
  """Restores params with the structure, shapes and dtypes of ``like``.

  Args:
    path: the checkpoint's directory.
    like: a pytree of the params' shapes and dtypes (``jax.eval_shape``).
    expected_checksum: the :func:`checksum` recorded when the params were saved;
      ``None`` skips the comparison.

  Raises:
    FileNotFoundError: when no checkpoint is at ``path``.
    CorruptCheckpointError: when its files cannot be read (missing, truncated,
      damaged) or the restored params' checksum is not ``expected_checksum``.
  """
  path = os.path.abspath(path)
  if not os.path.isdir(path):
    raise FileNotFoundError(f"no checkpoint at {path}.")
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _to_saved(like))
  try:
    with _quiet(), _checkpointer(ocp.options.MultiprocessingOptions()) as ckpt:
      params = _from_saved(ckpt.restore(path, args=ocp.args.StandardRestore(abstract)), like)
  except Exception as e:  # pylint: disable=broad-except  (narrowed by _is_file_error)
    if not _is_file_error(e):
      raise
    raise CorruptCheckpointError(path, f"restoring it failed: {_describe(e)}") from e
  if expected_checksum is not None:
    got = checksum(params)
    if got != expected_checksum:
      raise CorruptCheckpointError(
          path, f"its checksum {got[:16]}... is not the {expected_checksum[:16]}... "
          "recorded when it was saved")
  return params
