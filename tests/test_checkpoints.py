"""Checkpoints: saves that fail at once."""

import os
import re
import subprocess
import sys
import threading
import time

import jax
import jax.numpy as jnp
import pytest

from ieu_jax import checkpoints
from ieu_jax import pipeline

def _params(seed=0):
  # Random bits: incompressible, so zstd stores them as they are in the checkpoint's
  # largest file, where flipped bytes read back as other numbers without an error.
  return {"w": jax.random.bits(jax.random.key(seed), (32, 40), jnp.uint32), "b": jnp.arange(5.0)}


class _Trainer:
  """``train`` for cached_train, counting its calls."""

  def __init__(self):
    self.calls = 0

  def __call__(self):
    self.calls += 1
    return _params()


def _save_within(path, seconds):
  """Runs save_params(path) in a thread; its error, or a failure if it is still running."""
  outcome = []

  def save():
    try:
      checkpoints.save_params(path, _params())
      outcome.append(None)
    except Exception as e:  # pylint: disable=broad-except
      outcome.append(e)

  start = time.perf_counter()
  thread = threading.Thread(target=save, daemon=True)
  thread.start()
  thread.join(seconds)
  assert outcome, f"save_params still running after {seconds} s"
  return outcome[0], time.perf_counter() - start


def _refuse_temporary_directories(monkeypatch):
  """Makes orbax's temporary directory unwritable, as in a read-only workdir, even for root."""
  mkdir = os.mkdir

  def refuse(path, *args, **kwargs):
    if "orbax-checkpoint-tmp" in os.fspath(path):
      raise PermissionError(13, "Permission denied", os.fspath(path))
    return mkdir(path, *args, **kwargs)

  monkeypatch.setattr(os, "mkdir", refuse)


def test_saving_where_the_temporary_directory_cannot_be_made_raises_at_once(tmp_path, monkeypatch):
  _refuse_temporary_directories(monkeypatch)
  path = str(tmp_path / "m-abc")
  error, seconds = _save_within(path, 30)
  assert isinstance(error, OSError) and seconds < 10
  assert str(error).startswith(f"could not save checkpoint {path}: PermissionError")
  assert not os.path.exists(path)


_SAVE_AND_EXIT = """
import os, sys
import pytest
import jax.numpy as jnp
from ieu_jax import checkpoints
sys.path.insert(0, os.path.join(os.getcwd(), "tests"))
from test_checkpoints import _refuse_temporary_directories
with pytest.MonkeyPatch.context() as monkeypatch:
  _refuse_temporary_directories(monkeypatch)
  try:
    checkpoints.save_params(sys.argv[1], {"w": jnp.arange(3.0)})
  except OSError as e:
    print(e)
"""


@pytest.mark.slow
def test_a_failed_save_leaves_no_thread_that_blocks_the_exit(tmp_path):
  """Asynchronous saving raised too, but left a thread that held the process for 300 s."""
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  path = str(tmp_path / "m-abc")
  proc = subprocess.run([sys.executable, "-c", _SAVE_AND_EXIT, path], cwd=repo,
                        env=dict(os.environ, PYTHONPATH=repo), capture_output=True, text=True,
                        timeout=60)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.startswith(f"could not save checkpoint {path}: PermissionError"), proc.stdout


def test_saving_into_a_read_only_directory_raises_at_once(tmp_path):
  readonly = tmp_path / "readonly"
  readonly.mkdir()
  readonly.chmod(0o555)
  try:
    if os.access(readonly, os.W_OK):
      pytest.skip("this user writes into read-only directories")
    path = str(readonly / "m-abc")
    error, seconds = _save_within(path, 30)
    assert isinstance(error, OSError) and seconds < 10
    assert str(error).startswith(f"could not save checkpoint {path}: ")
  finally:
    readonly.chmod(0o755)


def test_cached_train_under_a_workdir_that_is_a_file_raises_naming_the_checkpoint(tmp_path):
  workdir = tmp_path / "file"
  workdir.write_text("")
  train = _Trainer()
  with pytest.raises(OSError, match=re.escape(
      f"could not save checkpoint {workdir}/checkpoints/m-abc: NotADirectoryError")):
    pipeline.cached_train(str(workdir), "m", "abc", jax.eval_shape(_params), train)
  assert train.calls == 1
