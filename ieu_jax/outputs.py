"""Every file the project writes goes through here: atomic, and from process 0 only.

Under ``jax.distributed`` every process runs the same program; only process 0
writes. Every file is written to a temporary file beside its destination and
renamed over it, so a run killed mid-write leaves the previous file intact, never
a truncated one. Each write has a temporary file of its own (``tempfile.mkstemp``),
so concurrent writers of one path, threads or processes, never share one: the last
rename wins, whole. Results are JSON-safe (:func:`json_safe`) and tables are
markdown (:func:`markdown_table`), with numbers formatted by :func:`fmt`.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from typing import Any, Sequence

import jax
import numpy as np

__all__ = [
    "fmt",
    "fmt_mean_std",
    "fmt_steps",
    "is_writer",
    "json_safe",
    "markdown_table",
    "save_figure",
    "write_json",
    "write_text",
]


def is_writer() -> bool:
  """Whether this process writes outputs (process 0)."""
  return jax.process_index() == 0


def json_safe(x: Any) -> Any:
  """``x`` with NumPy scalars and arrays as Python values, non-finite floats as None."""
  if isinstance(x, dict):
    return {str(k): json_safe(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [json_safe(v) for v in x]
  if isinstance(x, np.ndarray):
    return json_safe(x.tolist())
  if isinstance(x, (np.floating, float)):
    return float(x) if math.isfinite(x) else None
  if isinstance(x, (np.integer, np.bool_)):
    return x.item()
  return x


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


# Read once, at import: setting the umask to read it is not thread-safe.
_FILE_MODE = 0o666 & ~_umask()


def _atomic(path: str, write) -> None:
  """Calls ``write(tmp)`` on a temporary file of its own, then renames it to ``path``."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  base, ext = os.path.splitext(os.path.basename(path))
  # A unique name per write, hidden from globs; the extension is kept (matplotlib
  # reads it).
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{base}.", suffix=ext)
  try:
    try:
      os.fchmod(fd, _FILE_MODE)  # mkstemp's 0600 would outlive the rename
    finally:
      os.close(fd)
    write(tmp)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_text(path: str, data: str | bytes) -> bool:
  """Writes ``data`` to ``path`` atomically on process 0; returns whether it wrote."""
  if not is_writer():
    return False

  def write(tmp):
    with open(tmp, "wb" if isinstance(data, bytes) else "w") as f:
      f.write(data)

  _atomic(path, write)
  return True


def write_json(path: str, obj: Any) -> bool:
  """:func:`json_safe` of ``obj`` as indented JSON, via :func:`write_text`."""
  return write_text(path, json.dumps(json_safe(obj), indent=2))


def save_figure(fig, path: str, **savefig_kwargs) -> bool:
  """Saves a matplotlib figure atomically on process 0 and closes it."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  try:
    if is_writer():
      _atomic(path, lambda tmp: fig.savefig(tmp, **savefig_kwargs))
      return True
    return False
  finally:
    plt.close(fig)


def fmt(v: Any, digits: int = 2) -> str:
  """``v`` with ``digits`` decimals; ``n/a`` for None, NaN and infinities."""
  if v is None or (isinstance(v, (float, np.floating)) and not math.isfinite(v)):
    return "n/a"
  return f"{v:.{digits}f}"


def fmt_mean_std(mean: Any, std: Any, digits: int = 2) -> str:
  """``mean ± std``; the mean alone when the std is undefined; ``n/a`` without a mean."""
  if mean is None or not math.isfinite(mean):
    return "n/a"
  if std is None or not math.isfinite(std):
    return fmt(mean, digits)
  return f"{fmt(mean, digits)} ± {fmt(std, digits)}"


def fmt_steps(rcd: Any, digits: int = 1) -> str:
  """RCD steps ``mean ± std`` of an RCD summary (a mapping or ``RCDSummary``), as
  ``>= mean ± std`` when censored trajectories make the mean a lower bound."""
  get = rcd.get if isinstance(rcd, dict) else lambda k, d=None: getattr(rcd, k, d)
  text = fmt_mean_std(get("steps_mean"), get("steps_std"), digits)
  return f">= {text}" if get("lower_bound", False) and text != "n/a" else text


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  """A markdown table; cells are written with ``str`` (format numbers before)."""
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for row in rows:
    if len(row) > len(header):
      raise ValueError(f"a row of {len(row)} cells under a header of {len(header)}.")
    lines.append("| " + " | ".join(str(c) for c in row) + " |")
  return "\n".join(lines)
