"""Per-example privacy metrics for unlearning: U-LiRA and the 2023 challenge score.

Everything here is host-side numpy in float64: the inputs are a few numbers per
(model, example) pair (a logit-scaled confidence), the statistics are sums and
thresholds over them. The formulas, and the choices made where the sources leave
room, are in docs/design.md ("Privacy metrics").

* :func:`logit_confidence`: log(p_y / (1 - p_y)) from logits, stable at any scale.
* :func:`inclusion`, :func:`ulira`: the efficient per-example U-LiRA attack of
  "Inexact unlearning needs more careful evaluations to avoid a false sense of
  privacy" (arXiv 2403.01218, 2024).
* :func:`per_example_epsilon`, :func:`epsilon_score`, :func:`forgetting_quality`,
  :func:`challenge_score`: the evaluation of the NeurIPS 2023 machine unlearning
  challenge ("Are we making progress in unlearning? Findings from the first NeurIPS
  unlearning competition", arXiv 2406.09073, 2024).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

__all__ = [
    "ULiRAResult",
    "challenge_score",
    "epsilon_score",
    "forgetting_quality",
    "inclusion",
    "logit_confidence",
    "per_example_epsilon",
    "ulira",
]


def _is_int(x) -> bool:
  return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def logit_confidence(logits, labels) -> np.ndarray:
  """Logit-scaled true-class confidence, log(p_y / (1 - p_y)), in float64.

  With p = softmax(z), p_y / (1 - p_y) = exp(z_y) / sum_{j != y} exp(z_j), so the
  statistic is z_y - logsumexp_{j != y} z_j: no probability is formed, so it stays
  finite where p_y rounds to 1 (or 0) and the naive form gives +inf (or -inf).

  Args:
    logits: ``(..., K)`` array of logits, K >= 2 classes, finite.
    labels: integer array of shape ``logits.shape[:-1]``, each in ``[0, K)``.

  Returns:
    float64 array of shape ``labels.shape``.

  Raises:
    ValueError: for mismatched shapes, fewer than two classes, non-finite logits,
      non-integer labels or a label outside ``[0, K)``.

  Examples:
    >>> float(logit_confidence([[1000.0, 0.0, 0.0]], [0])[0])  # 1000 - log 2
    999.3068528194401
  """
  z = np.asarray(logits, dtype=np.float64)
  y = np.asarray(labels)
  if z.ndim < 1 or z.shape[-1] < 2:
    raise ValueError(f"logits must have a class axis of size >= 2; got shape {z.shape}.")
  if y.shape != z.shape[:-1]:
    raise ValueError(
        f"labels shape {y.shape} does not match logits shape {z.shape} (expected "
        f"labels of shape {z.shape[:-1]}).")
  if y.size and not np.issubdtype(y.dtype, np.integer):
    raise ValueError(f"labels must be integers; got dtype {y.dtype}.")
  if not np.all(np.isfinite(z)):
    raise ValueError("logits hold non-finite values.")
  k = z.shape[-1]
  if y.size and (y.min() < 0 or y.max() >= k):
    bad = y[(y < 0) | (y >= k)].flat[0]
    raise ValueError(f"label {int(bad)} is outside [0, {k}) for logits with {k} classes.")
  onehot = np.arange(k) == y[..., None]
  z_y = np.take_along_axis(z, y[..., None].astype(np.int64), axis=-1)[..., 0]
  rest = np.where(onehot, -np.inf, z)
  top = rest.max(axis=-1, keepdims=True)  # finite: K >= 2 leaves a finite logit
  others = (top + np.log(np.exp(rest - top).sum(axis=-1, keepdims=True)))[..., 0]
  return z_y - others


# ----------------------------------------------------------------------------- U-LiRA


def inclusion(key_or_seed, num_models: int, population: int,
              forget_size: int) -> tuple[np.ndarray, np.ndarray]:
  """The efficient U-LiRA bookkeeping: who trains on what, and who forgets what.

  Model m draws a uniformly random permutation of the population (from its own key,
  ``jax.random.split(key, num_models)[m]``); its first ``population // 2`` entries
  are its training half and the first ``forget_size`` of those its forget set, so
  the forget set is a uniformly random subset of the training half.

  Args:
    key_or_seed: a ``jax.random`` key, or an int seed (``jax.random.key(seed)``).
    num_models: number of models, >= 1.
    population: number of population examples, even and >= 2.
    forget_size: forget-set size per model, in ``[1, population // 2]``.

  Returns:
    ``(trained, forgotten)``: bool numpy arrays of shape ``(num_models,
    population)``; ``forgotten`` implies ``trained`` and every row of ``trained``
    holds exactly ``population // 2`` True.

  Raises:
    ValueError: for a count out of range or an odd population.
  """
  if not _is_int(num_models) or num_models < 1:
    raise ValueError(f"num_models={num_models!r} must be a positive integer.")
  if not _is_int(population) or population < 2 or population % 2:
    raise ValueError(f"population={population!r} must be an even integer >= 2 "
                     "(each model trains on exactly half).")
  half = population // 2
  if not _is_int(forget_size) or not 1 <= forget_size <= half:
    raise ValueError(f"forget_size={forget_size!r} must be an integer in [1, {half}] "
                     f"(the training half of population={population}).")
  key = jax.random.key(int(key_or_seed)) if _is_int(key_or_seed) else key_or_seed
  keys = jax.random.split(key, num_models)
  perms = np.asarray(jax.vmap(lambda k: jax.random.permutation(k, population))(keys))
  rank = np.empty_like(perms)
  rows = np.arange(num_models)[:, None]
  rank[rows, perms] = np.arange(population)[None, :]  # rank[m, i]: position of i
  return rank < half, rank < forget_size


class ULiRAResult(NamedTuple):
  """What :func:`ulira` returns.

  Attributes:
    accuracy: ``(N,)`` per-target balanced accuracy in percent; NaN for a target
      without a usable unlearned or retrained pair (counted in
      ``targets_without_pairs``).
    mean: mean of the finite entries of ``accuracy`` (percent).
    std: their standard deviation (percent, ``ddof=1``; 0 for a single target).
    llr: ``(N, n)`` log-likelihood ratio log N(s; unlearned fit) - log N(s;
      retrained fit) for every attacked pair (unlearned or retrained, not
      skipped); NaN elsewhere. Positive means "predicted unlearned".
    used: ``(N, n)`` bool, the pairs that entered ``accuracy`` (every attacked
      unlearned pair, and the sampled retrained pairs).
    unlearned_pairs: ``(N, n)`` bool, forgotten[t, i] (attacked or skipped).
    skipped_unlearned: unlearned pairs skipped for too few samples on a side.
    skipped_retrained: retrained pairs skipped for too few samples on a side.
    targets_without_pairs: targets left out of ``mean`` / ``std``.
  """

  accuracy: np.ndarray
  mean: float
  std: float
  llr: np.ndarray
  used: np.ndarray
  unlearned_pairs: np.ndarray
  skipped_unlearned: int
  skipped_retrained: int
  targets_without_pairs: int


def _check_masks(scores, trained, forgotten):
  s = np.asarray(scores, dtype=np.float64)
  tr = np.asarray(trained)
  fg = np.asarray(forgotten)
  if s.ndim != 2:
    raise ValueError(f"scores must be (num_models, population); got shape {s.shape}.")
  for name, a in (("trained", tr), ("forgotten", fg)):
    if a.shape != s.shape:
      raise ValueError(f"{name} shape {a.shape} does not match scores shape {s.shape}.")
    if a.dtype != np.bool_:
      raise ValueError(f"{name} must be a bool array; got dtype {a.dtype}.")
  if s.shape[0] < 2:
    raise ValueError(f"scores has {s.shape[0]} model(s); leaving the target out needs >= 2.")
  if not np.all(np.isfinite(s)):
    m, i = np.argwhere(~np.isfinite(s))[0]
    raise ValueError(f"scores[{m}, {i}] = {s[m, i]} is not finite.")
  bad = fg & ~tr
  if bad.any():
    m, i = np.argwhere(bad)[0]
    raise ValueError(f"forgotten[{m}, {i}] is True but trained[{m}, {i}] is False: a model "
                     f"can only forget an example it trained on ({int(bad.sum())} such pairs).")
  return s, tr, fg


def _loo_gaussian(x, mask, variance_floor):
  """Leave-one-out mean / variance of x[:, i] over {m != t : mask[m, i]}, for all (t, i).

  Returns (count, mean, var), each (N, n); var uses ddof=1 and is floored. The sums
  run on deviations from each example's mean over the whole side, so removing the
  target's sample does not subtract large, nearly equal sums.
  """
  w = mask.astype(np.float64)
  c_all = w.sum(0)
  with np.errstate(invalid="ignore", divide="ignore"):
    centre = np.where(c_all > 0, (w * x).sum(0) / np.maximum(c_all, 1), 0.0)
  dev = x - centre[None, :]
  c = c_all[None, :] - w  # the target's own sample removed where it is on this side
  s1 = -w * dev  # the side's deviations sum to 0; remove the target's
  s2 = (w * dev * dev).sum(0)[None, :] - w * dev * dev
  with np.errstate(invalid="ignore", divide="ignore"):
    shift = s1 / c
    var = (s2 - c * shift * shift) / (c - 1)
  return c, centre[None, :] + shift, np.maximum(var, variance_floor)


def _log_normal(x, mean, var):
  return -0.5 * (np.log(2 * np.pi * var) + (x - mean) ** 2 / var)


def ulira(scores, trained, forgotten, *, seed: int = 0, variance_floor: float = 1e-6,
          min_samples: int = 2) -> ULiRAResult:
  """Efficient per-example U-LiRA: balanced accuracy of a per-example Gaussian attack.

  For target model t and example i, (t, i) is an *unlearned* pair if
  ``forgotten[t, i]`` and a *retrained* pair if ``not trained[t, i]`` (pairs trained
  on and kept are not used). The attack on (t, i) fits one Gaussian to example i's
  scores over the other models that forgot it, {m != t : forgotten[m, i]}, and one
  to those over the other models that never trained on it, {m != t : not
  trained[m, i]} (mean, ``ddof=1`` variance floored at ``variance_floor``), and
  predicts "unlearned" when the log-likelihood ratio at ``scores[t, i]`` is > 0.

  A pair whose example has fewer than ``min_samples`` samples on either side (after
  leaving t out) is skipped and counted. Per target, all its attacked unlearned
  pairs are used and as many of its attacked retrained pairs, drawn without
  replacement by ``np.random.default_rng(seed)`` (targets in order; all of them if
  there are fewer); its accuracy is 0.5 * (accuracy on the unlearned pairs +
  accuracy on the retrained pairs).

  Args:
    scores: ``(N, n)`` float, model m's score (e.g. :func:`logit_confidence`) on
      population example i; finite.
    trained: ``(N, n)`` bool, model m trained on example i.
    forgotten: ``(N, n)`` bool, model m trained on i and then unlearned it; must
      imply ``trained``.
    seed: seed of the numpy Generator that samples the retrained pairs.
    variance_floor: lower bound on each fitted variance (> 0), so that a side whose
      samples coincide still has a density.
    min_samples: least number of samples per side for a pair to be attacked (>= 2,
      the ``ddof=1`` variance needs two).

  Returns:
    A :class:`ULiRAResult`.

  Raises:
    ValueError: for mismatched shapes, non-bool masks, fewer than two models,
      non-finite scores, a forgotten example not marked trained, or a bad
      ``variance_floor`` / ``min_samples``.
  """
  s, tr, fg = _check_masks(scores, trained, forgotten)
  if not (isinstance(variance_floor, (float, int, np.floating, np.integer))
          and np.isfinite(variance_floor) and variance_floor > 0):
    raise ValueError(f"variance_floor={variance_floor!r} must be a finite positive number.")
  if not _is_int(min_samples) or min_samples < 2:
    raise ValueError(f"min_samples={min_samples!r} must be an integer >= 2.")
  num_models = s.shape[0]
  x = s
  c_u, mu_u, var_u = _loo_gaussian(x, fg, variance_floor)
  c_r, mu_r, var_r = _loo_gaussian(x, ~tr, variance_floor)
  enough = (c_u >= min_samples) & (c_r >= min_samples)
  unl_pair = fg
  ret_pair = ~tr
  attacked = (unl_pair | ret_pair) & enough
  with np.errstate(invalid="ignore", divide="ignore"):
    llr_all = _log_normal(x, mu_u, var_u) - _log_normal(x, mu_r, var_r)
  llr = np.where(attacked, llr_all, np.nan)
  rng = np.random.default_rng(seed)
  used = np.zeros_like(attacked)
  acc = np.full(num_models, np.nan)
  for t in range(num_models):
    u_idx = np.flatnonzero(unl_pair[t] & attacked[t])
    r_idx = np.flatnonzero(ret_pair[t] & attacked[t])
    if u_idx.size == 0 or r_idx.size == 0:
      continue
    if r_idx.size > u_idx.size:
      r_idx = np.sort(rng.choice(r_idx, size=u_idx.size, replace=False))
    used[t, u_idx] = True
    used[t, r_idx] = True
    acc_u = np.mean(llr[t, u_idx] > 0)
    acc_r = np.mean(llr[t, r_idx] <= 0)
    acc[t] = 100.0 * 0.5 * (acc_u + acc_r)
  finite = acc[np.isfinite(acc)]
  mean = float(finite.mean()) if finite.size else float("nan")
  std = float(finite.std(ddof=1)) if finite.size > 1 else (0.0 if finite.size else float("nan"))
  return ULiRAResult(
      accuracy=acc, mean=mean, std=std, llr=llr, used=used, unlearned_pairs=unl_pair,
      skipped_unlearned=int((unl_pair & ~enough).sum()),
      skipped_retrained=int((ret_pair & ~enough).sum()),
      targets_without_pairs=int(num_models - finite.size))


# ------------------------------------------------------ the NeurIPS 2023 challenge score


def _as_outputs(a, name) -> np.ndarray:
  v = np.asarray(a, dtype=np.float64)
  if v.ndim != 1 or v.size == 0:
    raise ValueError(f"{name} must be a non-empty 1-D array of model outputs; got shape {v.shape}.")
  if not np.all(np.isfinite(v)):
    raise ValueError(f"{name} holds non-finite values.")
  return v


def _check_delta(delta):
  if not (isinstance(delta, (float, int)) and 0 < delta < 1):
    raise ValueError(f"delta={delta!r} must lie in (0, 1).")


def per_example_epsilon(unlearned, retrained, delta: float = 1e-5) -> float:
  """Empirical epsilon of one forget example from the best threshold attack.

  The attacks are every threshold rule on the 1-D outputs in both directions:
  "unlearned if output > tau" and "unlearned if output <= tau", for tau at -inf,
  +inf and each midpoint between consecutive distinct outputs (these realise every
  distinct (FPR, FNR) a threshold can give). "Positive" is "unlearned"; FPR is the
  share of retrained outputs called unlearned, FNR the share of unlearned outputs
  called retrained. An attack gives

    eps = max(log((1 - delta - FPR) / FNR), log((1 - delta - FNR) / FPR)),

  a term whose numerator is <= 0 gives nothing; an attack with both rates 0 gives
  +inf (it separates the two sets); one with exactly one rate 0 gives nothing (a
  finite sample cannot bound that ratio). The example's epsilon is the largest over
  the attacks, and 0 if none gives more.

  Args:
    unlearned: 1-D outputs of the unlearned models on the example.
    retrained: 1-D outputs of the retrained models on the example.
    delta: the delta of (epsilon, delta), in (0, 1).

  Returns:
    epsilon >= 0 (float, possibly +inf).

  Raises:
    ValueError: for empty, non-1-D or non-finite outputs or delta outside (0, 1).
  """
  u = np.sort(_as_outputs(unlearned, "unlearned"))
  r = np.sort(_as_outputs(retrained, "retrained"))
  _check_delta(delta)
  values = np.unique(np.concatenate([u, r]))
  taus = np.concatenate([[-np.inf], (values[:-1] + values[1:]) / 2, [np.inf]])
  # Rule "unlearned if output > tau".
  fpr = 1.0 - np.searchsorted(r, taus, side="right") / r.size
  fnr = np.searchsorted(u, taus, side="right") / u.size
  # The reversed rule swaps "called unlearned" and "called retrained".
  fpr = np.concatenate([fpr, 1.0 - fpr])
  fnr = np.concatenate([fnr, 1.0 - fnr])
  eps = 0.0
  if np.any((fpr == 0) & (fnr == 0)):
    return float("inf")
  both = (fpr > 0) & (fnr > 0)
  for num, den in ((1 - delta - fpr[both], fnr[both]), (1 - delta - fnr[both], fpr[both])):
    ok = num > 0
    if ok.any():
      eps = max(eps, float(np.max(np.log(num[ok]) - np.log(den[ok]))))
  return eps


def epsilon_score(epsilon, bin_width: float = 0.5, num_bins: int | None = 13):
  """Per-example score of an epsilon: 2 / 2^k for epsilon in bin k (1-based).

  Bin k is [(k - 1) * bin_width, k * bin_width) for k < ``num_bins``; the last bin,
  ``num_bins``, holds everything from ``(num_bins - 1) * bin_width`` on, +inf
  included (the challenge's 13 bins of width 0.5: epsilon >= 6, or a perfect
  separation, scores 2 / 2^13). So epsilon < bin_width scores 1 and each further
  bin halves the score. ``num_bins=None``: no last bin; +inf scores 0.

  Args:
    epsilon: scalar or array of epsilons >= 0 (+inf allowed).
    bin_width: the width of a bin (> 0).
    num_bins: the number of bins (>= 1), or None.

  Returns:
    float64 scores of the same shape, in [0, 1].

  Raises:
    ValueError: for a negative or NaN epsilon, a bad ``bin_width`` or ``num_bins``.
  """
  e = np.asarray(epsilon, dtype=np.float64)
  if not (isinstance(bin_width, (float, int)) and np.isfinite(bin_width) and bin_width > 0):
    raise ValueError(f"bin_width={bin_width!r} must be a finite positive number.")
  if num_bins is not None and not (_is_int(num_bins) and num_bins >= 1):
    raise ValueError(f"num_bins={num_bins!r} must be an integer >= 1 or None.")
  if np.any(np.isnan(e)) or np.any(e < 0):
    bad = e[np.isnan(e) | (e < 0)].flat[0]
    raise ValueError(f"epsilon {bad} is not a non-negative number.")
  with np.errstate(over="ignore", invalid="ignore"):
    k = np.floor(e / bin_width) + 1
    if num_bins is not None:
      k = np.minimum(k, num_bins)
    score = 2.0 * np.exp2(-k)  # k = +inf (no last bin): 0
  return score if score.ndim else float(score)


def forgetting_quality(unlearned, retrained, *, delta: float = 1e-5, bin_width: float = 0.5,
                       num_bins: int | None = 13) -> tuple[float, np.ndarray]:
  """Forgetting quality F: the mean over forget examples of :func:`epsilon_score`.

  Args:
    unlearned: ``(N_u, F)`` outputs of N_u unlearned models on the F forget examples.
    retrained: ``(N_r, F)`` outputs of N_r retrained models on the same examples.
    delta: the delta of (epsilon, delta).
    bin_width, num_bins: see :func:`epsilon_score`.

  Returns:
    ``(F, epsilons)``: F in [0, 1], and the ``(F,)`` per-example epsilons.

  Raises:
    ValueError: for arrays that are not 2-D, disagree on the number of examples,
      or are empty.
  """
  u = np.asarray(unlearned, dtype=np.float64)
  r = np.asarray(retrained, dtype=np.float64)
  if u.ndim != 2 or r.ndim != 2:
    raise ValueError(f"unlearned {u.shape} and retrained {r.shape} must both be "
                     "(num_models, num_forget_examples).")
  if u.shape[1] != r.shape[1] or u.shape[1] == 0:
    raise ValueError(f"unlearned covers {u.shape[1]} forget examples, retrained "
                     f"{r.shape[1]}: they must agree and be >= 1.")
  eps = np.array([per_example_epsilon(u[:, j], r[:, j], delta) for j in range(u.shape[1])])
  return float(np.mean(epsilon_score(eps, bin_width, num_bins))), eps


def challenge_score(forget_quality: float, ra_unlearned: float, ra_retrain: float,
                    ta_unlearned: float, ta_retrain: float) -> float:
  """Final challenge score: F * (RA_unlearned / RA_retrain) * (TA_unlearned / TA_retrain).

  The accuracies are each averaged over that side's models (any common unit: the
  ratios are unit-free); the ratios are not clipped at 1.

  Raises:
    ValueError: for F outside [0, 1], a negative accuracy or a zero retrain accuracy.
  """
  if not 0 <= forget_quality <= 1:
    raise ValueError(f"forget_quality={forget_quality!r} must lie in [0, 1].")
  for name, v in (("ra_unlearned", ra_unlearned), ("ta_unlearned", ta_unlearned)):
    if not v >= 0:
      raise ValueError(f"{name}={v!r} must be >= 0.")
  for name, v in (("ra_retrain", ra_retrain), ("ta_retrain", ta_retrain)):
    if not v > 0:
      raise ValueError(f"{name}={v!r} must be > 0 (it divides).")
  return float(forget_quality * (ra_unlearned / ra_retrain) * (ta_unlearned / ta_retrain))
