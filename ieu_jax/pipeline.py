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

import contextlib
import dataclasses
import datetime
import functools
import hashlib
import inspect
import json
import math
import os
import socket
import tempfile
import time
import uuid
import zlib
from typing import Any, Callable, Iterable, Iterator, Literal, Mapping, NamedTuple, Sequence

import jax
import ml_collections
import numpy as np
from absl import logging

from ieu_jax import _rcd
from ieu_jax import checkpoints
from ieu_jax import outputs
from ieu_jax.hparams import HParams

__all__ = [
    "ATTACKER_STREAM",
    "LOCK_NAME",
    "RCDHParams",
    "Trained",
    "WorkdirError",
    "WorkdirInUse",
    "WorkdirNotWritable",
    "batch_caps",
    "aggregate",
    "attacker_subset",
    "cached_train",
    "check_writable",
    "fingerprint",
    "finished_run",
    "locks_workdir",
    "method_key",
    "method_names",
    "validate_sections",
    "relearn_protocol",
    "result_flags",
    "workdir",
]


def _plain(value: Any) -> Any:
  return value.to_dict() if hasattr(value, "to_dict") else value


def fingerprint(config: ml_collections.ConfigDict, what: str, parts: Sequence[str],
                extra: Mapping[str, Any] | None = None) -> str:
  """12 hex digits of the config sections ``parts``, the seed, ``what`` and ``extra``.

  A cached model (or row) is reused only when everything that made it is the same:
  a changed section trains anew instead of silently reusing a stale result.
  """
  blob = {p: _plain(config[p]) for p in parts}
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
  path = os.path.abspath(os.path.join(workdir, "checkpoints", f"{name}-{key}"))
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
  if outputs.is_writer():
    checkpoints.save_params(path, params)
    outputs.write_json(path + ".json",
                       {"training_time_s": seconds, "checksum": checkpoints.checksum(params)})
  return Trained(params, seconds, False)


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


@dataclasses.dataclass(frozen=True, kw_only=True)
class RCDHParams(HParams):
  """The attacker's settings (``config.rcd``), checked before any work.

  See :class:`ieu_jax.RelearnProtocol` for the fields it shares;
  ``relearn_size`` is ``m``, the forget examples the attacker holds.
  """

  optimizer: Literal["sgd", "adam"] = "sgd"
  learning_rates: float | tuple[float, ...] = 0.01
  momentum: float = 0.0
  batch_size: int = 32
  max_steps: int = 200
  eval_every: int = 1
  num_trajectories: int = 8
  relearn_size: int = 256
  criterion: Literal["accuracy", "loss"] = "accuracy"
  formulation: str | None = None
  stop_when_done: bool = True
  probe_every: int = 1

  def validate(self) -> None:
    if self.max_steps % self.eval_every:
      raise ValueError(f"{type(self).__name__}: max_steps={self.max_steps} is not a multiple"
                       f" of eval_every={self.eval_every}.")
    if self.formulation is not None and self.formulation not in _rcd.FORMULATIONS:
      raise ValueError(f"{type(self).__name__}: formulation={self.formulation!r}: expected"
                       f" one of {_rcd.FORMULATIONS}.")


def validate_sections(config: ml_collections.ConfigDict,
                      sections: Mapping[str, type[HParams]]) -> dict[str, HParams]:
  """Builds every ``config.<section>`` as its typed class: all checks, before any work.

  Raises:
    ValueError: naming the section, the key and the bad value (``config.train:
      epochs=0 must be a positive integer.``), or a missing section.
    TypeError: for a value of the wrong kind, likewise named.
  """
  out = {}
  for name, cls in sections.items():
    if name not in config:
      raise ValueError(f"config has no section {name!r}.")
    out[name] = cls.from_config(config[name], method=f"config.{name}")
  return out


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


def relearn_protocol(rcd: Any, threshold: float) -> _rcd.RelearnProtocol:
  """The attacker of a config section ``rcd`` (a ConfigDict or an :class:`RCDHParams`).

  Reads ``optimizer``, ``learning_rates`` (one or a list), ``momentum``,
  ``batch_size``, ``max_steps``, ``criterion``, ``num_trajectories``,
  ``eval_every``, and optionally ``stop_when_done`` (True), ``probe_every`` (1) and
  ``formulation`` (by backend: :func:`ieu_jax.default_formulation`, recorded as
  chosen).
  """
  r = rcd.to_dict()
  lrs = r["learning_rates"]
  lrs = tuple(float(x) for x in lrs) if isinstance(lrs, (tuple, list)) else float(lrs)
  return _rcd.RelearnProtocol(
      optimizer=r["optimizer"], learning_rates=lrs, momentum=float(r["momentum"]),
      batch_size=int(r["batch_size"]), max_steps=int(r["max_steps"]),
      criterion=r["criterion"], threshold=float(threshold),
      num_trajectories=int(r["num_trajectories"]), eval_every=int(r["eval_every"]),
      stop_when_done=bool(r.get("stop_when_done", True)),
      probe_every=int(r.get("probe_every", 1)),
      formulation=r.get("formulation") or _rcd.default_formulation(),
  )


