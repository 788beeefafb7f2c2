"""benchmarks.shadow_speed runs end to end and ends with its machine-readable line."""

import contextlib
import io
import re

import pytest

from benchmarks import shadow_speed

pytestmark = pytest.mark.slow


def test_quick_benchmark_prints_the_ratio_line():
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    times = shadow_speed.main(["--quick"])
  lines = out.getvalue().strip().splitlines()
  assert lines[0].startswith("# python -m benchmarks.shadow_speed --n=2 --examples=32 --epochs=1")
  assert lines[1].startswith("# backend ")
  assert re.fullmatch(r"shadow_speed N=2 one_program_vs_loop=\d+\.\d\d", lines[-1]), lines[-1]
  ratio = float(lines[-1].rsplit("=", 1)[1])
  assert ratio == pytest.approx(times["loop"] / times["one_program"], abs=0.006)
  assert set(times) == {"loop", "one_program"} and all(v > 0 for v in times.values())
