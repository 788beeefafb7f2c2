"""Diffs two results files (results.json, theory.json, ...), timings aside.

A refactor changes no number: save the ``:small`` outputs before, run them
again after, and diff::

  python scripts/diff_results.py before/results.json after/results.json

Prints every path whose value differs or exists on one side only (keys whose
name says time or seconds are skipped), then the count; exits 1 when a value
differs, 0 when the only differences are added or removed keys.
"""

import json
import sys

_SKIP = ("time", "seconds", "devices", "restored")


def diff(a, b, path=""):
  """``(path, old, new)`` for every difference; a missing side is ``"<absent>"``."""
  if isinstance(a, dict) and isinstance(b, dict):
    for k in sorted(set(a) | set(b)):
      if any(s in k for s in _SKIP):
        continue
      yield from diff(a.get(k, "<absent>"), b.get(k, "<absent>"), f"{path}/{k}")
  elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
    for i, (x, y) in enumerate(zip(a, b)):
      yield from diff(x, y, f"{path}[{i}]")
  elif a != b:
    yield path, a, b


def main(argv):
  if len(argv) != 3:
    raise SystemExit(__doc__)
  with open(argv[1]) as f, open(argv[2]) as g:
    rows = list(diff(json.load(f), json.load(g)))
  for path, old, new in rows:
    print(f"{path}: {old!r} -> {new!r}")
  changed = [r for r in rows if "<absent>" not in (r[1], r[2])]
  print(f"{len(rows)} differences ({len(changed)} changed values, "
        f"{len(rows) - len(changed)} keys added or removed)")
  return 1 if changed else 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
