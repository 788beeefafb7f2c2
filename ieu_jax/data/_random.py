"""Randomness of the data sets: one integer seed, one stream per purpose."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

# Distinct streams of randomness drawn from one seed: each purpose gets its own
# SeedSequence spawn key, so changing e.g. max_test never changes the train split.
_STREAM_TRAIN_PERMUTATION = 1
_STREAM_TEST_SUBSAMPLE = 2
_STREAM_DIGITS_TEST = 3
_STREAM_FORGET = 4
_STREAM_RELABEL = 5


def _check_seed(seed: Any) -> int:
  if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
    raise ValueError(f"seed={seed!r} must be a non-negative integer.")
  return int(seed)


def _rng(seed: int, stream: int) -> np.random.Generator:
  """An independent NumPy generator for one purpose, from an integer seed."""
  return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream,)))
