r"""Checks the convergence bounds of ``ieu_jax.theory`` against real trajectories.

Usage::

  python -m experiments.theory_check --workdir=/tmp/th [--quick]

Runs full-batch IEU and gradient-descent relearning in float64 on quadratic and
logistic-regression problems over a grid of settings on both sides of each
theorem's conditions; writes ``theory.json`` and ``theorem{1,2,3}.png`` to the
workdir. Exits 0 only when every bound whose conditions hold is respected.
"""

from absl import app
from absl import flags

from ieu_jax.theory import check

_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.",
                               required=True)
_QUICK = flags.DEFINE_bool("quick", False,
                           "Fewer settings, steps and Monte-Carlo runs.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  result = check.run_theory_check(_WORKDIR.value, quick=_QUICK.value)
  print(check.format_summary(result))
  return 0 if result["all_respected"] else 1


if __name__ == "__main__":
  app.run(main)
