"""U-LiRA and the NeurIPS 2023 challenge score over N shadow copies of the model.

  python -m experiments.ulira --config=experiments/configs/fashion_mnist.py:small \
      --workdir=runs/ulira_small

  python -m experiments.ulira --config=experiments/configs/fashion_mnist.py \
      --workdir=runs/ulira --results_doc=docs/results.md

Writes ``ulira.json``, ``ulira.md`` and ``ulira.png`` to the workdir
(``ieu_jax/ulira_run.py``); the copies, the population, the forget sets and the
methods are ``config.ulira``'s. A rerun restores every cached copy. With
``--results_doc``, that page's U-LiRA block is written too.
"""

from absl import flags

from ieu_jax import frontier_run
from ieu_jax import ulira_run
from experiments import entry

_CONFIG = entry.config_flag()
_WORKDIR = entry.workdir_flag()
_RESULTS_DOC = flags.DEFINE_string(
    "results_doc", None, "A results page whose U-LiRA block to write (docs/results.md).")


def main():
  frontier_run.compilation_cache(_WORKDIR.value)
  out = ulira_run.run(_CONFIG.value, _WORKDIR.value, results_doc=_RESULTS_DOC.value)
  print(f"wrote ulira.json, ulira.md and ulira.png to {_WORKDIR.value} in"
        f" {out['wall_time_s'] / 60:.1f} min")


if __name__ == "__main__":
  entry.run(main)
