"""benchmarks.rcd_speed runs end to end and ends with its machine-readable line."""

import contextlib
import io
import re

import pytest

from benchmarks import rcd_speed

pytestmark = pytest.mark.slow


def test_quick_benchmark_prints_the_ratio_line():
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    rows = rcd_speed.main(["--quick", "--ks=1,2", "--steps=2", "--relearn-size=64"])
  lines = out.getvalue().strip().splitlines()
  assert re.fullmatch(r"rcd_speed K=2 vmap_vs_loop=\d+\.\d\d vmap_vs_torch=(\d+\.\d\d|n/a)",
                      lines[-1]), lines[-1]
  assert {k for _, k in rows} == {1, 2}
  assert all(v > 0 for v in rows.values())
