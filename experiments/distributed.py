"""Multi-host start-up shared by the experiment binaries."""

import os

import jax
from absl import logging


def maybe_initialize() -> None:
  """Initialises ``jax.distributed`` when the environment describes several processes.

  Set ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` (or
  run under a cluster JAX detects by itself, e.g. SLURM or a TPU pod); on a
  single host nothing happens.
  """
  if int(os.environ.get("JAX_NUM_PROCESSES", "1")) > 1 or os.environ.get("JAX_COORDINATOR_ADDRESS"):
    # JAX reads JAX_COORDINATOR_ADDRESS itself, but not the other two.
    kwargs = {}
    if "JAX_NUM_PROCESSES" in os.environ:
      kwargs["num_processes"] = int(os.environ["JAX_NUM_PROCESSES"])
    if "JAX_PROCESS_ID" in os.environ:
      kwargs["process_id"] = int(os.environ["JAX_PROCESS_ID"])
    jax.distributed.initialize(**kwargs)
    logging.info("jax.distributed: process %d of %d", jax.process_index(), jax.process_count())
