"""Generative unlearning binary: train a conditional DDPM, forget a class, evaluate.

  python -m experiments.generative --config=experiments/configs/ddpm_fashion_mnist.py \
      --workdir=runs/ddpm [--config.methods=FT,GA-plain,SalUn,SalUn-frozen,IEU]

Writes ``results.json``, ``results.md`` and ``samples.png`` to the workdir.
With ``--mode=search`` it instead tries the candidates of ``config.search``
for every method (models cached in the same workdir are reused) and writes
``search.json`` and ``search.md``: the chosen settings to copy into the config.
With ``--seeds=0,1,2`` it runs once per seed (``workdir/seed<s>``, finished runs
reused) and writes ``summary.json`` and ``summary.md``.
"""

from absl import flags

from ieu_jax import generative
from experiments import entry

_CONFIG = entry.config_flag()
_WORKDIR = entry.workdir_flag()
_MODE = flags.DEFINE_enum("mode", "run", ["run", "search"],
                          "run: the experiment; search: choose hyperparameters.")
_SEEDS = flags.DEFINE_list("seeds", [], "Run once per seed in workdir/seed<s> and write"
                           " summary.md (mean ± std); empty: one run with config.seed.")


def main():
  if _MODE.value == "search":
    generative.search_generative(_CONFIG.value, _WORKDIR.value)
  elif _SEEDS.value:
    generative.run_seeds(_CONFIG.value, _WORKDIR.value, _SEEDS.value)
  else:
    generative.run_generative(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  entry.run(main)
