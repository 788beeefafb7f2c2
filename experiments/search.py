"""Bounded hyperparameter search on the validation split (same budget for every method).

  python -m experiments.search --config=experiments/configs/fashion_mnist.py:results \
      --workdir=runs/search --config.methods=FT,RL,GA,GA-plain,IEU

Writes ``workdir/search.json``; paste the chosen values into the config.
"""

import json

from ieu_jax import comparison
from experiments import entry

_CONFIG = entry.config_flag()
_WORKDIR = entry.workdir_flag()


def main():
  out = comparison.search(_CONFIG.value, _WORKDIR.value)
  for name, m in out["methods"].items():
    print(f"{name}: {json.dumps(m['chosen'])}  score={m['score']:.3f}")


if __name__ == "__main__":
  entry.run(main)
