"""The classifier unlearning experiment, end to end: what ``experiments.unlearn`` runs.

It stands on the skeleton of :mod:`ieu_jax.pipeline` (cached models, method names,
the attacker's subset, flags) and writes through :mod:`ieu_jax.outputs`, as the
generative pipeline (:mod:`ieu_jax.generative.experiment`) does.

Phases (each logged, long ones with an ETA):

1. data: load the data set, split it, choose the forget set;
2. original: train on forget + retain (or restore ``workdir/checkpoints/original``);
3. retrain: the reference, trained from a fresh initialisation on the retain set
   only (or restored from ``workdir/checkpoints/retrain``);
4. methods: each configured method unlearns from the original weights; its
   params are saved to ``workdir/checkpoints/unlearned/<name>-<fingerprint>``
   (:func:`unlearned_checkpoint`; ``config.save_unlearned=False`` skips it);
5. evaluation: UA, RA, TA, MIA, Avg. Gap against Retrain, RCD (``K`` relearning
   trajectories, normalised by Retrain's), wall time;
6. outputs: ``results.json``, ``results.md`` and ``relearning.png`` in the workdir,
   each written to a temporary file and renamed by process 0, so an interrupted
   run never leaves a truncated result behind.

Checkpoints are keyed by a fingerprint of the configuration that produced them
(data, forget set, model, training recipe, seed): a rerun with the same
fingerprint reuses them, a changed configuration trains anew instead of silently
reusing a stale model.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Any, Mapping

import jax
import ml_collections
import numpy as np
from absl import logging

from ieu_jax import _metrics
from ieu_jax import _rcd
from ieu_jax import attackers as attackers_lib
from ieu_jax import checkpoints
from ieu_jax import data as data_lib
from ieu_jax import methods as methods_lib
from ieu_jax import models
from ieu_jax import outputs
from ieu_jax import pipeline
from ieu_jax import report
from ieu_jax import sections as sections_lib
from ieu_jax import training
from ieu_jax.methods import retrain as retrain_lib

__all__ = [
    "Setup",
    "validate_config",
    "data_and_model",
    "method_names",
    "prepare",
    "rcd_gap",
    "rcd_key",
    "relearn_attack",
    "relearn_auc",
    "relearn_checkpoints",
    "relearn_protocol",
    "run_experiment",
    "unlearned_checkpoint",
]

# Where each phase's randomness comes from: fold_in(key(seed), stream).
_KEY_ORIGINAL, _KEY_RETRAIN, _KEY_METHODS, _KEY_RCD = 1, 2, 3, 4


def validate_config(config: ml_collections.ConfigDict) -> list[str]:
  """Checks the whole config before any work; returns the methods to run.

  Every section is built as its typed class (:mod:`ieu_jax.sections`: ranges,
  kinds, unknown keys), the model's keys against the model, every method's
  hyperparameters, and the attacker's protocol.

  Raises:
    ValueError, TypeError: naming the section, the key and the bad value.
  """
  sections_lib.check_run_keys(config)
  sections_lib.validate_sections(config, sections_lib.CLASSIFIER_SECTIONS)
  sections_lib.check_model(config.model)
  names = method_names(config)
  relearn_protocol(config, threshold=50.0)  # the protocol's own checks
  return names


def method_names(config: ml_collections.ConfigDict) -> list[str]:
  """The methods to run, from the comma-separated ``config.methods``; Retrain first."""
  if not str(config.methods).strip(", "):
    raise ValueError(f"config.methods={config.methods!r} names no method.")
  names = pipeline.method_names(config, methods_lib.REGISTRY, always=("Retrain",))
  for n in names:
    methods_lib.hparams(n, config.method.get(n))  # a misspelt key fails before training
  return names


def rcd_gap(steps: float, reference_steps: float) -> float:
  """``100 * |ln((T + 1) / (T_ref + 1))|``: over- and under-forgetting both count.

  The ``+ 1`` keeps a model that relearns in 0 steps finite (it is the worst
  under-forgetting, not an undefined one). The means are restricted means (a
  censored trajectory counts as the budget), so they are always defined.
  """
  if not (math.isfinite(steps) and math.isfinite(reference_steps)):
    return math.nan
  return 100.0 * abs(math.log((steps + 1.0) / (reference_steps + 1.0)))


# What a trained model depends on: its checkpoint's fingerprint covers these sections.
_MODEL_PARTS = ("data", "forget", "model", "train")


def _model_key(config, what: str) -> str:
  """The fingerprint of the original or retrained model's checkpoint.

  The original trains on the whole training set, whatever is forgotten, so its key
  leaves the forget set out: in one workdir, one original serves every random and
  class scenario of a seed. Mislabelled data changes what it trains on, so there the
  forget set counts.
  """
  parts = _MODEL_PARTS
  if what == "original" and config.forget.mode != "mislabel":
    parts = tuple(p for p in parts if p != "forget")
  return pipeline.fingerprint(config, what, parts)


def _train_or_restore(workdir, config, what, init_fn, apply_fn, data, key):
  """Trains a model, or restores it (and its recorded training time) from the workdir."""
  return pipeline.cached_train(
      workdir, what, _model_key(config, what),
      jax.eval_shape(init_fn, key),
      lambda: retrain_lib.train_model(init_fn, apply_fn, data, config.train.to_dict(), key, what),
      strict=bool(config.get("strict_checkpoints", False)))


def relearn_auc(result: _rcd.RelearnResult) -> float:
  """Mean over trajectories of the area under the forget-accuracy curve, per step.

  The empirical relearning speed that RCD is compared with: higher means the model
  relearns faster (percent, averaged over the evaluated grid: up to
  ``result.stopped_at`` when the run stopped once every trajectory had relearned).
  """
  return float(np.nanmean(result.accuracy))


def _evaluate(apply_fn, params, splits, fs, config, holdout="test") -> dict[str, float]:
  """UA, RA, MIA and the held-out accuracy (``TA``: test; ``VA``: validation; ``both``:
  TA and MIA on the test split, and VA and ``MIA_val`` on the validation split), one
  pass of the model over each split."""
  bs = int(config.eval.batch_size)
  if holdout not in ("test", "val", "both"):
    raise ValueError(f"holdout={holdout!r}: expected 'test', 'val' or 'both'.")
  forget, retain = fs.forget, fs.retain

  def scores(d, what):
    acc, conf = _metrics.accuracy_and_confidence(apply_fn, params, d.x, d.y, batch_size=bs)
    if not np.all(np.isfinite(conf)):  # finite weights whose logits overflow
      raise training.NonFiniteError(
          f"the model's outputs on the {what} set are not finite (its logits overflow).")
    return acc, conf

  forget_acc, forget_conf = scores(forget, "forget")
  retain_acc, retain_conf = scores(retain, "retain")
  row = {"UA": 100.0 - forget_acc, "RA": retain_acc}
  mia = lambda held: _metrics.mia_efficacy(
      retain_conf, held, forget_conf,
      max_per_class=int(config.eval.mia_max_per_class), seed=int(config.seed),
  )
  if holdout in ("test", "both"):
    row["TA"], test_conf = scores(splits.test, "test")
    row["MIA"] = mia(test_conf)
  if holdout in ("val", "both"):
    va, val_conf = scores(splits.val, "validation")
    row["VA"] = va
    row["MIA" if holdout == "val" else "MIA_val"] = mia(val_conf)
  if fs.mode == "mislabel":  # contaminated data: does the true label come back?
    row["corrected"] = _metrics.accuracy(apply_fn, params, fs.forget_clean.x, fs.forget_clean.y,
                                         batch_size=bs)
  return row


def _mislabel(row: Mapping[str, Any], original: Mapping[str, Any]) -> dict[str, float]:
  """The contaminated-data scenario's success measure, in percent: ``ta_gain``, the
  test accuracy after unlearning minus the original's (removing wrong labels should
  help), and ``corrected``, the share of the mislabelled training examples predicted
  with their true label."""
  return {"ta_gain": row["TA"] - original["TA"], "corrected": row["corrected"]}


def relearn_protocol(config, threshold: float) -> _rcd.RelearnProtocol:
  """:func:`ieu_jax.pipeline.relearn_protocol` of ``config.rcd`` (an accuracy criterion)."""
  return pipeline.relearn_protocol(config.rcd, threshold, criterion="accuracy",
                                   guard_drop=config.rcd.get("guard_drop"))


@dataclasses.dataclass
class Setup:
  """Everything the methods and the evaluation share (see :func:`prepare`)."""

  config: ml_collections.ConfigDict
  splits: data_lib.Splits
  forget_split: data_lib.ForgetSplit
  init_fn: Any
  apply_fn: Any
  original: Any
  retrained: Any
  training_time_s: dict[str, float]
  restored: dict[str, bool]
  problem: methods_lib.Problem
  protocol: _rcd.RelearnProtocol
  root_key: jax.Array
  batch_caps: list[dict[str, Any]] = dataclasses.field(default_factory=list)
  attacks: dict[str, attackers_lib.Attack] = dataclasses.field(default_factory=dict)

  def relearn(self, params) -> _rcd.RelearnResult:
    """The first attacker's relearning trajectories from ``params``."""
    return self._relearn(next(iter(self.attacks.values())), params)

  def relearn_all(self, params) -> dict[str, _rcd.RelearnResult]:
    """Every attacker's trajectories from ``params`` (same keys for every model)."""
    return {name: self._relearn(a, params) for name, a in self.attacks.items()}

  def _relearn(self, attack: attackers_lib.Attack, params) -> _rcd.RelearnResult:
    return relearn_attack(attack, self.apply_fn, params, self.config, self.original)

  def evaluate(self, params, holdout: str = "test") -> dict[str, float]:
    """UA, RA, MIA and the held-out accuracy: ``TA`` (test) or ``VA`` (validation).

    Hyperparameter search uses ``holdout='val'``: the validation split replaces
    the test split both as the accuracy set and as the MIA's non-members; the
    frontier uses ``holdout='both'`` (TA and MIA, and VA and ``MIA_val``).
    """
    return _evaluate(self.apply_fn, params, self.splits, self.forget_split, self.config,
                     holdout=holdout)

  def unlearn(self, name: str, hparams: Any, index: int = 0):
    """Runs method ``name``; returns ``(params, seconds)``. Raises NonFiniteError.

    ``hparams`` is the method's hyperparameters, or a mapping (ConfigDict) of
    them (see :func:`ieu_jax.methods.hparams`). The key comes from the seed, the
    name and ``index`` (a search's candidate; 0 for the run), never from the
    method's place in a list (:func:`ieu_jax.pipeline.method_key`).
    """
    hparams = methods_lib.hparams(name, hparams)
    start = time.perf_counter()
    key = pipeline.method_key(self.root_key, _KEY_METHODS, name, index)
    params = methods_lib.get(name).unlearn(self.problem, hparams, key, name=name)
    params = jax.block_until_ready(params)
    return params, time.perf_counter() - start


