"""benchmarks.train_step runs end to end; its PyTorch twins compute the same models."""

import contextlib
import io
import re

import jax
import numpy as np
import pytest

from benchmarks import train_step
from ieu_jax import models


@pytest.mark.slow
def test_quick_benchmark_prints_the_ratio_line():
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    rows = train_step.main(["--quick", "--models=cnn16x32,mlp", "--repeats=1"])
  last = out.getvalue().strip().splitlines()[-1]
  assert re.fullmatch(r"train_step cnn16x32 b128 jax_ms=\d+\.\d\d torch_ms=(\d+\.\d\d|nan)"
                      r" ratio=(\d+\.\d\d|n/a)", last), last
  assert set(rows) == {"cnn16x32", "mlp"} and all(v[0] > 0 for v in rows.values())


@pytest.mark.parametrize("name", ["cnn", pytest.param("resnet18", marks=pytest.mark.slow)])
def test_torch_twins_compute_the_library_models(name):
  pytest.importorskip("torch")
  from benchmarks import _torch_models  # pylint: disable=g-import-not-at-top

  shape = (28, 28, 1) if name == "cnn" else (16, 16, 3)
  kwargs = {"features": (4, 8), "hidden": 16} if name == "cnn" else {"width": 8}
  init_fn, apply_fn = models.build_model(name, 10, shape, **kwargs)
  params = init_fn(jax.random.key(0))
  if name == "cnn":
    net = _torch_models.small_cnn(params, (4, 8), 16, 10)
  else:
    net = _torch_models.resnet18(params, width=8)
  x = np.asarray(jax.random.normal(jax.random.key(1), (3, *shape)))
  assert _torch_models.max_logit_difference(net, apply_fn, params, x) < 1e-4
