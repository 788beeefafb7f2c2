"""Saving and restoring params pytrees with orbax-checkpoint.

Orbax writes into a temporary directory and renames it when complete, so a run
killed while saving never leaves a half-written checkpoint that a rerun would
mistake for a finished one.
"""

from __future__ import annotations

import os
from typing import Any

import contextlib

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


def save_params(path: str | os.PathLike, params: Any) -> None:
  """Saves ``params`` to the directory ``path`` (absolute or relative).

  The calling process saves alone (no barrier with other processes under
  ``jax.distributed``): call it from process 0 (:func:`ieu_jax.outputs.is_writer`),
  with params every process holds in full.
  """
  path = os.path.abspath(path)
  alone = ocp.options.MultiprocessingOptions(
      primary_host=jax.process_index(), active_processes={jax.process_index()})
  with _quiet(), ocp.StandardCheckpointer(multiprocessing_options=alone) as ckpt:
    ckpt.save(path, params, force=True)
    ckpt.wait_until_finished()


def restore_params(path: str | os.PathLike, like: Any) -> Any:
  """Restores params with the structure, shapes and dtypes of ``like``.

  Raises:
    FileNotFoundError: when no checkpoint is at ``path``.
  """
  path = os.path.abspath(path)
  if not os.path.isdir(path):
    raise FileNotFoundError(f"no checkpoint at {path}.")
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
  with _quiet(), ocp.StandardCheckpointer() as ckpt:
    return ckpt.restore(path, abstract)