def data_and_model(config: ml_collections.ConfigDict):
  """``(splits, forget_split, init_fn, apply_fn)`` exactly as the pipeline builds them."""
  logging.info("phase data: loading %s", config.data.name)
  splits = data_lib.load_dataset(
      config.data.name, data_dir=config.data.get("data_dir"), val_size=config.data.val_size,
      seed=int(config.seed), max_train=config.data.get("max_train"),
      max_test=config.data.get("max_test"), normalize=config.data.get("normalize"),
  )
  fs = data_lib.select_forget(
      splits.train, mode=config.forget.mode, fraction=float(config.forget.fraction),
      forget_class=config.forget.get("forget_class"), seed=int(config.seed),
  )
  logging.info("data: %d train (%d forget, %d retain), %d val, %d test, %d classes",
               len(fs.train), len(fs.forget), len(fs.retain), len(splits.val),
               len(splits.test), splits.train.num_classes)
  model_kwargs = {k: (tuple(v) if isinstance(v, list) else v)
                  for k, v in config.model.to_dict().items()
                  if k != "name" and not (k in ("norm", "dtype") and v is None)}
  init_fn, apply_fn = models.build_model(
      config.model.name, splits.train.num_classes, fs.train.x.shape[1:], **model_kwargs
  )
  return splits, fs, init_fn, apply_fn


