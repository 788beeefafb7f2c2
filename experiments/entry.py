"""What every experiment binary shares: its flags, its start-up, its entry point.

A binary is its flags and a ``main()`` over library functions::

  _CONFIG = entry.config_flag()
  _WORKDIR = entry.workdir_flag()

  def main():
    ieu_jax.experiment.run_experiment(_CONFIG.value, _WORKDIR.value)

  if __name__ == "__main__":
    entry.run(main)

:func:`run` refuses stray arguments, sets JAX up (:func:`maybe_initialize`), logs
the config (at debug level: results files record it) and returns ``main()``'s exit
status. A bad input (a value the library
refuses, a missing file, an unwritable directory) ends the binary with one line,
``error: <what is wrong>``, and exit status 1; ``--traceback`` shows the whole
traceback instead.
"""

import os
import sys
from typing import Callable

import jax
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

import ieu_jax


def config_flag():
  """``--config``: an ml_collections config file (``path.py[:variant]``), required."""
  return config_flags.DEFINE_config_file("config", None, "Experiment config.", lock_config=True)


def workdir_flag(help_text: str = "Output directory."):
  """``--workdir``, required."""
  return flags.DEFINE_string("workdir", None, help_text, required=True)


_TRACEBACK = flags.DEFINE_bool("traceback", False,
                               "On a bad input, show the traceback, not one line.")

# What a user's input can raise: a refused value, a missing or unwritable file, a
# NaN while training. Anything else is a bug and keeps its traceback.
_USER_ERRORS = (ValueError, TypeError, OSError, FloatingPointError)


def run(main: Callable[[], int | None]) -> None:
  """``app.run`` of a binary's ``main()`` after :func:`maybe_initialize`.

  When the binary defines ``--config`` it is required and logged.
  """
  has_config = "config" in flags.FLAGS

  def wrapped(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
      maybe_initialize()
      if has_config:  # results.json records it too; --verbosity=1 shows it here
        logging.debug("config:\n%s", flags.FLAGS["config"].value)
      return main()
    except _USER_ERRORS as e:
      if _TRACEBACK.value:
        raise
      print(f"error: {e}", file=sys.stderr)
      return 1

  if has_config:
    flags.mark_flags_as_required(["config"])
  app.run(wrapped)


def maybe_initialize() -> None:
  """Sets up JAX before its first computation: :func:`ieu_jax.configure_cpu`, then hosts.

  ``jax.distributed`` is initialised when the environment describes several
  processes: set ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and
  ``JAX_PROCESS_ID`` (or run under a cluster JAX detects by itself, e.g. SLURM or
  a TPU pod); on a single host nothing happens.
  """
  if ieu_jax.configure_cpu():
    logging.info("XLA:CPU: convolutions and elementwise fusions outside YNNPACK (%s)",
                 os.environ.get("XLA_FLAGS", ""))
  if int(os.environ.get("JAX_NUM_PROCESSES", "1")) > 1 or os.environ.get("JAX_COORDINATOR_ADDRESS"):
    # JAX reads JAX_COORDINATOR_ADDRESS itself, but not the other two.
    kwargs = {}
    if "JAX_NUM_PROCESSES" in os.environ:
      kwargs["num_processes"] = int(os.environ["JAX_NUM_PROCESSES"])
    if "JAX_PROCESS_ID" in os.environ:
      kwargs["process_id"] = int(os.environ["JAX_PROCESS_ID"])
    jax.distributed.initialize(**kwargs)
    logging.info("jax.distributed: process %d of %d", jax.process_index(), jax.process_count())
