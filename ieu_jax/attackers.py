"""The RCD attackers of the classifier pipeline: named threat models, their data, their summary.

``config.rcd.attackers`` names them (:data:`ieu_jax.sections.ATTACKERS`): ``sgd``
(the paper's), ``adam`` and ``retain_only``. :func:`attacks` builds each one's
protocol and, for every data order (trajectory), its own draw: the ``m`` forget
examples the attacker holds (drawn afresh per trajectory, so the spread reflects
the attacker's choice of data as well as its data order), the examples the
criterion is measured on, and the threshold. :func:`rcd_by_attacker` summarises a
model's trajectories under every attacker, normalised by Retrain's under the same
attacker, with the worst case.

The criterion (``config.rcd.criterion``):

* ``relearned`` (the paper's): accuracy on the attacker's own ``m`` forget
  examples reaches the original's accuracy on them minus ``tolerance`` points;
* ``recovered``: accuracy on forget examples the attacker does *not* hold (up to
  ``heldout_size`` of the rest of the forget set) reaches halfway between
  Retrain's and the original's accuracy on those same examples.

Both need, with ``guard_drop`` set, that accuracy on held-out examples of the
other classes (validation examples whose class is not forgotten; every class
under random forgetting) stays within ``guard_drop`` points of its value before
relearning: a model pushed into predicting the forgotten class everywhere does
not count as having relearned it.

Every draw comes from ``numpy.random.default_rng([seed, stream, k])``: the same
for every model compared under one seed (the comparison is paired).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, NamedTuple

import jax
import numpy as np

from ieu_jax import _metrics
from ieu_jax import _rcd
from ieu_jax import pipeline

__all__ = ["Attack", "CRITERIA", "attacks", "forget_draws", "guard_set", "rcd_by_attacker",
           "thresholds"]

CRITERIA = ("relearned", "recovered")

# Each draw has its own stream of the seed.
_FORGET_STREAM = 19
_RETAIN_STREAM = 18
_GUARD_STREAM = 20


class Attack(NamedTuple):
  """One attacker.

  Attributes:
    protocol: its relearning protocol (``threshold``: the mean of the draws').
    relearn_data: the pool it trains from (the forget set, or the retain set).
    eval_data: the pool the criterion is measured on (the forget set).
    draws: each data order's training examples (indices into ``relearn_data``),
      evaluation examples (into ``eval_data``) and threshold.
    guard_data: the other classes' held-out examples, or None (no guard).
  """

  protocol: _rcd.RelearnProtocol
  relearn_data: tuple[jax.Array, jax.Array]
  eval_data: tuple[jax.Array, jax.Array]
  draws: _rcd.Draws
  guard_data: tuple[jax.Array, jax.Array] | None = None


def _permutations(n: int, count: int, seed: int, stream: int) -> np.ndarray:
  """``(count, n)``: permutation ``k`` from ``default_rng([seed, stream, k])``."""
  return np.stack([np.random.default_rng([int(seed), int(stream), k]).permutation(n)
                   for k in range(count)])


def forget_draws(num_forget: int, size: int, heldout: int | None, num_orders: int,
                 seed: int) -> tuple[np.ndarray, np.ndarray | None]:
  """Each data order's ``m`` attacker examples and, optionally, held-out ones.

  Args:
    num_forget: the forget set's size.
    size: ``m``, capped at the forget set (at the forget set minus one with a
      held-out set).
    heldout: the held-out examples per order (capped at what is left), or None.
    num_orders: ``K``.
    seed: the run's seed.

  Returns:
    ``(train (K, m), heldout (K, h) or None)`` sorted indices into the forget set;
    row ``k``'s two sets are disjoint.

  Raises:
    ValueError: when a held-out set is asked of a forget set of fewer than 2.
  """
  if heldout is not None and num_forget < 2:
    raise ValueError(f"the forget set has {num_forget} example(s): the 'recovered' criterion"
                     " needs at least 2 (some for the attacker, some held out).")
  m = min(int(size), num_forget - (heldout is not None))
  perms = _permutations(num_forget, num_orders, seed, _FORGET_STREAM)
  train = np.sort(perms[:, :m], axis=1)
  if heldout is None:
    return train, None
  h = min(int(heldout), num_forget - m)
  return train, np.sort(perms[:, m:m + h], axis=1)


def guard_set(val, forgotten: tuple[int, ...], size: int, seed: int):
  """Up to ``size`` validation examples whose class is not in ``forgotten``.

  Raises:
    ValueError: when there is none (an empty validation split, or every class
      forgotten).
  """
  keep = np.flatnonzero(~np.isin(np.asarray(val.y), np.asarray(forgotten, np.int64)))
  if keep.size == 0:
    raise ValueError(f"config.rcd.guard_drop is set but the validation split has no example"
                     f" outside the forgotten classes {list(forgotten)} ({len(val)} examples):"
                     " set data.val_size > 0 or rcd.guard_drop=None.")
  perm = _permutations(keep.size, 1, seed, _GUARD_STREAM)[0]
  idx = np.sort(keep[perm[:int(size)]])
  return val.x[idx], val.y[idx]


def thresholds(criterion: str, eval_idx: np.ndarray, original_correct: np.ndarray,
               retrain_correct: np.ndarray | None, tolerance: float) -> np.ndarray:
  """``(K,)`` each data order's threshold, in percent.

  ``relearned``: the original's accuracy on the order's examples minus
  ``tolerance``; ``recovered``: halfway between the original's and Retrain's
  accuracy on them; clipped to ``[0, 100]`` (an original that never learnt an
  order's examples gives 0: every model meets it at once, and the rows say so).
  ``*_correct``: per forget example, whether the model predicts its label.
  """
  orig = 100.0 * original_correct[eval_idx].mean(axis=1)
  if criterion == "relearned":
    return np.clip(orig - float(tolerance), 0.0, 100.0)
  return (orig + 100.0 * retrain_correct[eval_idx].mean(axis=1)) / 2.0


def _correct(apply_fn, params, data, batch_size: int) -> np.ndarray:
  logits = _metrics.predict(apply_fn, params, data.x, batch_size=batch_size)
  return np.asarray(np.argmax(np.asarray(logits), -1) == np.asarray(data.y))


def attacks(config, splits, fs, apply_fn, original, retrained,
            threshold: float | None = None) -> dict[str, Attack]:
  """The attackers of ``config.rcd.attackers`` (:data:`ieu_jax.sections.ATTACKERS`).

  All share each data order's forget examples, the criterion's examples, the
  thresholds (``threshold`` overrides them all) and the guard.

  Args:
    config: the run's config (``rcd``, ``forget``, ``eval``, ``seed``).
    splits: the data's splits (the guard comes from ``val``).
    fs: the forget split.
    apply_fn: the classifier.
    original: the original's params (the thresholds).
    retrained: Retrain's params (the ``recovered`` thresholds); may be None
      with ``relearned``.
    threshold: one threshold for every order, instead of the models'.
  """
  rcd, seed = config.rcd, int(config.seed)
  criterion = rcd.get("criterion", "relearned")
  k = int(rcd.num_trajectories)
  train_idx, held_idx = forget_draws(
      len(fs.forget), int(rcd.relearn_size),
      int(rcd.get("heldout_size", 256)) if criterion == "recovered" else None, k, seed)
  eval_idx = train_idx if criterion == "relearned" else held_idx
  if threshold is None:
    batch = int(config.eval.batch_size)
    orig = _correct(apply_fn, original, fs.forget, batch)
    retrain = None if criterion == "relearned" else _correct(apply_fn, retrained, fs.forget,
                                                             batch)
    thr = thresholds(criterion, eval_idx, orig, retrain, float(rcd.get("tolerance", 1.0)))
  else:
    thr = np.full(k, float(threshold))
  guard_drop = rcd.get("guard_drop", None)
  guard = None
  if guard_drop is not None:
    forgotten = ((int(config.forget.forget_class),) if config.forget.mode == "class" else ())
    guard = guard_set(splits.val, forgotten, int(rcd.get("guard_size", 256)), seed)
  protocol = pipeline.relearn_protocol(rcd, float(np.mean(thr)), criterion="accuracy",
                                       guard_drop=guard_drop)
  forget = (fs.forget.x, fs.forget.y)
  draws = _rcd.Draws(train=train_idx, eval=eval_idx, threshold=thr)
  out = {}
  for name in tuple(rcd.get("attackers", ("sgd",))):
    if name == "sgd":
      out[name] = Attack(protocol, forget, forget, draws, guard)
    elif name == "adam":
      adam = dataclasses.replace(protocol, optimizer="adam",
                                 learning_rates=float(rcd.get("adam_learning_rate", 1e-3)))
      out[name] = Attack(adam, forget, forget, draws, guard)
    else:  # retain_only: its own m retain examples per order, no forget example
      m = min(int(rcd.relearn_size), len(fs.retain))
      retain_idx = np.sort(_permutations(len(fs.retain), k, seed, _RETAIN_STREAM)[:, :m], axis=1)
      out[name] = Attack(protocol, (fs.retain.x, fs.retain.y), forget,
                         draws._replace(train=retain_idx), guard)
  return out


def rcd_by_attacker(results: Mapping[str, _rcd.RelearnResult],
                    reference: Mapping[str, _rcd.RelearnResult]) -> dict[str, Any]:
  """A row's ``rcd``: the first attacker's summary, every attacker's, and the worst case.

  ``by_attacker[name]`` is each attacker's :class:`ieu_jax.RCDSummary`, normalised
  by Retrain's under the same attacker; ``worst_case_normalized`` is the minimum of
  ``normalized`` over the attackers (the attacker picks its best attack), NaN only
  when no attacker's is defined. The top-level fields are the first attacker's.
  """
  by = {a: _rcd.rcd_summary(r, reference[a])._asdict() for a, r in results.items()}
  defined = [s["normalized"] for s in by.values() if math.isfinite(s["normalized"])]
  return dict(next(iter(by.values())), by_attacker=by,
              worst_case_normalized=min(defined) if defined else math.nan)