def relearn_attack(attack: attackers_lib.Attack, apply_fn, params, config: ml_collections.ConfigDict,
                   original: Any) -> _rcd.RelearnResult:
  """One attacker's trajectories from ``params`` (distances to ``original``), keyed by
  :func:`rcd_key`; with a grid of learning rates, each data order keeps the rate that
  relearned first (:func:`ieu_jax._rcd.fastest_rate`)."""
  result = _rcd.relearn(params, apply_fn, attack.relearn_data, attack.protocol,
                        rcd_key(config), eval_data=attack.eval_data, draws=attack.draws,
                        guard_data=attack.guard_data, reference_params=original)
  if len(attack.protocol.lr_grid) > 1:
    result = _rcd.fastest_rate(result, attack.protocol.num_trajectories)
  return result


def rcd_key(config: ml_collections.ConfigDict) -> jax.Array:
  """The key of RCD's data orders: the same for every model compared under ``config``."""
  return jax.random.fold_in(jax.random.key(int(config.seed)), _KEY_RCD)


# Methods that iterate over the retain set only (the others also over the forget set).
_RETAIN_ONLY = ("Retrain", "FT", "l1-sparse")


def _batch_caps(config, fs, relearn_size: int) -> list[dict[str, Any]]:  # relearn_size: m
  """Every batch size larger than the data it is drawn from (see ``pipeline.batch_caps``)."""
  sizes = {"train.batch_size": (int(config.train.batch_size), len(fs.retain)),
           "rcd.batch_size": (int(config.rcd.batch_size), relearn_size)}
  smallest = len(fs.retain) if not len(fs.forget) else min(len(fs.forget), len(fs.retain))
  for name in method_names(config):
    hp = methods_lib.hparams(name, config.method.get(name)).to_dict()
    for field in ("batch_size", "forget_batch_size"):
      if hp.get(field) is not None:
        data = len(fs.retain) if name in _RETAIN_ONLY else smallest
        sizes[f"method.{name}.{field}"] = (int(hp[field]), data)
  return pipeline.batch_caps(sizes)


