"""One workdir, one run: checked writable before any work, and locked while a run lasts."""

import json
import logging
import os
import socket
import subprocess
import sys
import time

import jax
import pytest

from experiments.configs import fashion_mnist
from ieu_jax import comparison
from ieu_jax import experiment
from ieu_jax import pipeline
from ieu_jax.generative import experiment as generative
from ieu_jax.theory import check

_ENTRY_POINTS = {
    "run_experiment": lambda w: experiment.run_experiment(None, w),
    "search": lambda w: comparison.search(None, w),
    "sweep": lambda w: comparison.sweep(None, w, ["random10"], [0]),
    "run_generative": lambda w: generative.run_generative(None, w),
    "search_generative": lambda w: generative.search_generative(None, w),
    "run_seeds": lambda w: generative.run_seeds(None, w, [0]),
    "run_theory_check": lambda w: check.run_theory_check(w, quick=True),
}


def _lock_as(workdir, pid, host=None):
  """Writes ``workdir/.lock`` as if process ``pid`` held it."""
  os.makedirs(workdir, exist_ok=True)
  record = {"pid": pid, "host": host or socket.gethostname(), "started": "2020-01-01T00:00:00",
            "token": "other"}
  with open(os.path.join(workdir, pipeline.LOCK_NAME), "w") as f:
    json.dump(record, f)
  return record


def _exited_pid():
  proc = subprocess.Popen(["true"])
  proc.wait()
  return proc.pid


def test_a_workdir_under_a_file_is_refused_at_once(tmp_path):
  (tmp_path / "file").write_text("x")
  path = str(tmp_path / "file" / "run")
  calls = []
  run = pipeline.locks_workdir(lambda workdir: calls.append(workdir))
  with pytest.raises(pipeline.WorkdirNotWritable) as e:
    run(path)
  assert str(e.value) == f"workdir {path} is not writable: {tmp_path / 'file'} is not a directory"
  assert not calls  # refused before the run's first line
  with pytest.raises(pipeline.WorkdirNotWritable, match="is not a directory$"):
    run(str(tmp_path / "file"))  # the workdir itself a file


def test_a_workdir_that_cannot_be_written_is_refused_at_once(tmp_path, monkeypatch):
  path = str(tmp_path / "run")

  def refuse(*args, **kwargs):
    raise PermissionError(13, "Permission denied")

  monkeypatch.setattr(os, "open", refuse)  # as a read-only directory would
  calls = []
  with pytest.raises(pipeline.WorkdirNotWritable) as e:
    pipeline.locks_workdir(lambda workdir: calls.append(workdir))(path)
  assert str(e.value) == f"workdir {path} is not writable: Permission denied"
  assert "\n" not in str(e.value) and not calls
  monkeypatch.undo()
  assert os.listdir(path) == []  # no probe and no lock file left


