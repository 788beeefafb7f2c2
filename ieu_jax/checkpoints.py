"""Saving and restoring params pytrees with orbax-checkpoint.

Orbax writes into a temporary directory and renames it when complete, so a run
killed while saving never leaves a half-written checkpoint that a rerun would
mistake for a finished one. Saving is synchronous: a failed save (an unwritable
directory, a full disk) raises at once, naming the path.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging

__all__ = ["exists", "restore_params", "save_params"]


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


def save_params(path: str | os.PathLike, params: Any) -> None:
  """Saves ``params`` to the directory ``path`` (absolute or relative).

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
      ckpt.save(path, args=ocp.args.StandardSave(params), force=True)
  except Exception as e:  # pylint: disable=broad-except  (narrowed by _is_file_error)
    if not _is_file_error(e):
      raise
    raise OSError(f"could not save checkpoint {path}: {_describe(e)}") from e


def restore_params(path: str | os.PathLike, like: Any) -> Any:
  """Restores params with the structure, shapes and dtypes of ``like``.

  Raises:
    FileNotFoundError: when no checkpoint is at ``path``.
  """
  path = os.path.abspath(path)
  if not os.path.isdir(path):
    raise FileNotFoundError(f"no checkpoint at {path}.")
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
  with _quiet(), _checkpointer(ocp.options.MultiprocessingOptions()) as ckpt:
    return ckpt.restore(path, args=ocp.args.StandardRestore(abstract))
