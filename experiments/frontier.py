"""Every method's trade-off curve: a grid of settings per method, scenario and seed.

  python -m experiments.frontier --config=experiments/configs/fashion_mnist.py:small \
      --workdir=runs/frontier_small [--scenarios=random10,class0] [--seeds=0]

  python -m experiments.frontier --config=experiments/configs/fashion_mnist.py:frontier \
      --workdir=runs/frontier --results_doc=docs/results.md

Writes ``frontier.json``, ``frontier.md`` and ``frontier_<scenario>.png`` to the
workdir (``ieu_jax/frontier_run.py``); the scenarios, seeds, budgets and grids are
``config.frontier``'s unless the flags say otherwise. A rerun reuses every finished
method of every cell.
"""

from absl import flags

from ieu_jax import comparison
from ieu_jax import frontier_run
from experiments import entry

_CONFIG = entry.config_flag()
_WORKDIR = entry.workdir_flag()
_SCENARIOS = flags.DEFINE_list("scenarios", None,
                               f"Scenarios, of {sorted(comparison.SCENARIOS)} (default: the config's).")
_SEEDS = flags.DEFINE_list("seeds", None, "Seeds (default: the config's).")
_RESULTS_DOC = flags.DEFINE_string(
    "results_doc", None, "A results page whose frontier block to write (docs/results.md).")


def main():
  seeds = None if _SEEDS.value is None else [int(s) for s in _SEEDS.value]
  frontier_run.compilation_cache(_WORKDIR.value)
  out = frontier_run.run(_CONFIG.value, _WORKDIR.value, _SCENARIOS.value, seeds,
                         results_doc=_RESULTS_DOC.value)
  print(f"wrote frontier.json, frontier.md and {len({r['scenario'] for r in out['runs']})}"
        f" figure(s) to {_WORKDIR.value} in {out['wall_time_s'] / 60:.1f} min")


if __name__ == "__main__":
  entry.run(main)