# The attacker's subset is drawn from its own stream of the seed.
ATTACKER_STREAM = 17


def attacker_subset(num_forget: int, size: int, seed: int) -> np.ndarray:
  """Sorted indices of the ``min(size, num_forget)`` forget examples the attacker holds.

  Drawn without replacement from ``numpy.random.default_rng([seed,
  ATTACKER_STREAM])``, so every model compared under one seed meets the same
  attacker.
  """
  m = min(int(size), int(num_forget))
  rng = np.random.default_rng([int(seed), ATTACKER_STREAM])
  return np.sort(rng.choice(int(num_forget), m, replace=False))


def result_flags(row: Mapping[str, Any], reference: Mapping[str, Any], *, utility: str,
                 margin: float, what: str) -> list[str]:
  """The warnings a results row carries.

  Args:
    row: has ``row[utility]`` and ``row["rcd"]["censored_frac"]``.
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
  return flags


# Config keys that say how a run treats its files, not what it computes: a finished
# run is reused whatever they were.
_OPERATIONAL_KEYS = ("strict_checkpoints",)


def _computed(config: Any) -> Any:
  """A config's JSON dictionary without its :data:`_OPERATIONAL_KEYS`."""
  if not isinstance(config, dict):
    return config
  return {k: v for k, v in config.items() if k not in _OPERATIONAL_KEYS}


