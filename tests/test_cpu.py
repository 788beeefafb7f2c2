"""configure_cpu: sets the flag before JAX starts, respects the user's, refuses after."""

import os
import subprocess
import sys

import pytest

from ieu_jax import _cpu

_SCRIPT = """
import os, sys
import ieu_jax
if sys.argv[1] == "late":
  import jax.numpy as jnp
  jnp.ones(2).block_until_ready()  # starts the backend
print(ieu_jax.configure_cpu(), os.environ.get("XLA_FLAGS", ""), sep="|")
"""


def _run(mode: str, xla_flags: str | None) -> tuple[str, str, str]:
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  if xla_flags is not None:
    env["XLA_FLAGS"] = xla_flags
  proc = subprocess.run([sys.executable, "-c", _SCRIPT, mode], env=env, capture_output=True,
                        text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-2000:]
  ok, flags = proc.stdout.strip().splitlines()[-1].split("|")
  return ok, flags, proc.stderr


@pytest.mark.skipif(_cpu._jaxlib_version() not in _cpu._KNOWN_JAXLIB,
                    reason="a jaxlib whose YNNPACK flag values are not known")
def test_configure_cpu_sets_the_flag_before_jax_starts_and_keeps_other_flags():
  ok, flags, _ = _run("early", "--xla_force_host_platform_device_count=2")
  assert ok == "True"
  assert flags.split() == ["--xla_force_host_platform_device_count=2", _cpu.CPU_FLAG]


def test_configure_cpu_leaves_a_users_own_choice_alone():
  own = "--xla_cpu_experimental_ynn_fusion_type=dot"
  ok, flags, _ = _run("early", own)
  assert ok == "False" and flags == own


def test_configure_cpu_after_jax_started_changes_nothing_and_says_so():
  ok, flags, err = _run("late", None)
  if _cpu._jaxlib_version() in _cpu._KNOWN_JAXLIB:
    assert "already started" in err
  assert ok == "False" and flags == ""
