"""Every method on every scenario and seed; writes the results document.

  python -m experiments.compare --config=experiments/configs/fashion_mnist.py:results \
      --workdir=runs/compare --scenarios=random10,random30,random50,class0 --seeds=0,1,2 \
      --results_doc=docs/results.md
"""

import json
import os
import shutil
import sys

import jax
from absl import app
from absl import flags
from ml_collections import config_flags

from experiments import distributed
from ieu_jax import _io
from ieu_jax import protocol

_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config.", lock_config=True)
_SCENARIOS = flags.DEFINE_list("scenarios", ["random10", "random30", "random50", "class0"],
                               f"Scenarios, of {sorted(protocol.SCENARIOS)}.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds.")
_RESULTS_DOC = flags.DEFINE_string("results_doc", None, "Where to write the results page.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  distributed.maybe_initialize()
  runs = protocol.sweep(_CONFIG.value, _WORKDIR.value, _SCENARIOS.value,
                        [int(s) for s in _SEEDS.value])
  by_scenario = {s: protocol.aggregate(r) for s, r in runs.items()}
  if jax.process_index() != 0:
    return
  with open(os.path.join(_WORKDIR.value, "summary.json"), "w") as f:
    json.dump(_io.json_safe({"aggregate": by_scenario,
                                     "claims": {s: protocol.claims(a) for s, a in by_scenario.items()}}),
              f, indent=2)
  if _RESULTS_DOC.value:
    doc_dir = os.path.dirname(os.path.abspath(_RESULTS_DOC.value))
    fig_dir = os.path.join(doc_dir, "figures")
    os.makedirs(fig_dir, exist_ok=True)
    figures = {}
    for s in by_scenario:
      src = os.path.join(_WORKDIR.value, s, f"seed{_SEEDS.value[0]}", "relearning.png")
      if os.path.exists(src):
        shutil.copy(src, os.path.join(fig_dir, f"relearning_{s}.png"))
        figures[s] = f"figures/relearning_{s}.png"
    command = "python -m experiments.compare " + " ".join(sys.argv[1:])
    generated = protocol.results_document(by_scenario, command=command, figures=figures)
    _io.write_atomic(_RESULTS_DOC.value, _splice(_RESULTS_DOC.value, generated))


_START, _END = "<!-- generated: start -->", "<!-- generated: end -->"


def _splice(path: str, generated: str) -> str:
  """Replaces only the generated part of an existing page; hand-written text stays."""
  block = f"{_START}\n{generated}{_END}\n"
  try:
    with open(path) as f:
      old = f.read()
  except OSError:
    return block
  if _START in old and _END in old:
    return old[: old.index(_START)] + block + old[old.index(_END) + len(_END) + 1:]
  return block


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
