"""Every method on every scenario and seed; writes the results document.

  python -m experiments.compare --config=experiments/configs/fashion_mnist.py:results \
      --workdir=runs/compare --scenarios=random10,random30,random50,class0,mislabel10 --seeds=0,1,2 \
      --results_doc=docs/results.md
"""

import sys

from absl import flags

from ieu_jax import comparison
from experiments import entry

_CONFIG = entry.config_flag()
_WORKDIR = entry.workdir_flag()
_SCENARIOS = flags.DEFINE_list(
    "scenarios", ["random10", "random30", "random50", "class0", "mislabel10"],
    f"Scenarios, of {sorted(comparison.SCENARIOS)}.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds.")
_RESULTS_DOC = flags.DEFINE_string("results_doc", None, "Where to write the results page.")


def main():
  seeds = [int(s) for s in _SEEDS.value]
  runs = comparison.sweep(_CONFIG.value, _WORKDIR.value, _SCENARIOS.value, seeds)
  comparison.write_report(runs, _WORKDIR.value, results_doc=_RESULTS_DOC.value,
                          command="python -m experiments.compare " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
  entry.run(main)
