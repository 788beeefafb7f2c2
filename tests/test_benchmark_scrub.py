"""benchmarks.scrub_first_max_pass: the first max pass moves the weights by weight decay alone."""

import contextlib
import io

import pytest

from benchmarks import scrub_first_max_pass


def test_first_max_pass_moves_the_cnn_by_the_decay_recursion():
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    rel, decay_only, kl_after = scrub_first_max_pass.main(["--steps=3", "--train_steps=5"])
  # The closed form of a zero-gradient pass: 1 - c_3 of the momentum recursion.
  c, v = 1.0, 0.0
  for _ in range(3):
    v = 0.9 * v + 5e-4 * c
    c -= 5e-4 * v
  assert decay_only == pytest.approx(1 - c, rel=1e-12)
  assert rel == pytest.approx(decay_only, rel=1e-2)
  assert kl_after < 1e-5
  assert out.getvalue().strip().splitlines()[-1].startswith("scrub_first_max_pass steps=3 ")