def prepare(config: ml_collections.ConfigDict, workdir: str) -> Setup:
  """Checks the config, loads the data, trains or restores the original and retrained models."""
  validate_config(config)
  return _prepare(config, workdir)


def _prepare(config: ml_collections.ConfigDict, workdir: str) -> Setup:
  """:func:`prepare` of a config already checked."""
  root = jax.random.key(int(config.seed))
  splits, fs, init_fn, apply_fn = data_and_model(config)
  num_classes = splits.train.num_classes
  (original, t_orig, restored_orig) = _train_or_restore(
      workdir, config, "original", init_fn, apply_fn, fs.train,
      jax.random.fold_in(root, _KEY_ORIGINAL))
  (retrained, t_retrain, restored_retrain) = _train_or_restore(
      workdir, config, "retrain", init_fn, apply_fn, fs.retain,
      jax.random.fold_in(root, _KEY_RETRAIN))
  problem = methods_lib.Problem(
      apply_fn=apply_fn, init_fn=init_fn, original=original, forget=fs.forget,
      retain=fs.retain, num_classes=num_classes, train=config.train.to_dict(),
  )
  attacks = attackers_lib.attacks(config, splits, fs, apply_fn, original, retrained)
  first = next(iter(attacks.values()))
  return Setup(
      config=config, splits=splits, forget_split=fs, init_fn=init_fn, apply_fn=apply_fn,
      original=original, retrained=retrained,
      training_time_s={"original": t_orig, "retrain": t_retrain},
      restored={"original": restored_orig, "retrain": restored_retrain}, problem=problem,
      protocol=first.protocol, root_key=root,
      batch_caps=_batch_caps(config, fs, first.draws.train.shape[1]), attacks=attacks,
  )


