"""A sweep split over several devices equals the sweep on one (4 fake CPU devices)."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

WORKER = pathlib.Path(__file__).with_name("sweep_sharding_worker.py")


@pytest.mark.slow
def test_four_devices_equal_one_device(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = " ".join(
      [f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f]
      + ["--xla_force_host_platform_device_count=4"])
  out = tmp_path / "sweep.npz"
  proc = subprocess.run([sys.executable, str(WORKER), str(out)], env=env, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-4000:]
  npz = np.load(out)
  assert int(npz["one.shards"]) == 1 and int(npz["four.shards"]) == 4
  np.testing.assert_array_equal(npz["four.diverged"], npz["one.diverged"])
  # The learning rate 3e3 diverges, on both budgets; the others do not.
  np.testing.assert_array_equal(npz["one.diverged"], [False] * 4 + [True] + [False] * 4 + [True])
  leaves = sorted(k for k in npz.files if k.startswith("one.leaf"))
  assert leaves
  for k in leaves:
    one, four = npz[k], npz["four" + k[3:]]
    assert one.shape[0] == 10 and four.shape == one.shape
    ok = ~npz["one.diverged"]
    np.testing.assert_allclose(four[ok], one[ok], rtol=1e-5, atol=1e-6, err_msg=k)
    assert not np.allclose(one[0], one[1])  # the settings differ
  # Shadow models (their own data, keys and teachers): 3 copies, padded to 4.
  np.testing.assert_array_equal(npz["four.scrub_diverged"], npz["one.scrub_diverged"])
  for what in ("shadow", "scrub"):
    keys = sorted(k for k in npz.files if k.startswith(f"one.{what}") and "diverged" not in k)
    assert keys, what
    for k in keys:
      one, four = npz[k], npz["four" + k[3:]]
      assert one.shape[0] == 3 and four.shape == one.shape, k
      np.testing.assert_allclose(four, one, rtol=1e-5, atol=1e-6, err_msg=k)
      assert not np.allclose(one[0], one[1]), k  # the copies differ
