"""The skeleton both experiment pipelines stand on.

The classifier pipeline (:mod:`ieu_jax.experiment`) and the generative one
(:mod:`ieu_jax.generative.experiment`) share, from here:

* :func:`cached_train`: trained models cached in ``workdir/checkpoints`` under a
  :func:`fingerprint` of the configuration that made them (saved by process 0,
  restored by every process);
* :func:`method_names`: the methods a config asks for, checked against a registry;
* :func:`attacker_subset`: the ``m`` forget examples the RCD attacker holds;
* :func:`result_flags`: the flags a results row carries;
* :func:`finished_run` and :func:`aggregate`: reusing finished runs and summarising
  runs over seeds;
* :func:`workdir` (and the decorator :func:`locks_workdir` every entry point
  wears): one workdir, one run. It checks that the workdir is writable before any
  work, and holds its lock file ``<workdir>/.lock`` while the run lasts.

Files are written by :mod:`ieu_jax.outputs` (atomic, process 0 only).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import zlib
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence

import jax
import ml_collections
import numpy as np
from absl import logging

from ieu_jax import _rcd
from ieu_jax import checkpoints
from ieu_jax import models
from ieu_jax import outputs
from ieu_jax._workdir import check_writable
from ieu_jax._workdir import LOCK_NAME
from ieu_jax._workdir import locks_workdir
from ieu_jax._workdir import workdir
from ieu_jax._workdir import WorkdirError
from ieu_jax._workdir import WorkdirInUse
from ieu_jax._workdir import WorkdirNotWritable

__all__ = [
    "ATTACKER_STREAM",
    "LOCK_NAME",
    "Trained",
    "WorkdirError",
    "WorkdirInUse",
    "WorkdirNotWritable",
    "batch_caps",
    "aggregate",
    "attacker_subset",
    "cached_train",
    "check_writable",
    "checkpoint_path",
    "fingerprint",
    "finished_run",
    "locks_workdir",
    "method_key",
    "method_names",
    "relearn_protocol",
    "result_flags",
    "save_model",
    "workdir",
]


def _plain(value: Any) -> Any:
  return value.to_dict() if hasattr(value, "to_dict") else value


# Keys whose default (None, or this value) enters no fingerprint: every cached model
# and row made before the key existed keeps its key.
_UNFINGERPRINTED_DEFAULTS = {("model", "dtype"): "float32", ("data", "normalize"): "none"}


def _section(config: ml_collections.ConfigDict, part: str) -> Any:
  """A config section as fingerprinted: ``model.norm`` None (the model's default)
  or equal to its model's default normalisation is left out, so the key's arrival
  kept every cached model and row (they were made with that normalisation); so are
  ``model.dtype`` None or ``'float32'`` and ``data.normalize`` None or ``'none'``."""
  return _without_defaults(part, _plain(config[part]))


def _without_defaults(part: str, value: Any) -> Any:
  """Section ``part`` (a plain value) without the keys at their unkeyed defaults."""
  if part == "model" and isinstance(value, dict) and "norm" in value:
    module = models.MODELS.get(value.get("name"))
    if value["norm"] is None or (
        module is not None and value["norm"] == getattr(module, "norm", None)):
      value = {k: v for k, v in value.items() if k != "norm"}
  if isinstance(value, dict):
    value = {k: v for k, v in value.items()
             if not ((part, k) in _UNFINGERPRINTED_DEFAULTS
                     and v in (None, _UNFINGERPRINTED_DEFAULTS[part, k]))}
  return value


def fingerprint(config: ml_collections.ConfigDict, what: str, parts: Sequence[str],
                extra: Mapping[str, Any] | None = None) -> str:
  """12 hex digits of the config sections ``parts``, the seed, ``what`` and ``extra``.

  A cached model (or row) is reused only when everything that made it is the same:
  a changed section trains anew instead of silently reusing a stale result.
  """
  blob = {p: _section(config, p) for p in parts}
  blob.update(seed=config.seed, what=what)
  if extra is not None:
    blob["extra"] = extra
  return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:12]


class Trained(NamedTuple):
  """A model from :func:`cached_train`.

  Attributes:
    params: the weights.
    seconds: training time (when restored, the one recorded beside the
      checkpoint).
    restored: whether it came from the cache.
  """

  params: Any
  seconds: float
  restored: bool


def _read_record(path: str) -> tuple[float, str]:
  """The training time and checksum recorded beside the checkpoint ``path``.

  Raises:
    checkpoints.CorruptCheckpointError: when the record is missing, unreadable or
      incomplete.
  """
  record = path + ".json"
  try:
    with open(record) as f:
      saved = json.load(f)
  except FileNotFoundError:
    raise checkpoints.CorruptCheckpointError(path, f"its record {record} is missing") from None
  except (OSError, ValueError) as e:
    raise checkpoints.CorruptCheckpointError(
        path, f"its record {record} is unreadable: {type(e).__name__}: {e}") from e
  if not isinstance(saved, dict) or not isinstance(saved.get("checksum"), str):
    raise checkpoints.CorruptCheckpointError(path, f"its record {record} has no checksum")
  seconds = saved.get("training_time_s")
  return (float(seconds) if isinstance(seconds, (int, float)) else math.nan), saved["checksum"]


def cached_train(workdir: str, name: str, key: str, like: Any,
                 train: Callable[[], Any], *, strict: bool = False) -> Trained:
  """Restores ``workdir/checkpoints/<name>-<key>``, or trains and saves it.

  Every process trains (the same numbers from the same keys) or restores;
  process 0 alone writes the checkpoint and, beside it in ``<checkpoint>.json``,
  its training time and :func:`checkpoints.checksum`.

  A checkpoint is corrupt when its files cannot be restored, its record is
  missing or unreadable, or the restored params do not match the recorded
  checksum. A corrupt checkpoint is retrained (and overwritten) with a warning,
  or, when ``strict``, raises.

  Args:
    workdir: the run's directory.
    name: the model's name (``original``, ``retrain``, ...).
    key: its :func:`fingerprint`.
    like: a pytree of the params' shapes and dtypes (``jax.eval_shape``).
    train: trains the model when it is not cached.
    strict: raise on a corrupt checkpoint instead of retraining.

  Raises:
    checkpoints.CorruptCheckpointError: when ``strict`` and the checkpoint is
      corrupt ("checkpoint <path> is corrupt (<reason>); delete it to retrain").
    OSError: when the checkpoint cannot be saved.
  """
  path = checkpoint_path(workdir, name, key)
  if checkpoints.exists(path):
    logging.info("phase %s: restoring %s", name, path)
    try:
      seconds, expected = _read_record(path)
      return Trained(checkpoints.restore_params(path, like, expected), seconds, True)
    except checkpoints.CorruptCheckpointError as e:
      if strict:
        raise
      logging.warning("checkpoint %s is corrupt (%s); retraining", e.path, e.reason)
  logging.info("phase %s: training", name)
  start = time.perf_counter()
  params = jax.block_until_ready(train())
  seconds = time.perf_counter() - start
  save_model(path, params, training_time_s=seconds)
  return Trained(params, seconds, False)


def checkpoint_path(workdir: str, name: str, key: str) -> str:
  """``workdir/checkpoints/<name>-<key>``, absolute: where a model keyed by ``key`` lives.

  ``name`` may name a subdirectory (``unlearned/IEU``); a ``/`` in a method's own
  name must be replaced by the caller.
  """
  return os.path.abspath(os.path.join(workdir, "checkpoints", f"{name}-{key}"))


def recorded_checksum(path: str) -> str | None:
  """The checksum recorded beside the checkpoint ``path`` (``<path>.json``, as
  :func:`save_model` and :func:`cached_train` write it); None when it has no record
  (a checkpoint saved by :func:`ieu_jax.checkpoints.save_params` alone).

  Raises:
    checkpoints.CorruptCheckpointError: when the record exists but is unreadable
      or has no checksum.
  """
  if not os.path.exists(path + ".json"):
    return None
  return _read_record(path)[1]


def save_model(path: str, params: Any, **record: Any) -> float:
  """Saves ``params`` to the checkpoint ``path`` and its record ``<path>.json``.

  The record holds ``record`` and :func:`checkpoints.checksum` of ``params``; the
  checkpoint is complete before its record is written. Process 0 alone writes;
  the others return at once.

  Returns:
    The seconds the save took (0 on the other processes).

  Raises:
    OSError: when the checkpoint cannot be saved (naming ``path``).
  """
  if not outputs.is_writer():
    return 0.0
  start = time.perf_counter()
  checkpoints.save_params(path, params)
  outputs.write_json(path + ".json", {**record, "checksum": checkpoints.checksum(params)})
  return time.perf_counter() - start


def method_names(config: ml_collections.ConfigDict, known: Iterable[str], *,
                 always: Sequence[str] = ()) -> list[str]:
  """The methods of the comma-separated ``config.methods``, checked.

  Args:
    config: has ``methods`` and per-method hyperparameters ``method[name]``.
    known: the names a registry knows.
    always: names that need no hyperparameters and always run (first, in this
      order, whether listed or not).

  Raises:
    ValueError: for an unknown method (naming the known ones), one without
      hyperparameters in ``config.method``, a method named twice, or none.
  """
  known = sorted(set(known) | set(always))
  names = [n.strip() for n in str(config.methods).split(",") if n.strip()]
  if not names and not always:
    raise ValueError(f"config.methods={config.methods!r} names no method.")
  if len(set(names)) != len(names):
    raise ValueError(f"config.methods={config.methods!r} names a method twice.")
  for n in names:
    if n not in known:
      raise ValueError(f"unknown method {n!r}: known methods are {known}.")
    if n not in always and n not in config.method:
      raise ValueError(f"method {n!r} has no hyperparameters in config.method.")
  return list(always) + [n for n in names if n not in always]


def method_key(root: jax.Array, stream: int, name: str, index: int = 0) -> jax.Array:
  """The key of method ``name`` (and of candidate ``index`` of a search or sweep).

  ``fold_in(fold_in(fold_in(root, stream), crc32(name)), index)``: it depends on the
  seed, the method's name and the setting's index, never on the method's place in
  a list, so a method run alone and in a longer list gives the same numbers.
  """
  key = jax.random.fold_in(jax.random.fold_in(root, stream), zlib.crc32(name.encode()))
  return jax.random.fold_in(key, index)


def batch_caps(sizes: Mapping[str, tuple[int, int]]) -> list[dict[str, Any]]:
  """The batch sizes larger than their data: ``{what: (batch_size, examples)}`` in.

  Such a batch is capped at the data's size (every step is then full-batch); each
  cap is logged here and belongs in the run's outputs, so a config that says
  100,000 is never silently read as the 990 it ran with.
  """
  caps = []
  for what, (batch, n) in sizes.items():
    if batch > n:
      logging.warning("%s=%d exceeds its %d examples: capped at %d (full batch).", what,
                      batch, n, n)
      caps.append({"what": what, "batch_size": int(batch), "examples": int(n), "used": int(n)})
  return caps


def relearn_protocol(rcd: Any, threshold: float, **overrides: Any) -> _rcd.RelearnProtocol:
  """The attacker of a config section ``rcd`` (a ConfigDict or an :class:`RCDHParams`).

  Reads ``optimizer``, ``learning_rates`` (one or a list), ``momentum``,
  ``batch_size``, ``max_steps``, ``criterion``, ``num_trajectories``,
  ``eval_every``, and optionally ``stop_when_done`` (True), ``probe_every`` (1) and
  ``formulation`` (by backend: :func:`ieu_jax.default_formulation`, recorded as
  chosen). ``overrides`` replace protocol fields (the classifier's criteria are
  accuracy criteria: ``criterion="accuracy"``; its ``guard_drop``).
  """
  r = rcd.to_dict()
  lrs = r["learning_rates"]
  lrs = tuple(float(x) for x in lrs) if isinstance(lrs, (tuple, list)) else float(lrs)
  fields = dict(
      optimizer=r["optimizer"], learning_rates=lrs, momentum=float(r["momentum"]),
      batch_size=int(r["batch_size"]), max_steps=int(r["max_steps"]),
      criterion=r["criterion"], threshold=float(threshold),
      num_trajectories=int(r["num_trajectories"]), eval_every=int(r["eval_every"]),
      stop_when_done=bool(r.get("stop_when_done", True)),
      probe_every=int(r.get("probe_every", 1)),
      formulation=r.get("formulation") or _rcd.default_formulation(),
  )
  return _rcd.RelearnProtocol(**(fields | overrides))


# The attacker's subset is drawn from its own stream of the seed.
ATTACKER_STREAM = 17


def attacker_subset(num_forget: int, size: int, seed: int,
                    stream: int = ATTACKER_STREAM) -> np.ndarray:
  """Sorted indices of the ``min(size, num_forget)`` examples the attacker holds.

  Drawn without replacement from ``numpy.random.default_rng([seed, stream])``, so
  every model compared under one seed meets the same attacker (``stream``: the
  forget examples' by default; another for another set, e.g. the retain set).
  """
  m = min(int(size), int(num_forget))
  rng = np.random.default_rng([int(seed), int(stream)])
  return np.sort(rng.choice(int(num_forget), m, replace=False))


def result_flags(row: Mapping[str, Any], reference: Mapping[str, Any], *, utility: str,
                 margin: float, what: str) -> list[str]:
  """The warnings a results row carries.

  Args:
    row: has ``row[utility]`` and ``row["rcd"]`` (``censored_frac``).
    reference: Retrain's row.
    utility: the key of the utility that must not collapse (``RA``, ``retain_rate``).
    margin: how far below the reference's utility is a collapse.
    what: the utility's name in the flag.
  """
  flags = []
  if row[utility] < reference[utility] - float(margin):
    flags.append(f"{what} far below Retrain's")
  if row["rcd"]["censored_frac"] > 0:
    flags.append("censored relearning")
  if reference["rcd"].get("steps_mean") == 0 and row is not reference:
    flags.append("RCD not normalised: Retrain meets the criterion before relearning")
  return flags


# Config keys that say how a run treats its files, not what it computes: a finished
# run is reused whatever they were.
_OPERATIONAL_KEYS = ("strict_checkpoints", "save_unlearned", "frontier", "ulira")


def _computed(config: Any) -> Any:
  """A config's JSON dictionary without its :data:`_OPERATIONAL_KEYS`, and without
  the keys a fingerprint leaves out at their defaults (a key that arrived at its
  default changed no finished run)."""
  if not isinstance(config, dict):
    return config
  return {k: _without_defaults(k, v) for k, v in config.items() if k not in _OPERATIONAL_KEYS}


def finished_run(run_dir: str, config: ml_collections.ConfigDict) -> dict[str, Any] | None:
  """The results of a finished run of exactly ``config`` in ``run_dir``, else None.

  Exactly: every key but the operational ones (``strict_checkpoints``,
  ``save_unlearned``), which change no number.
  """
  path = os.path.join(run_dir, "results.json")
  try:
    with open(path) as f:
      results = json.load(f)
  except (OSError, ValueError):
    return None
  same = _computed(results.get("config")) == _computed(outputs.json_safe(config.to_dict()))
  return results if same else None


def _num(x) -> float:
  return math.nan if x is None else float(x)


def _field(row: Mapping[str, Any], path: str) -> Any:
  """``row[a][b]`` for ``path = "a.b"``; None where any part is missing."""
  for part in path.split("."):
    if not isinstance(row, Mapping) or part not in row:
      return None
    row = row[part]
  return row


def aggregate(
    runs: Sequence[Mapping[str, Any]],
    *,
    fields: Sequence[str],
    rows: str = "methods",
) -> dict[str, dict[str, Any]]:
  """Mean and std over seeds of every metric, per method (NaN-aware, counts kept).

  RCD steps are each seed's restricted mean (a censored trajectory counts as the
  budget, :class:`ieu_jax.RCDSummary`), so every seed counts, the censored ones
  included; ``rcd_lower_bound`` counts the seeds on which the mean is a lower bound
  (tables print ``>=``). ``n`` says how many seeds a method has (a method that failed
  on a seed is missing from it, and counted in ``failed``). A value that is
  undefined on a seed (``normalized`` when Retrain relearns in 0 steps) is left out
  of that field's mean.

  Args:
    runs: one results dictionary per seed.
    fields: the per-method metrics to aggregate (besides RCD's); ``"a.b"`` reads
      ``row["a"]["b"]`` and is reported under that name.
    rows: the key of the per-method list in each run (``"models"`` for the
      generative experiment).
  """
  table: dict[str, dict[str, list[float]]] = {}
  failures: dict[str, int] = {}
  for run in runs:
    for f in run.get("failed", []):
      failures[f["name"]] = failures.get(f["name"], 0) + 1
    for m in run[rows]:
      row = table.setdefault(m["name"], {"n": []})
      row["n"].append(1.0)
      for f in fields:
        row.setdefault(f, []).append(_num(_field(m, f)))
      for f in ("steps_mean", "censored_frac", "normalized", "worst_case_normalized"):
        row.setdefault(f"rcd_{f}", []).append(_num(m["rcd"].get(f)))
      row.setdefault("lower_bound", []).append(bool(m["rcd"].get("lower_bound", False)))
  out = {}
  for name, count in failures.items():
    if name not in table:  # failed on every seed: a row that says so
      out[name] = {"n": 0, "failed": count}
  for name, row in table.items():
    out[name] = {"n": len(row.pop("n")), "failed": failures.get(name, 0),
                 "rcd_lower_bound": int(sum(row.pop("lower_bound")))}
    for f, values in row.items():
      v = np.asarray(values, np.float64)
      ok = v[np.isfinite(v)]
      out[name][f] = (float(ok.mean()) if ok.size else math.nan,
                      float(ok.std()) if ok.size else math.nan)
  return out