def relearn_checkpoints(
    config: ml_collections.ConfigDict,
    checkpoint: str,
    reference: str,
    *,
    original: str | None = None,
    threshold: float | None = None,
) -> dict[str, Any]:
  """RCD of ``checkpoint``, normalised by ``reference``'s, under ``config``'s first attacker.

  Args:
    config: an experiment config (``data``, ``forget``, ``model``, ``rcd``, ``seed``).
    checkpoint: directory of the params to measure (``checkpoints.save_params``).
    reference: directory of the reference params (usually the retrained model;
      it is Retrain for the ``recovered`` criterion's thresholds).
    original: directory of the original model: the thresholds come from its
      accuracy (``config.rcd.criterion``), and weight distances are measured to it.
    threshold: one threshold for every trajectory; required when ``original`` is None.

  Returns:
    ``{"threshold", "thresholds", "protocol", "checkpoint": {summary, first_hit},
    "reference": ..., "normalized"}``.

  Raises:
    ValueError: when neither ``original`` nor ``threshold`` is given.
    FileNotFoundError: for a missing checkpoint.
  """
  if original is None and threshold is None:
    raise ValueError("give --original (threshold from its accuracy) or --threshold.")
  validate_config(config)
  splits, fs, init_fn, apply_fn = data_and_model(config)
  like = jax.eval_shape(init_fn, jax.random.key(0))
  # A checkpoint the pipeline wrote is checked against the checksum it recorded.
  load = lambda path: checkpoints.restore_params(path, like, pipeline.recorded_checksum(path))
  orig = load(original) if original else None
  ref_params = load(reference)
  attack = next(iter(attackers_lib.attacks(config, splits, fs, apply_fn, orig, ref_params,
                                           threshold=threshold).values()))
  key = rcd_key(config)

  def run(params, path):
    result = _rcd.relearn(params, apply_fn, attack.relearn_data, attack.protocol, key,
                          eval_data=attack.eval_data, draws=attack.draws,
                          guard_data=attack.guard_data, reference_params=orig)
    logging.info("%s: first hits %s", path, result.first_hit.tolist())
    return result

  ref = run(ref_params, reference)
  res = run(load(checkpoint), checkpoint)
  summary = _rcd.rcd_summary(res, ref)
  return {
      "threshold": attack.protocol.threshold,
      "thresholds": attack.draws.threshold.tolist(),
      "protocol": attack.protocol.to_dict(),
      "checkpoint": {"path": checkpoint, **summary._asdict(),
                     "first_hit": res.first_hit.tolist()},
      "reference": {"path": reference, **_rcd.rcd_summary(ref)._asdict(),
                    "first_hit": ref.first_hit.tolist()},
      "normalized": summary.normalized,
      "devices": f"{jax.device_count()} {jax.default_backend()} device(s),"
                 f" {jax.process_count()} process(es)",
  }


# What a method's row depends on, besides its own hyperparameters and name.
_ROW_PARTS = ("data", "forget", "model", "train", "eval", "rcd")


def _result_from_json(d: Mapping[str, Any]) -> _rcd.RelearnResult:
  as_array = lambda v: np.asarray(v, np.float32)  # JSON's null (NaN) reads back as NaN
  return _rcd.RelearnResult(
      first_hit=np.asarray(d["first_hit"], np.int64), censored=np.asarray(d["censored"], bool),
      learning_rate=np.asarray(d["learning_rate"]), steps=np.asarray(d["steps"]),
      accuracy=as_array(d["accuracy"]), loss=as_array(d["loss"]),
      distance=as_array(d["distance"]), stopped_at=d["stopped_at"],
      guard=as_array(d["guard"]), threshold=as_array(d["threshold"]))


def unlearned_checkpoint(config: ml_collections.ConfigDict, name: str) -> str:
  """Where method ``name``'s unlearned params are saved, relative to the workdir.

  ``checkpoints/unlearned/<name>-<fingerprint>``, keyed exactly as the method's
  row in ``methods/`` is (data, forget set, model, training, evaluation, attacker,
  seed, the method's hyperparameters), so a changed setting saves a new checkpoint
  and never overwrites another's. Retrain's is the retrained model's
  ``checkpoints/retrain-<fingerprint>``.
  """
  if name == "Retrain":
    return os.path.join("checkpoints", "retrain-" + _model_key(config, "retrain"))
  return os.path.join("checkpoints", "unlearned", _row_stem(config, name))


