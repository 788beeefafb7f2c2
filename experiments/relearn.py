"""RCD of any saved checkpoint against a reference checkpoint.

  python -m experiments.relearn --config=experiments/configs/fashion_mnist.py \
      --checkpoint=runs/fmnist/checkpoints/original-<fingerprint> \
      --reference=runs/fmnist/checkpoints/retrain-<fingerprint> \
      [--original=runs/fmnist/checkpoints/original-<fingerprint>] [--output=rcd.json]

The config says which data, forget set, model and relearning protocol
(``config.rcd``) to use, exactly as ``experiments.unlearn`` does: the same
relearn subset, the same keys, so the numbers match the pipeline's. The
criterion's threshold is the ``--original`` model's accuracy on the relearn set
minus ``config.rcd.tolerance`` (as in the pipeline), or ``--threshold``. Both
checkpoints relearn as one sharded program each; on several hosts every process
runs this binary (``jax.distributed`` starts from the environment, see
``experiments/distributed.py``) and only process 0 writes ``--output``.
"""

from __future__ import annotations

import json
from typing import Any

import jax
import ml_collections
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from experiments import distributed
from ieu_jax import _io
from ieu_jax import _metrics
from ieu_jax import _rcd
from ieu_jax import checkpoints
from ieu_jax import experiment

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config.", lock_config=True)
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Checkpoint to measure.", required=True)
_REFERENCE = flags.DEFINE_string("reference", None, "Reference checkpoint (e.g. retrain).",
                                 required=True)
_ORIGINAL = flags.DEFINE_string("original", None,
                                "Original model: sets the threshold and the distance reference.")
_THRESHOLD = flags.DEFINE_float("threshold", None, "Criterion threshold (overrides --original's).")
_OUTPUT = flags.DEFINE_string("output", None, "JSON file to write (process 0 only).")


def relearn_checkpoints(
    config: ml_collections.ConfigDict,
    checkpoint: str,
    reference: str,
    *,
    original: str | None = None,
    threshold: float | None = None,
) -> dict[str, Any]:
  """RCD of ``checkpoint``, normalised by ``reference``'s, under ``config``.

  Args:
    config: an experiment config (``data``, ``forget``, ``model``, ``rcd``, ``seed``).
    checkpoint: directory of the params to measure (``checkpoints.save_params``).
    reference: directory of the reference params (usually the retrained model).
    original: directory of the original model: the threshold is its accuracy on
      the relearn set minus ``config.rcd.tolerance``, and weight distances are
      measured to it.
    threshold: the criterion's threshold; required when ``original`` is None.

  Returns:
    ``{"threshold", "protocol", "checkpoint": {summary, first_hit}, "reference": ...,
    "normalized"}``.

  Raises:
    ValueError: when neither ``original`` nor ``threshold`` is given.
    FileNotFoundError: for a missing checkpoint.
  """
  if original is None and threshold is None:
    raise ValueError("give --original (threshold from its accuracy) or --threshold.")
  _, fs, init_fn, apply_fn = experiment.data_and_model(config)
  like = jax.eval_shape(init_fn, jax.random.key(0))
  load = lambda path: checkpoints.restore_params(path, like)
  relearn_data = experiment.relearn_set(fs, config)
  orig = load(original) if original else None
  if threshold is None:
    acc = _metrics.accuracy(apply_fn, orig, *relearn_data, batch_size=int(config.eval.batch_size))
    threshold = acc - float(config.rcd.tolerance)
  protocol = experiment.relearn_protocol(config, threshold)
  key = experiment.rcd_key(config)

  def run(path):
    result = _rcd.relearn(load(path), apply_fn, relearn_data, protocol, key,
                          reference_params=orig, formulation=config.rcd.get("formulation"))
    logging.info("%s: first hits %s", path, result.first_hit.tolist())
    return result

  ref = run(reference)
  res = run(checkpoint)
  summary = _rcd.rcd_summary(res, ref)
  return {
      "threshold": float(threshold),
      "protocol": {"optimizer": protocol.optimizer, "learning_rates": list(protocol.lr_grid),
                   "batch_size": protocol.batch_size, "max_steps": protocol.max_steps,
                   "num_trajectories": protocol.num_trajectories,
                   "criterion": protocol.criterion,
                   "formulation": config.rcd.get("formulation") or _rcd.default_formulation()},
      "checkpoint": {"path": checkpoint, **summary._asdict(),
                     "first_hit": res.first_hit.tolist()},
      "reference": {"path": reference, **_rcd.rcd_summary(ref)._asdict(),
                    "first_hit": ref.first_hit.tolist()},
      "normalized": summary.normalized,
      "devices": f"{jax.device_count()} {jax.default_backend()} device(s),"
                 f" {jax.process_count()} process(es)",
  }


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  distributed.maybe_initialize()
  out = relearn_checkpoints(_CONFIG.value, _CHECKPOINT.value, _REFERENCE.value,
                            original=_ORIGINAL.value, threshold=_THRESHOLD.value)
  c, r = out["checkpoint"], out["reference"]
  print(f"RCD steps {c['steps_mean']:.1f} ± {c['steps_std']:.1f} (censored"
        f" {100 * c['censored_frac']:.0f}%), reference {r['steps_mean']:.1f}"
        f" (censored {100 * r['censored_frac']:.0f}%), normalised {out['normalized']:.3f}")
  if _OUTPUT.value and jax.process_index() == 0:
    _io.write_atomic(_OUTPUT.value, json.dumps(_io.json_safe(out), indent=2))


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
