"""One workdir, one run: a write probe before any work, and a lock while the run lasts.

:func:`workdir` (and the decorator :func:`locks_workdir` every entry point that
writes a workdir wears) creates the workdir, writes and removes a probe file (an
unwritable workdir is a one-line error before any work), and holds the lock file
``<workdir>/.lock`` (pid, host, start time) while the run lasts. A second run on the
same workdir stops at once, naming the holder; a lock whose process has exited on
this host is taken over with a warning. Only process 0 checks and locks.
Re-exported by :mod:`ieu_jax.pipeline`.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import inspect
import json
import os
import socket
import tempfile
import uuid
from typing import Any, Callable, Iterator

from absl import logging

from ieu_jax import outputs

__all__ = ["LOCK_NAME", "WorkdirError", "WorkdirInUse", "WorkdirNotWritable", "check_writable",
           "locks_workdir", "workdir"]

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
