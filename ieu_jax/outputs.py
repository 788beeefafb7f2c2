"""Every file the project writes goes through here: atomic, and from process 0 only.

Under ``jax.distributed`` every process runs the same program; only process 0
writes. Every file is written to a temporary name beside its destination and
renamed over it, so a run killed mid-write leaves the previous file intact, never
a truncated one. Results are JSON-safe (:func:`json_safe`) and tables are
markdown (:func:`markdown_table`), with numbers formatted by :func:`fmt`.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Sequence

import jax
import numpy as np

__all__ = [
    "fmt",
    "fmt_mean_std",
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


def _atomic(path: str, write) -> None:
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  root, ext = os.path.splitext(path)
  tmp = f"{root}.tmp-{os.getpid()}{ext}"  # keeps the extension (matplotlib reads it)
  try:
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


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  """A markdown table; cells are written with ``str`` (format numbers before)."""
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for row in rows:
    if len(row) > len(header):
      raise ValueError(f"a row of {len(row)} cells under a header of {len(header)}.")
    lines.append("| " + " | ".join(str(c) for c in row) + " |")
  return "\n".join(lines)