def _row_stem(config: ml_collections.ConfigDict, name: str) -> str:
  """``<name>-<fingerprint>`` of method ``name``'s row (a ``/`` in the name made ``_``)."""
  hparams = methods_lib.hparams(name, config.method.get(name))
  return name.replace("/", "_") + "-" + pipeline.fingerprint(
      config, name, _ROW_PARTS, extra=hparams.fingerprint_dict())


def _saved_checkpoint(workdir: str, name: str, checkpoint: str | None) -> str | None:
  """``checkpoint`` (relative to ``workdir``) if a finished checkpoint is there, else None."""
  if checkpoint is None:
    return None
  if not checkpoints.exists(os.path.join(workdir, checkpoint)):
    logging.warning("%s: its checkpoint %s is gone; the row records none", name,
                    os.path.join(workdir, checkpoint))
    return None
  return checkpoint


def _method_row(setup: Setup, workdir: str, name: str):
  """``(row, {attacker: RelearnResult})`` of method ``name``: run, or reused from
  ``workdir/methods``.

  Each finished row is persisted as it completes (keyed by everything it depends
  on), so a crash or a kill in the methods phase loses at most the running method.
  With ``config.save_unlearned`` (default True), the unlearned params are saved
  first (:func:`unlearned_checkpoint`), so a row on disk has its checkpoint;
  ``row["checkpoint"]`` is its path relative to the workdir, or None.
  """
  config = setup.config
  hparams = methods_lib.hparams(name, config.method.get(name))
  path = os.path.join(workdir, "methods", _row_stem(config, name) + ".json")
  try:
    with open(path) as f:
      saved = json.load(f)
    logging.info("%s: reusing its finished row %s", name, path)
    row = {k: (math.nan if v is None else v) for k, v in saved["row"].items()}
    row["checkpoint"] = _saved_checkpoint(  # a row saved before checkpoints were: none
        workdir, name,
        unlearned_checkpoint(config, name) if name == "Retrain" else saved.get("checkpoint"))
    return row, {a: _result_from_json(r) for a, r in saved["relearning"].items()}
  except (OSError, ValueError, KeyError):
    pass
  checkpoint = unlearned_checkpoint(config, name)
  if name == "Retrain":
    params, runtime = setup.retrained, setup.training_time_s["retrain"]
  else:
    params, runtime = setup.unlearn(name, hparams)
    if config.get("save_unlearned", True):
      seconds = pipeline.save_model(os.path.join(workdir, checkpoint), params,
                                    method=name, hparams=hparams.to_dict(),
                                    unlearning_time_s=runtime)
      logging.info("%s: saved %s in %.2fs", name, os.path.join(workdir, checkpoint), seconds)
    else:
      checkpoint = None
  logging.info("phase evaluation: %s", name)
  row = setup.evaluate(params)
  start = time.perf_counter()
  results = setup.relearn_all(params)
  logging.info("%s: RCD of %d attackers x %d trajectories in %.1fs", name, len(results),
               setup.protocol.total_trajectories, time.perf_counter() - start)
  row.update(name=name, runtime_s=runtime,
             relearn_auc=relearn_auc(next(iter(results.values()))), hparams=hparams.to_dict())
  outputs.write_json(path, {"row": row, "relearning": {a: r._asdict()
                                                       for a, r in results.items()},
                            "checkpoint": checkpoint})
  row["checkpoint"] = checkpoint
  return row, results


