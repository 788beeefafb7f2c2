"""Bounded hyperparameter search on the validation split (same budget for every method).

  python -m experiments.search --config=experiments/configs/fashion_mnist.py:results \
      --workdir=runs/search --config.methods=FT,RL,GA,IEU

Writes ``workdir/search.json``; paste the chosen values into the config.
"""

import json

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from experiments import distributed
from ieu_jax import protocol

_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config.", lock_config=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  distributed.maybe_initialize()
  out = protocol.search(_CONFIG.value, _WORKDIR.value)
  for name, m in out["methods"].items():
    logging.info("%s: chosen %s (validation Avg. Gap %.2f)", name, json.dumps(m["chosen"]), m["score"])
    print(f"{name}: {json.dumps(m['chosen'])}  score={m['score']:.3f}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
