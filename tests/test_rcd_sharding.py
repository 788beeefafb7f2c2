"""Sharded RCD equals single-device RCD: 8 fake CPU devices, and 2 processes.

Each multi-device run is a fresh subprocess (the device count must be set before
JAX starts; this pytest process already has one device), with a timeout so that
a stuck collective fails the test instead of hanging CI.
"""

import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

import ieu_jax
import rcd_sharding_worker as worker

WORKER = pathlib.Path(__file__).with_name("rcd_sharding_worker.py")
FIELDS = ("loss", "accuracy", "distance")


def _env(devices: int) -> dict[str, str]:
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = " ".join(
      [f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f]
      + [f"--xla_force_host_platform_device_count={devices}"]
  )
  return env


def _assert_same(got: dict, want: dict, where: str):
  np.testing.assert_array_equal(got["first_hit"], want["first_hit"], err_msg=where)
  np.testing.assert_array_equal(got["censored"], want["censored"], err_msg=where)
  np.testing.assert_array_equal(got["learning_rate"], want["learning_rate"], err_msg=where)
  for f in FIELDS:
    np.testing.assert_allclose(got[f], want[f], rtol=1e-5, atol=1e-6, err_msg=f"{where}.{f}")


def _result(npz, prefix: str) -> dict:
  return {k[len(prefix) + 1:]: npz[k] for k in npz.files if k.startswith(prefix + ".")}


@pytest.mark.slow
def test_eight_devices_equal_one_device(tmp_path):
  out = tmp_path / "devices.npz"
  proc = subprocess.run([sys.executable, str(WORKER), "devices", str(out)], env=_env(8),
                        capture_output=True, text=True, timeout=240)
  assert proc.returncode == 0, proc.stderr[-4000:]
  npz = np.load(out)
  cases = sorted({k.rsplit(".", 2)[0] for k in npz.files if ".one." in k})
  assert len(cases) == 6, cases
  for case in cases:
    one, eight = _result(npz, case + ".one"), _result(npz, case + ".eight")
    assert one["first_hit"].shape == ((6,) if case.startswith("linear") else (5,))
    _assert_same(eight, one, case)  # 6 and 5 trajectories: padded to 8, then dropped
    assert len(set(one["first_hit"].tolist())) > 1, f"{case}: a test that can tell"
  _assert_same(_result(npz, "linear.map_scan.adam.one"), _result(npz, "linear.sequential"),
               "sequential")
  probe, every = _result(npz, "linear.map_scan.probe.one"), _result(npz, "linear.map_scan.adam.one")
  np.testing.assert_array_equal(probe["first_hit"], every["first_hit"])


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_equal_one_process(tmp_path):
  """Started as the binaries start (``maybe_initialize`` from the environment)."""
  out = tmp_path / "processes.npz"
  port = _free_port()
  procs = [
      subprocess.Popen([sys.executable, str(WORKER), "process", str(out)],
                       env=dict(_env(2), JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                                JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(i),
                                PYTHONPATH=str(WORKER.parents[1])),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for i in range(2)
  ]
  logs = []
  try:
    for p in procs:
      logs.append(p.communicate(timeout=180)[0])
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  assert all(p.returncode == 0 for p in procs), "\n".join(l[-3000:] for l in logs)
  npz = np.load(out)
  assert int(npz["devices"]) == 4  # 2 processes x 2 devices: 6 trajectories padded to 8
  here = worker.run_linear(ieu_jax.trajectory_mesh(jax.devices()[:1]))
  _assert_same(_result(npz, "linear"), here._asdict(), "2 processes")


def test_mesh_needs_a_sharded_formulation():
  w0, data = worker.linear_problem()
  mesh = ieu_jax.trajectory_mesh()
  with pytest.raises(ValueError, match="runs on one device"):
    ieu_jax.relearn(w0, worker.linear_apply, data, ieu_jax.RelearnProtocol(),
                    jax.random.key(0), formulation="sequential", mesh=mesh)
  bad = jax.sharding.Mesh(np.asarray(jax.devices()), ("batch",))
  with pytest.raises(ValueError, match="expected one axis named 'trajectory'"):
    ieu_jax.relearn(w0, worker.linear_apply, data, ieu_jax.RelearnProtocol(),
                    jax.random.key(0), formulation="map_scan", mesh=bad)
