"""The one output writer: atomic, process 0 only; the markdown table and number formats."""

import json
import math
import os
import threading

import numpy as np
import pytest

from ieu_jax import outputs


def test_write_json_is_atomic_and_json_safe(tmp_path, monkeypatch):
  path = str(tmp_path / "sub" / "results.json")
  assert outputs.write_json(path, {"a": np.float32(1.5), "b": math.nan, "c": np.arange(2)})
  assert json.load(open(path)) == {"a": 1.5, "b": None, "c": [0, 1]}
  # A write that fails halfway leaves the previous file intact and no temporary file.
  monkeypatch.setattr(json, "dumps", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("x")))
  with pytest.raises(RuntimeError):
    outputs.write_json(path, {"a": 2})
  assert json.load(open(path))["a"] == 1.5
  assert os.listdir(tmp_path / "sub") == ["results.json"]


def test_only_process_zero_writes(tmp_path, monkeypatch):
  monkeypatch.setattr(outputs.jax, "process_index", lambda: 1)
  assert not outputs.write_text(str(tmp_path / "x.md"), "hi")
  assert not os.path.exists(tmp_path / "x.md")


def test_table_and_formats():
  table = outputs.markdown_table(["a", "b"], [["1", outputs.fmt(math.nan)], ["x"]])
  assert table == "| a | b |\n|---|---|\n| 1 | n/a |\n| x |"
  assert outputs.fmt(1.234, 1) == "1.2" and outputs.fmt(None) == "n/a"
  assert outputs.fmt_mean_std(1.0, 0.25) == "1.00 ± 0.25"
  assert outputs.fmt_mean_std(1.0, math.nan, 1) == "1.0"
  with pytest.raises(ValueError, match="3 cells under a header of 2"):
    outputs.markdown_table(["a", "b"], [[1, 2, 3]])


def test_concurrent_writers_of_one_path_never_share_a_temporary_file(tmp_path):
  """Threads writing one path many times: no error, the file is one write, whole."""
  path = str(tmp_path / "results.json")
  writes = {i: {"writer": i, "payload": [i] * 2000} for i in range(8)}
  errors = []

  def writer(i):
    try:
      for _ in range(40):
        outputs.write_json(path, writes[i])
    except Exception as e:  # pylint: disable=broad-except
      errors.append(e)

  threads = [threading.Thread(target=writer, args=(i,)) for i in writes]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert not errors
  final = json.load(open(path))
  assert final == writes[final["writer"]]
  assert os.listdir(tmp_path) == ["results.json"]  # no temporary file left


def test_written_files_have_the_umask_mode(tmp_path):
  path = tmp_path / "x.md"
  outputs.write_text(str(path), "hi")
  assert os.stat(path).st_mode & 0o777 == outputs._FILE_MODE


def test_rcd_steps_say_when_the_mean_is_a_lower_bound():
  assert outputs.fmt_steps({"steps_mean": 12.25, "steps_std": 1.5, "lower_bound": False}) == (
      "12.2 ± 1.5")
  assert outputs.fmt_steps({"steps_mean": 40.0, "steps_std": 0.0, "lower_bound": True}) == (
      ">= 40.0 ± 0.0")
  assert outputs.fmt_steps({"steps_mean": None, "steps_std": None, "lower_bound": True}) == "n/a"
