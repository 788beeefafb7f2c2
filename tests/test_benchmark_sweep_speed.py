"""benchmarks.sweep_speed runs end to end and ends with its machine-readable line."""

import contextlib
import io
import re

import pytest

from benchmarks import sweep_speed

pytestmark = pytest.mark.slow


def test_quick_benchmark_prints_the_ratio_line():
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    times = sweep_speed.main(["--quick", "--layouts=vmap"])
  lines = out.getvalue().strip().splitlines()
  assert re.fullmatch(r"sweep_speed G=2 one_program_vs_loop=\d+\.\d\d", lines[-1]), lines[-1]
  assert set(times) == {"loop", "sweep/vmap"} and all(v > 0 for v in times.values())


def test_the_grid_crosses_every_value_once():
  settings = sweep_speed.grid("IEU", 16, steps=5)
  keys = {(h.learning_rate, h.weight_decay, h.noise_std, h.retain_scale) for h in settings}
  assert len(keys) == 16 and all(h.steps == 5 for h in settings)
  ft = sweep_speed.grid("FT", 16, steps=5)
  assert len({(h.learning_rate, h.momentum, h.weight_decay) for h in ft}) == 16
  for method in ("IEU", "FT"):  # a repeated setting would be swept once: refused
    with pytest.raises(ValueError, match=f"--g=17: {method}'s grid has 16 distinct settings"):
      sweep_speed.grid(method, 17, steps=5)