def finished_run(run_dir: str, config: ml_collections.ConfigDict) -> dict[str, Any] | None:
  """The results of a finished run of exactly ``config`` in ``run_dir``, else None.

  Exactly: every key but ``strict_checkpoints``, which changes no number.
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


def aggregate(
    runs: Sequence[Mapping[str, Any]],
    *,
    fields: Sequence[str],
    rows: str = "methods",
) -> dict[str, dict[str, Any]]:
  """Mean and std over seeds of every metric, per method (NaN-aware, counts kept).

  RCD steps are averaged over the seeds whose mean is defined; ``censored_frac`` over
  all seeds; ``n`` says how many seeds a method has (a method that failed on a seed
  is missing from it).

  Args:
    runs: one results dictionary per seed.
    fields: the per-method metrics to aggregate (besides RCD's).
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
        row.setdefault(f, []).append(_num(m.get(f)))
      for f in ("steps_mean", "censored_frac", "normalized"):
        row.setdefault(f"rcd_{f}", []).append(_num(m["rcd"].get(f)))
  out = {}
  for name, count in failures.items():
    if name not in table:  # failed on every seed: a row that says so
      out[name] = {"n": 0, "failed": count}
  for name, row in table.items():
    out[name] = {"n": len(row.pop("n")), "failed": failures.get(name, 0)}
    for f, values in row.items():
      v = np.asarray(values, np.float64)
      ok = v[np.isfinite(v)]
      out[name][f] = (float(ok.mean()) if ok.size else math.nan,
                      float(ok.std()) if ok.size else math.nan)
  return out


# ============================================================================
# One workdir, one run.
# ============================================================================

LOCK_NAME = ".lock"


class WorkdirError(OSError):
  """A workdir a run cannot use; the message is one line that says why."""


class WorkdirNotWritable(WorkdirError):
  """The workdir cannot be created or written to."""


class WorkdirInUse(WorkdirError):
  """Another run holds the workdir's lock file.

  Attributes:
    lockfile: the lock file's path.
    holder: what the lock file records (``pid``, ``host``, ``started``), or None
      when it cannot be read.
  """

  def __init__(self, message: str, lockfile: str, holder: dict[str, Any] | None):
    super().__init__(message)
    self.lockfile = lockfile
    self.holder = holder


def _reason(e: OSError) -> str:
  return e.strerror or str(e) or type(e).__name__


def _not_a_directory(path: str) -> str:
  """The first of ``path`` and its parents that exists (and is not a directory)."""
  path = os.path.abspath(path)
  while not os.path.exists(path) and os.path.dirname(path) != path:
    path = os.path.dirname(path)
  return path


def check_writable(path: str) -> None:
  """Creates the directory ``path`` and writes and removes a probe file in it.

  Every process may call it; call it from the writer (process 0) alone, as
  :func:`workdir` does.

  Raises:
    WorkdirNotWritable: ``workdir <path> is not writable: <reason>``.
  """
  try:
    os.makedirs(path, exist_ok=True)
    fd, probe = tempfile.mkstemp(dir=path, prefix=".probe-")
    try:
      os.write(fd, b"probe")
    finally:
      os.close(fd)
      os.remove(probe)
  except OSError as e:
    reason = _reason(e)
    if isinstance(e, (FileExistsError, NotADirectoryError)):
      reason = f"{_not_a_directory(path)} is not a directory"
    raise WorkdirNotWritable(f"workdir {path} is not writable: {reason}") from e


def _read_lock(lockfile: str) -> dict[str, Any] | None:
  """The lock file's record; None when unreadable. Raises FileNotFoundError when gone."""
  try:
    with open(lockfile) as f:
      record = json.load(f)
  except FileNotFoundError:
    raise
  except (OSError, ValueError):
    return None
  return record if isinstance(record, dict) else None


def _is_stale(holder: dict[str, Any] | None) -> bool:
  """Whether the holder is a process of this host that has exited."""
  if holder is None or holder.get("host") != socket.gethostname():
    return False  # unreadable, or another host's process: cannot tell
  pid = holder.get("pid")
  if not isinstance(pid, int) or pid <= 0:  # os.kill(0, ...) would mean the process group
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return True
  except OSError:  # PermissionError: alive, another user's
    return False
  return False


def _in_use(path: str, lockfile: str, holder: dict[str, Any] | None) -> WorkdirInUse:
  if holder is None:
    who = f"a process whose lock file {lockfile} cannot be read"
  else:
    who = (f"process {holder.get('pid')} on {holder.get('host')}"
           f" (started {holder.get('started')})")
  return WorkdirInUse(f"workdir {path} is in use by {who}; wait for it or remove {lockfile}"
                      " if it is gone", lockfile, holder)


def _acquire(path: str) -> tuple[str, dict[str, Any]]:
  """Creates ``<path>/.lock`` (O_EXCL) with this process's record; takes over a stale one."""
  lockfile = os.path.join(path, LOCK_NAME)
  record = {"pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "token": uuid.uuid4().hex}
  holder = None
  try:
    for _ in range(3):  # a lock that vanishes or is stale is tried again, a few times
      try:
        fd = os.open(lockfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
      except FileExistsError:
        try:
          holder = _read_lock(lockfile)
          if not _is_stale(holder):
            raise _in_use(path, lockfile, holder) from None
          logging.warning("workdir %s: taking over the lock of process %s on %s (started %s),"
                          " which has exited", path, holder["pid"], holder["host"],
                          holder.get("started"))
          if _read_lock(lockfile) == holder:  # not taken over by another run meanwhile
            os.remove(lockfile)
        except FileNotFoundError:
          pass  # released meanwhile
        continue
      try:
        with os.fdopen(fd, "w") as f:
          json.dump(record, f)
          f.flush()
          os.fsync(f.fileno())
      except BaseException:
        os.remove(lockfile)  # an empty lock file would lock the workdir for good
        raise
      return lockfile, record
  except WorkdirInUse:
    raise
  except OSError as e:
    raise WorkdirNotWritable(f"workdir {path} is not writable: {_reason(e)}") from e
  raise _in_use(path, lockfile, holder)


def _release(lockfile: str, record: dict[str, Any]) -> None:
  """Removes the lock file if it is still this run's."""
  try:
    if _read_lock(lockfile) != record:
      logging.warning("workdir lock %s was taken over by another run; leaving it", lockfile)
      return
    os.remove(lockfile)
  except FileNotFoundError:
    logging.warning("workdir lock %s was removed while the run held it", lockfile)


@contextlib.contextmanager
def workdir(path: str) -> Iterator[str]:
  """Holds the workdir ``path`` for one run: checked writable, then locked.

  On process 0 (:func:`ieu_jax.outputs.is_writer`): creates the directory,
  writes and removes a probe file (:func:`check_writable`), and creates the lock
  file ``<path>/.lock`` (``O_CREAT | O_EXCL``) recording this process's pid, host
  and start time; the lock file is removed when the block ends, normally or by an
  exception. A lock file whose process has exited (same host, no such pid) is
  taken over with a warning. Other processes of a ``jax.distributed`` run neither
  check nor lock. Nested workdirs (a sweep's and its runs') are locked
  separately; a workdir already held is refused, even to the process holding it.

  Args:
    path: the workdir.

  Yields:
    ``path``.

  Raises:
    WorkdirNotWritable: ``workdir <path> is not writable: <reason>``.
    WorkdirInUse: ``workdir <path> is in use by process <pid> on <host> (started
      <time>); wait for it or remove <lockfile> if it is gone``.
  """
  if not outputs.is_writer():
    yield path
    return
  check_writable(path)
  lockfile, record = _acquire(path)
  try:
    yield path
  finally:
    _release(lockfile, record)


def locks_workdir(fn: Callable[..., Any]) -> Callable[..., Any]:
  """Decorates an entry point with a ``workdir`` argument to run inside :func:`workdir`.

  The workdir is checked and locked before the entry point's first line runs.
  """
  signature = inspect.signature(fn)
  if "workdir" not in signature.parameters:
    raise TypeError(f"{fn.__qualname__} has no workdir argument.")

  @functools.wraps(fn)
  def run(*args, **kwargs):
    path = signature.bind(*args, **kwargs).arguments["workdir"]
    with workdir(path):
      return fn(*args, **kwargs)

  return run
