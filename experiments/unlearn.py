"""Unlearning experiment binary: train, unlearn with every method, evaluate, report.

  python -m experiments.unlearn --config=experiments/configs/fashion_mnist.py \
      --workdir=runs/fmnist --config.methods=Retrain,FT,GA,GA-plain,IEU
"""

from ieu_jax import experiment
from experiments import entry

_CONFIG = entry.config_flag()
_WORKDIR = entry.workdir_flag()


def main():
  experiment.run_experiment(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  entry.run(main)
