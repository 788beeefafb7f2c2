"""Small output helpers shared by the experiment pipelines."""

from __future__ import annotations

import math
import os

import numpy as np

__all__ = ["fmt", "json_safe", "write_atomic"]


def json_safe(x):
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


def write_atomic(path: str, data: str | bytes) -> None:
  """Writes ``data`` to a temporary file beside ``path``, then renames it over ``path``.

  A run killed mid-write leaves the previous file intact, never a truncated one.
  """
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "wb" if isinstance(data, bytes) else "w") as f:
    f.write(data)
  os.replace(tmp, path)


def fmt(v, digits: int = 2) -> str:
  """``v`` with ``digits`` decimals; ``n/a`` for None, NaN and infinities."""
  if v is None or (isinstance(v, float) and not math.isfinite(v)):
    return "n/a"
  return f"{v:.{digits}f}"
