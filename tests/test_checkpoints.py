"""Checkpoints: checksums, corrupt caches retrained or refused, saves that fail at once."""

import json
import os
import re
import subprocess
import sys
import threading
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from absl import logging

from ieu_jax import checkpoints
from ieu_jax import experiment
from ieu_jax import pipeline

# Orbax leaves unawaited coroutines behind when a read fails.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


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


def _files(path):
  return [os.path.join(root, f) for root, _, names in os.walk(path) for f in names]


def _largest_file(path):
  return max(_files(path), key=os.path.getsize)


def _flip(path):
  """XORs 256 bytes in the middle of the checkpoint's largest file (its array data)."""
  target = _largest_file(path)
  data = bytearray(open(target, "rb").read())
  start = len(data) // 3
  for i in range(start, start + 256):
    data[i] ^= 0x5A
  with open(target, "wb") as f:
    f.write(data)


def _truncate(path):
  target = _largest_file(path)
  os.truncate(target, os.path.getsize(target) // 2)


def _delete(path):
  os.remove(_largest_file(path))


def _delete_metadata(path):
  os.remove(os.path.join(path, "_METADATA"))


def _delete_record(path):
  os.remove(path + ".json")


def _garble_record(path):
  with open(path + ".json", "w") as f:
    f.write('{"training_time_s": 1.')


def _record_without_checksum(path):
  with open(path + ".json", "w") as f:
    json.dump({"training_time_s": 1.0}, f)


def _other_checksum(path):
  with open(path + ".json") as f:
    record = json.load(f)
  record["checksum"] = checkpoints.checksum(jax.tree.map(lambda x: x + 1, _params()))
  with open(path + ".json", "w") as f:
    json.dump(record, f)


_CORRUPTIONS = {
    "flipped data bytes": (_flip, "checksum"),
    "truncated data file": (_truncate, "restoring it failed"),
    "deleted data file": (_delete, "restoring it failed"),
    "deleted _METADATA": (_delete_metadata, "restoring it failed"),
    "deleted record": (_delete_record, "is missing"),
    "garbled record": (_garble_record, "is unreadable"),
    "record without checksum": (_record_without_checksum, "has no checksum"),
    "checksum mismatch": (_other_checksum, "checksum"),
}


def _cached(tmp_path, train, **kwargs):
  return pipeline.cached_train(str(tmp_path), "m", "abc", jax.eval_shape(_params), train, **kwargs)


@pytest.fixture
def saved(tmp_path):
  """A model trained and saved through cached_train: (its path, the trainer)."""
  train = _Trainer()
  first = _cached(tmp_path, train)
  assert not first.restored and train.calls == 1
  path = str(tmp_path / "checkpoints" / "m-abc")
  with open(path + ".json") as f:
    assert json.load(f)["checksum"] == checkpoints.checksum(_params())
  return path, train


@pytest.fixture
def warnings(monkeypatch):
  """The messages of absl warnings logged while the test runs."""
  logged = []
  monkeypatch.setattr(logging, "warning", lambda msg, *args: logged.append(msg % args))
  return logged


def test_checksum_covers_values_shapes_and_dtypes():
  p = _params()
  assert checkpoints.checksum(p) == checkpoints.checksum(jax.tree.map(np.asarray, p))
  assert re.fullmatch(r"[0-9a-f]{64}", checkpoints.checksum(p))
  others = [
      {"w": p["w"], "b": p["b"].at[3].add(1e-6)},
      {"w": p["w"].reshape(40, 32), "b": p["b"]},
      {"w": p["w"], "b": p["b"].astype(jnp.int32)},
      {"w": p["w"].astype(jnp.int32), "b": p["b"]},
      {"w": p["w"]},
  ]
  assert len({checkpoints.checksum(p)} | {checkpoints.checksum(o) for o in others}) == 6


def test_an_intact_checkpoint_restores_without_training(tmp_path, saved, warnings):
  _, train = saved
  again = _cached(tmp_path, train, strict=True)
  assert again.restored and train.calls == 1 and not warnings
  np.testing.assert_array_equal(again.params["w"], _params()["w"])


def test_flipped_bytes_are_array_data_that_orbax_restores_silently(saved):
  """Why the checksum: without it, the damaged file restores as other numbers."""
  path, _ = saved
  _flip(path)
  restored = checkpoints.restore_params(path, jax.eval_shape(_params))
  assert not np.array_equal(restored["w"], _params()["w"])
  np.testing.assert_array_equal(restored["b"], _params()["b"])


@pytest.mark.parametrize("corruption", list(_CORRUPTIONS))
def test_a_corrupt_checkpoint_is_retrained_with_a_warning(tmp_path, saved, warnings, corruption):
  path, train = saved
  corrupt, reason = _CORRUPTIONS[corruption]
  corrupt(path)
  again = _cached(tmp_path, train)
  assert not again.restored and train.calls == 2
  assert len(warnings) == 1, warnings
  assert warnings[0].startswith(f"checkpoint {path} is corrupt (")
  assert warnings[0].endswith("); retraining") and reason in warnings[0]
  # The retrained model replaced it: restored, verified, no training.
  third = _cached(tmp_path, train, strict=True)
  assert third.restored and train.calls == 2 and len(warnings) == 1
  np.testing.assert_array_equal(third.params["w"], _params()["w"])


@pytest.mark.parametrize("corruption", list(_CORRUPTIONS))
def test_a_corrupt_checkpoint_raises_when_strict(tmp_path, saved, warnings, corruption):
  path, train = saved
  corrupt, reason = _CORRUPTIONS[corruption]
  corrupt(path)
  with pytest.raises(checkpoints.CorruptCheckpointError) as info:
    _cached(tmp_path, train, strict=True)
  message = str(info.value)
  assert message.startswith(f"checkpoint {path} is corrupt (")
  assert message.endswith("); delete it to retrain") and reason in message
  assert "\n" not in message  # TensorStore's specs are left to the chained cause
  assert train.calls == 1 and not warnings


def test_the_classifier_pipeline_passes_strict_checkpoints(tmp_path):
  init_fn = lambda key: {"w": jnp.zeros((64, 10))}
  apply_fn = lambda p, x: x.reshape(x.shape[0], -1) @ p["w"]
  data = type("D", (), {"x": jnp.zeros((8, 8, 8, 1)), "y": jnp.zeros(8, jnp.int32),
                        "__len__": lambda self: 8})()
  config = ml_collections.ConfigDict({
      "seed": 3, "data": {"name": "digits"}, "forget": {"mode": "random"},
      "model": {"name": "linear"},
      "train": {"epochs": 1, "optimizer": "adam", "learning_rate": 0.1, "batch_size": 4},
      "strict_checkpoints": True})
  run = lambda: experiment._train_or_restore(str(tmp_path), config, "original", init_fn,
                                             apply_fn, data, jax.random.key(0))
  run()
  (record,) = (tmp_path / "checkpoints").glob("original-*.json")
  record.unlink()
  with pytest.raises(checkpoints.CorruptCheckpointError, match="is missing"):
    run()


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