def test_a_second_holder_is_told_the_first_ones_pid(tmp_path):
  """A workdir held by another process is refused, naming it; freed when it exits."""
  path = str(tmp_path / "run")
  holder = subprocess.Popen(
      [sys.executable, "-c",
       "import sys\nfrom ieu_jax import pipeline\n"
       f"with pipeline.workdir({path!r}):\n  print('held', flush=True)\n  sys.stdin.read()\n"],
      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline() == "held\n"
    lockfile = os.path.join(path, pipeline.LOCK_NAME)
    with pytest.raises(pipeline.WorkdirInUse) as e:
      with pipeline.workdir(path):
        pass
    started = json.load(open(lockfile))["started"]
    assert str(e.value) == (
        f"workdir {path} is in use by process {holder.pid} on {socket.gethostname()}"
        f" (started {started}); wait for it or remove {lockfile} if it is gone")
    assert e.value.holder["pid"] == holder.pid and e.value.lockfile == lockfile
  finally:
    holder.communicate("")
  assert holder.returncode == 0 and not os.path.exists(lockfile)  # released at exit
  with pipeline.workdir(path):
    pass


def test_one_process_does_not_hold_a_workdir_twice(tmp_path):
  with pipeline.workdir(str(tmp_path)):
    with pytest.raises(pipeline.WorkdirInUse, match=f"in use by process {os.getpid()} "):
      with pipeline.workdir(str(tmp_path)):
        pass
    with pipeline.workdir(str(tmp_path / "scenario" / "seed0")):  # a nested run: its own lock
      assert os.path.exists(tmp_path / "scenario" / "seed0" / pipeline.LOCK_NAME)
    assert os.path.exists(tmp_path / pipeline.LOCK_NAME)


def test_a_stale_lock_is_taken_over_with_a_warning(tmp_path, caplog):
  pid = _exited_pid()
  _lock_as(str(tmp_path), pid)
  with caplog.at_level(logging.WARNING):
    with pipeline.workdir(str(tmp_path)):
      assert json.load(open(tmp_path / pipeline.LOCK_NAME))["pid"] == os.getpid()
  assert f"taking over the lock of process {pid} on {socket.gethostname()}" in caplog.text
  assert not os.path.exists(tmp_path / pipeline.LOCK_NAME)


def test_locks_that_cannot_be_judged_stale_are_kept(tmp_path):
  _lock_as(str(tmp_path), _exited_pid(), host="another-host")  # its pids are not ours
  with pytest.raises(pipeline.WorkdirInUse, match="on another-host"):
    with pipeline.workdir(str(tmp_path)):
      pass
  (tmp_path / pipeline.LOCK_NAME).write_text("")  # a holder between creating and writing it
  with pytest.raises(pipeline.WorkdirInUse, match="whose lock file .* cannot be read"):
    with pipeline.workdir(str(tmp_path)):
      pass
  assert (tmp_path / pipeline.LOCK_NAME).read_text() == ""


def test_the_lock_is_released_after_the_block_and_after_an_exception(tmp_path):
  lockfile = tmp_path / pipeline.LOCK_NAME
  with pipeline.workdir(str(tmp_path)) as path:
    assert path == str(tmp_path)
    assert json.load(open(lockfile))["pid"] == os.getpid()
  assert not lockfile.exists()
  with pytest.raises(RuntimeError, match="boom"):
    with pipeline.workdir(str(tmp_path)):
      raise RuntimeError("boom")
  assert not lockfile.exists()
  with pipeline.workdir(str(tmp_path)):  # free again
    pass
  assert os.listdir(tmp_path) == []


def test_other_processes_neither_check_nor_lock(tmp_path, monkeypatch):
  record = _lock_as(str(tmp_path), os.getppid())
  monkeypatch.setattr(jax, "process_index", lambda: 1)
  with pipeline.workdir(str(tmp_path)):
    pass
  with pipeline.workdir(str(tmp_path / "file" / "run")):  # not created by process 1
    pass
  assert json.load(open(tmp_path / pipeline.LOCK_NAME)) == record
  assert os.listdir(tmp_path) == [pipeline.LOCK_NAME]


@pytest.mark.parametrize("name", sorted(_ENTRY_POINTS))
def test_every_entry_point_refuses_a_locked_workdir_first(tmp_path, name):
  """Refused before the entry point reads its config (None here) or writes a file."""
  record = _lock_as(str(tmp_path), os.getppid())  # alive: the test runner's parent
  with pytest.raises(pipeline.WorkdirInUse, match=f"in use by process {os.getppid()} "):
    _ENTRY_POINTS[name](str(tmp_path))
  assert os.listdir(tmp_path) == [pipeline.LOCK_NAME]
  assert json.load(open(tmp_path / pipeline.LOCK_NAME)) == record


def test_run_experiment_refuses_a_locked_workdir_before_any_work(tmp_path):
  config = fashion_mnist.get_config("small")
  record = _lock_as(str(tmp_path), os.getppid())
  start = time.perf_counter()
  with pytest.raises(pipeline.WorkdirInUse) as e:
    experiment.run_experiment(config, str(tmp_path))
  assert time.perf_counter() - start < 5.0
  assert str(e.value).startswith(f"workdir {tmp_path} is in use by process {os.getppid()} on ")
  assert not (tmp_path / "checkpoints").exists()
  assert os.listdir(tmp_path) == [pipeline.LOCK_NAME]
  assert json.load(open(tmp_path / pipeline.LOCK_NAME)) == record
