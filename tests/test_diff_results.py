"""scripts/diff_results.py: what a refactor's before/after diff reports."""

import importlib.util
import json
import os

_PATH = os.path.join(os.path.dirname(__file__), "..", "scripts", "diff_results.py")
_spec = importlib.util.spec_from_file_location("diff_results", _PATH)
diff_results = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(diff_results)


def test_diff_reports_changed_added_and_removed_values_but_not_timings(tmp_path, capsys):
  old = {"a": [1.0, {"b": 2}], "wall_time_s": 3.0, "gone": 1, "rcd": {"steps_mean": 4.0}}
  new = {"a": [1.0, {"b": 2.5}], "wall_time_s": 9.0, "added": 1, "rcd": {"steps_mean": 4.0}}
  assert list(diff_results.diff(old, new)) == [
      ("/a[1]/b", 2, 2.5), ("/added", "<absent>", 1), ("/gone", 1, "<absent>")]
  for name, obj in (("old.json", old), ("new.json", new)):
    (tmp_path / name).write_text(json.dumps(obj))
  assert diff_results.main(["x", str(tmp_path / "old.json"), str(tmp_path / "new.json")]) == 1
  assert "3 differences (1 changed values, 2 keys added or removed)" in capsys.readouterr().out
  new["a"][1]["b"] = 2
  (tmp_path / "new.json").write_text(json.dumps(new))
  assert diff_results.main(["x", str(tmp_path / "old.json"), str(tmp_path / "new.json")]) == 0
