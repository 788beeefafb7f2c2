"""Which XLA:CPU fusions YNNPACK runs: the one process-wide setting that ieu-jax tunes.

XLA:CPU (jaxlib 0.10) hands every convolution with more than 16 input or output
features, and many elementwise fusions, to YNNPACK. For this project's CPU
models, XLA's own paths are faster on the CPUs we measured: Eigen for the
convolutions of the small CNN (3x3, 16-64 features), and XLA's loop fusions for
the UNet's elementwise work (normalisation, swish, the conditioning shift).
ResNet-18 alone prefers YNNPACK's elementwise fusions. ``benchmarks/train_step.py``
measures every model, and ``docs/performance.md`` has the figures.

The choice is an XLA flag, read once when JAX starts its CPU backend, so it
cannot be a property of a model or a step: :func:`configure_cpu` appends it to
``XLA_FLAGS`` before that happens. The experiment binaries, the benchmarks and the
tests call it first thing; a library user calls it before the first JAX
computation, or not at all (everything stays correct, only slower on CPU).
YNNPACK keeps the dots and reductions.

Both paths compute the same functions; they may differ in float32 rounding (the
order of a sum, a transcendental function's last bit), never in anything larger.
"""

from __future__ import annotations

import os

from absl import logging

__all__ = ["CPU_FLAG", "configure_cpu"]

# jaxlib 0.10's YNNPACK fusion types without individual convolutions and
# elementwise fusions.
CPU_FLAG = "--xla_cpu_experimental_ynn_fusion_type=dot,reduce,individual_dot"
_FLAG_NAME = "xla_cpu_experimental_ynn_fusion_type"
# The jaxlib releases whose XLA knows the flag and its values (an unknown flag in
# XLA_FLAGS aborts the process, so other releases are left alone).
_KNOWN_JAXLIB = ((0, 10),)


def _jaxlib_version() -> tuple[int, int]:
  import jaxlib  # pylint: disable=g-import-not-at-top

  major, minor = jaxlib.__version__.split(".")[:2]
  return int(major), int(minor)


def _backends_started() -> bool:
  from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top

  return xla_bridge.backends_are_initialized()


def configure_cpu() -> bool:
  """Keeps XLA:CPU convolutions and elementwise fusions out of YNNPACK (faster here).

  Call it before the first JAX computation. It changes nothing when ``XLA_FLAGS``
  already sets the YNNPACK fusion types (the user's choice wins), when JAX's
  backends have already started (then it logs a warning: the flag would be
  ignored), or when the installed jaxlib is not one whose flag values are known.

  Returns:
    True when the flag is in effect for this process's CPU backend.
  """
  current = os.environ.get("XLA_FLAGS", "")
  if _FLAG_NAME in current:
    return CPU_FLAG in current.split()
  if _jaxlib_version() not in _KNOWN_JAXLIB:
    logging.info("configure_cpu: jaxlib %s.%s is not one whose YNNPACK flag is known;"
                 " leaving XLA_FLAGS as it is.", *_jaxlib_version())
    return False
  if _backends_started():
    logging.warning("configure_cpu: JAX has already started its backends; call it before"
                    " the first JAX computation for the faster CPU convolutions.")
    return False
  os.environ["XLA_FLAGS"] = f"{current} {CPU_FLAG}".strip()
  return True
