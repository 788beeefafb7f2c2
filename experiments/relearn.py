"""RCD of any saved checkpoint against a reference checkpoint.

  python -m experiments.relearn --config=experiments/configs/fashion_mnist.py \
      --checkpoint=runs/fmnist/checkpoints/original-<fingerprint> \
      --reference=runs/fmnist/checkpoints/retrain-<fingerprint> \
      [--original=runs/fmnist/checkpoints/original-<fingerprint>] [--output=rcd.json]

The config says which data, forget set, model and relearning protocol
(``config.rcd``) to use, exactly as ``experiments.unlearn`` does with its first
attacker: the same draws per trajectory, the same guard, the same keys, so the
numbers match the pipeline's. Each trajectory's threshold comes from the
``--original`` model (and, for ``config.rcd.criterion='recovered'``, the
``--reference`` as Retrain) as in the pipeline, or is ``--threshold``. Both
checkpoints relearn as one sharded program each; on several hosts every process
runs this binary (``jax.distributed`` starts from the environment, see
``experiments/entry.py``) and only process 0 writes ``--output``.
"""

from absl import flags

from ieu_jax import experiment
from ieu_jax import outputs
from experiments import entry

_CONFIG = entry.config_flag()
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Checkpoint to measure.", required=True)
_REFERENCE = flags.DEFINE_string("reference", None, "Reference checkpoint (e.g. retrain).",
                                 required=True)
_ORIGINAL = flags.DEFINE_string("original", None,
                                "Original model: sets the threshold and the distance reference.")
_THRESHOLD = flags.DEFINE_float("threshold", None, "Criterion threshold (overrides --original's).")
_OUTPUT = flags.DEFINE_string("output", None, "JSON file to write (process 0 only).")


def main():
  out = experiment.relearn_checkpoints(_CONFIG.value, _CHECKPOINT.value, _REFERENCE.value,
                                       original=_ORIGINAL.value, threshold=_THRESHOLD.value)
  c, r = out["checkpoint"], out["reference"]
  print(f"RCD steps {c['steps_mean']:.1f} ± {c['steps_std']:.1f} (censored"
        f" {100 * c['censored_frac']:.0f}%), reference {r['steps_mean']:.1f}"
        f" (censored {100 * r['censored_frac']:.0f}%), normalised {out['normalized']:.3f}")
  if _OUTPUT.value:
    outputs.write_json(_OUTPUT.value, out)


if __name__ == "__main__":
  entry.run(main)