@pipeline.locks_workdir
def run_experiment(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs the whole experiment and writes its outputs into ``workdir``.

  Args:
    config: see ``experiments/configs/fashion_mnist.py``.
    workdir: output directory (created if needed); only process 0 writes.

  Returns:
    The results dictionary that is also written to ``workdir/results.json``.
  """
  wall_start = time.perf_counter()
  names = validate_config(config)
  if outputs.is_writer():
    os.makedirs(workdir, exist_ok=True)
  setup = _prepare(config, workdir)
  fs, protocol = setup.forget_split, setup.protocol
  threshold = protocol.threshold
  first = next(iter(setup.attacks.values()))

  original_row = setup.evaluate(setup.original)
  original_row["train_accuracy"] = _metrics.accuracy(
      setup.apply_fn, setup.original, fs.train.x, fs.train.y,
      batch_size=int(config.eval.batch_size))
  if fs.mode == "mislabel":
    original_row["mislabel"] = _mislabel(original_row, original_row)
  logging.info("original: %s", original_row)

  rows, curves, reference, failed = [], {}, None, []
  for i, name in enumerate(names):
    logging.info("phase methods: %s (%d/%d)", name, i + 1, len(names))
    try:
      row, result = _method_row(setup, workdir, name)
    except Exception as e:  # pylint: disable=broad-except
      if name == "Retrain":  # the reference: nothing can be compared without it
        raise
      # One failing method must not cost the others' results: report it.
      error = str(e) if isinstance(e, training.NonFiniteError) else f"{type(e).__name__}: {e}"
      logging.error("%s failed: %s", name, error)
      failed.append({"name": name, "error": error})
      continue
    if name == "Retrain":
      reference = result
    row["rcd"] = attackers_lib.rcd_by_attacker(result, reference)
    curves[name] = result
    rows.append(row)

  retrain_row = rows[0]
  for row in rows:
    row["avg_gap"] = _metrics.avg_gap(row, retrain_row)
    gap_rcd = rcd_gap(row["rcd"]["steps_mean"], retrain_row["rcd"]["steps_mean"])
    row["avg_gap_rcd"] = (row["avg_gap"] * 4 + gap_rcd) / 5 if math.isfinite(gap_rcd) else math.nan
    row["flags"] = pipeline.result_flags(row, retrain_row, utility="RA",
                                         margin=config.eval.collapse_margin,
                                         what="retain accuracy")
    if fs.mode == "mislabel":
      row["mislabel"] = _mislabel(row, original_row)
    logging.info("%s: %s", row["name"], {k: row[k] for k in ("UA", "RA", "TA", "MIA", "avg_gap")})

  results = {
      "config": config.to_dict(),
      "scenario": (f"class {config.forget.forget_class}" if config.forget.mode == "class"
                   else f"{config.forget.mode} {100 * float(config.forget.fraction):.0f}%"),
      "sizes": {"train": len(fs.train), "forget": len(fs.forget), "retain": len(fs.retain),
                "val": len(setup.splits.val), "test": len(setup.splits.test),
                "relearn": int(first.draws.train.shape[1]),
                "criterion_examples": int(first.draws.eval.shape[1]),
                "guard": 0 if first.guard_data is None else int(first.guard_data[1].shape[0])},
      "original": original_row,
      "memorization_gap": (100.0 - original_row["UA"]) - (100.0 - retrain_row["UA"]),
      "training_time_s": setup.training_time_s,
      "restored_from_checkpoint": setup.restored,
      "batch_caps": setup.batch_caps,
      "rcd_criterion": config.rcd.criterion,
      "rcd_threshold": threshold,
      "rcd_thresholds": first.draws.threshold.tolist(),
      "rcd_protocol": protocol.to_dict(),
      "rcd_attackers": {a: dict(att.protocol.to_dict(), description=sections_lib.ATTACKERS[a])
                        for a, att in setup.attacks.items()},
      "methods": [
          {k: row[k] for k in ("name", "UA", "RA", "TA", "MIA", "avg_gap", "avg_gap_rcd",
                               "rcd", "relearn_auc", "runtime_s", "flags", "hparams",
                               "checkpoint", "mislabel") if k in row}
          for row in rows
      ],
      "failed": failed,
      "devices": f"{jax.device_count()} {jax.default_backend()} device(s)",
  }
  results["wall_time_s"] = time.perf_counter() - wall_start
  results = outputs.json_safe(results)
  outputs.write_json(os.path.join(workdir, "results.json"), results)
  outputs.write_text(os.path.join(workdir, "results.md"), report.results_markdown(results))
  report.plot_relearning(os.path.join(workdir, "relearning.png"), curves, threshold)
  logging.info("wrote results.json, results.md, relearning.png to %s", workdir)
  return results
