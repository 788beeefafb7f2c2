"""Generative unlearning binary: train a conditional DDPM, forget a class, evaluate.

  python -m experiments.generative --config=experiments/configs/ddpm_fashion_mnist.py \
      --workdir=runs/ddpm [--config.methods=FT,GA,SalUn,IEU]

Writes ``results.json``, ``results.md`` and ``samples.png`` to the workdir.
With ``--mode=search`` it instead tries the candidates of ``config.search``
for every method (models cached in the same workdir are reused) and writes
``search.json`` and ``search.md``: the chosen settings to copy into the config.
With ``--seeds=0,1,2`` it runs once per seed (``workdir/seed<s>``, finished runs
reused) and writes ``summary.json`` and ``summary.md``.
"""

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from experiments import distributed
from ieu_jax import generative

_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
_MODE = flags.DEFINE_enum("mode", "run", ["run", "search"],
                          "run: the experiment; search: choose hyperparameters.")
_SEEDS = flags.DEFINE_list("seeds", [], "Run once per seed in workdir/seed<s> and write"
                           " summary.md (mean ± std); empty: one run with config.seed.")
_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config.", lock_config=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  distributed.maybe_initialize()
  logging.info("config:\n%s", _CONFIG.value)
  if _MODE.value == "search":
    generative.search_generative(_CONFIG.value, _WORKDIR.value)
  elif _SEEDS.value:
    generative.run_seeds(_CONFIG.value, _WORKDIR.value, _SEEDS.value)
  else:
    generative.run_generative(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
