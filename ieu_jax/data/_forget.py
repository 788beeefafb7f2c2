"""Forget sets: dividing a training set into a forget set and a retain set."""

from __future__ import annotations

import dataclasses
import numbers

import jax.numpy as jnp
import numpy as np

from ieu_jax.data._random import _check_seed
from ieu_jax.data._random import _rng
from ieu_jax.data._random import _STREAM_FORGET
from ieu_jax.data._random import _STREAM_RELABEL
from ieu_jax.data._splits import Dataset

FORGET_MODES = ("random", "class", "mislabel")
"""The forget-set selection modes of :func:`select_forget`."""


@dataclasses.dataclass(frozen=True)
class ForgetSplit:
  """A training set divided into a forget set and a retain set.

  Attributes:
    forget: the examples to unlearn, with the labels the original model was
      trained on (for ``mode='mislabel'``: the wrong labels).
    retain: the other examples of ``train`` (the retrained reference's data).
    forget_indices: sorted indices of the forget examples in ``train``.
    retain_indices: sorted indices of the retain examples in ``train``; with
      ``forget_indices``, a partition of ``range(len(train))``.
    train: the training set the original model is trained on: the input
      training set, or for ``mode='mislabel'`` that set with the forget
      examples relabelled. ``forget`` and ``retain`` are taken from it.
    forget_clean: the forget examples with their true labels (the same as
      ``forget`` except for ``mode='mislabel'``), to measure whether the wrong
      labels were unlearned.
    mode: the selection mode.
  """

  forget: Dataset
  retain: Dataset
  forget_indices: np.ndarray
  retain_indices: np.ndarray
  train: Dataset
  forget_clean: Dataset
  mode: str


def select_forget(
    train: Dataset,
    *,
    mode: str = "random",
    fraction: float = 0.1,
    forget_class: int | None = None,
    seed: int = 0,
) -> ForgetSplit:
  """Divides a training set into a forget set and a retain set.

  Modes:

  * ``'random'``: ``round(fraction * len(train))`` examples drawn uniformly
    without replacement (the paper's 10%, 30%, 50% scenarios).
  * ``'class'``: every example of class ``forget_class``.
  * ``'mislabel'``: contaminated data. ``round(fraction * len(train))``
    examples drawn uniformly are each relabelled to a different class drawn
    uniformly from the other ``num_classes - 1``; the relabelled examples are
    the forget set, and ``ForgetSplit.train`` (what the original model is
    trained on) carries the wrong labels.

  Args:
    train: the training set.
    mode: one of :data:`FORGET_MODES`.
    fraction: for ``'random'`` and ``'mislabel'``, the share of the training set
      to forget, in ``(0, 1)``; ignored for ``'class'``.
    forget_class: for ``'class'``, the class to forget; must be None otherwise.
    seed: a non-negative integer; the same seed gives the same selection (and
      the same wrong labels).

  Returns:
    The :class:`ForgetSplit`.

  Raises:
    ValueError: for an unknown mode, a fraction outside ``(0, 1)``, a class that
      does not exist, ``forget_class`` given to another mode, an empty forget
      set, or a forget set that is the whole training set.
  """
  seed = _check_seed(seed)
  n = len(train)
  if mode not in FORGET_MODES:
    raise ValueError(f"mode={mode!r} is not one of {FORGET_MODES}.")
  if mode != "class" and forget_class is not None:
    raise ValueError(
        f"forget_class={forget_class!r} is only used with mode='class', not "
        f"mode={mode!r}.")

  if mode == "class":
    if forget_class is None:
      raise ValueError("mode='class' needs forget_class (got None).")
    if (isinstance(forget_class, bool) or
        not isinstance(forget_class, numbers.Integral) or
        not 0 <= forget_class < train.num_classes):
      raise ValueError(
          f"forget_class={forget_class!r} does not exist: classes are "
          f"0..{train.num_classes - 1}.")
    forget_idx = np.flatnonzero(np.asarray(train.y) == int(forget_class))
    what = f"forget_class={forget_class}"
  else:
    if (isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or
        not 0.0 < fraction < 1.0):
      raise ValueError(f"fraction={fraction!r} is outside (0, 1).")
    num_forget = round(fraction * n)
    forget_idx = np.sort(
        _rng(seed, _STREAM_FORGET).choice(n, num_forget, replace=False))
    what = f"fraction={fraction} of {n} examples"

  if forget_idx.size == 0:
    raise ValueError(f"the forget set is empty ({what}, mode={mode!r}).")
  if forget_idx.size == n:
    raise ValueError(
        f"the forget set is the whole training set ({what}, mode={mode!r}): "
        "nothing would be retained.")

  mask = np.zeros(n, bool)
  mask[forget_idx] = True
  retain_idx = np.flatnonzero(~mask)
  forget = forget_clean = train.take(forget_idx)

  if mode == "mislabel":
    if train.num_classes < 2:
      raise ValueError(
          f"mode='mislabel' needs at least 2 classes, got "
          f"num_classes={train.num_classes}.")
    y = np.asarray(train.y).copy()
    shift = _rng(seed, _STREAM_RELABEL).integers(
        1, train.num_classes, size=forget_idx.size)
    y[forget_idx] = (y[forget_idx] + shift) % train.num_classes
    train = Dataset(x=train.x, y=jnp.asarray(y, jnp.int32),
                    num_classes=train.num_classes)
    forget = train.take(forget_idx)

  return ForgetSplit(
      forget=forget, retain=train.take(retain_idx),
      forget_indices=forget_idx, retain_indices=retain_idx, train=train,
      forget_clean=forget_clean, mode=mode)
