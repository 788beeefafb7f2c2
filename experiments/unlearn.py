"""Unlearning experiment binary: train, unlearn with every method, evaluate, report.

  python -m experiments.unlearn --config=experiments/configs/fashion_mnist.py \
      --workdir=runs/fmnist --config.methods=Retrain,FT,GA,IEU
"""

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from ieu_jax import experiment
from experiments import distributed

_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config.", lock_config=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  distributed.maybe_initialize()
  logging.info("config:\n%s", _CONFIG.value)
  experiment.run_experiment(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
