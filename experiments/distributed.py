"""Start-up shared by the experiment binaries: the CPU backend's setting, then hosts."""

import os

import jax
from absl import logging

import ieu_jax


def maybe_initialize() -> None:
  """Sets up JAX before its first computation: :func:`ieu_jax.configure_cpu`, then hosts.

  ``jax.distributed`` is initialised when the environment describes several
  processes: set ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and
  ``JAX_PROCESS_ID`` (or run under a cluster JAX detects by itself, e.g. SLURM or
  a TPU pod); on a single host nothing happens.
  """
  if ieu_jax.configure_cpu():
    logging.info("XLA:CPU: convolutions and elementwise fusions outside YNNPACK (%s)",
                 ieu_jax.CPU_FLAG)
  if int(os.environ.get("JAX_NUM_PROCESSES", "1")) > 1 or os.environ.get("JAX_COORDINATOR_ADDRESS"):
    # JAX reads JAX_COORDINATOR_ADDRESS itself, but not the other two.
    kwargs = {}
    if "JAX_NUM_PROCESSES" in os.environ:
      kwargs["num_processes"] = int(os.environ["JAX_NUM_PROCESSES"])
    if "JAX_PROCESS_ID" in os.environ:
      kwargs["process_id"] = int(os.environ["JAX_PROCESS_ID"])
    jax.distributed.initialize(**kwargs)
    logging.info("jax.distributed: process %d of %d", jax.process_index(), jax.process_count())
