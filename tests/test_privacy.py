"""Tests for ieu_jax.privacy: closed forms, hand-worked examples, statistical checks."""

import math

import jax
import numpy as np
import pytest

from ieu_jax import privacy

DELTA = 1e-5


# ------------------------------------------------------------------- logit_confidence


def test_logit_confidence_matches_float64_naive_form():
  rng = np.random.default_rng(0)
  logits = rng.normal(scale=4.0, size=(50, 7))
  labels = rng.integers(0, 7, size=50)
  p = np.exp(logits - logits.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  p_y = p[np.arange(50), labels]
  np.testing.assert_allclose(privacy.logit_confidence(logits, labels),
                             np.log(p_y / (1 - p_y)), rtol=1e-10, atol=1e-10)


def test_logit_confidence_extreme_logits():
  # Row 0: p_y rounds to 1 in float64, so the naive log(p/(1-p)) is +inf; the exact
  # value is z_y - log(exp(0) + exp(0)) = 1000 - log 2. Row 1: p_y rounds to 0 (naive
  # -inf); exact: -1000 - log(exp(0) + exp(-2000)) = -1000 (exp(-2000) underflows).
  logits = np.array([[1000.0, 0.0, 0.0], [-1000.0, 0.0, -2000.0]])
  out = privacy.logit_confidence(logits, np.array([0, 0]))
  np.testing.assert_allclose(out, [1000.0 - math.log(2.0), -1000.0], rtol=0, atol=1e-9)
  # Leading batch axes are kept.
  assert privacy.logit_confidence(np.zeros((2, 3, 4)), np.zeros((2, 3), int)).shape == (2, 3)
  np.testing.assert_allclose(privacy.logit_confidence(np.zeros((1, 4)), [1]), [-math.log(3.0)])


@pytest.mark.parametrize("logits, labels, match", [
    (np.zeros((3, 4)), np.zeros(2, int), r"labels shape \(2,\)"),
    (np.zeros((3, 1)), np.zeros(3, int), r"shape \(3, 1\)"),
    (np.zeros((2, 4)), np.array([0, 4]), "label 4 is outside"),
    (np.zeros((2, 4)), np.array([0.0, 1.0]), "dtype float64"),
    (np.array([[0.0, np.nan]]), np.array([0]), "non-finite"),
])
def test_logit_confidence_bad_input(logits, labels, match):
  with pytest.raises(ValueError, match=match):
    privacy.logit_confidence(logits, labels)


# ------------------------------------------------------------------------- inclusion


def test_inclusion_bookkeeping():
  trained, forgotten = privacy.inclusion(jax.random.key(3), 40, 100, 7)
  assert trained.shape == forgotten.shape == (40, 100)
  assert trained.dtype == forgotten.dtype == np.bool_
  np.testing.assert_array_equal(trained.sum(1), 50)    # exactly half each
  np.testing.assert_array_equal(forgotten.sum(1), 7)   # forget_size each
  assert not np.any(forgotten & ~trained)              # forget set inside training half
  # Rows differ (keys split per model) and an int seed is the same as its key.
  assert len({r.tobytes() for r in trained}) == 40
  t2, f2 = privacy.inclusion(3, 40, 100, 7)
  np.testing.assert_array_equal(t2, trained)
  np.testing.assert_array_equal(f2, forgotten)
  # Uniform: each example is trained on by about half the models.
  big_t, big_f = privacy.inclusion(0, 2000, 10, 2)
  np.testing.assert_allclose(big_t.mean(0), 0.5, atol=0.05)
  np.testing.assert_allclose(big_f.mean(0), 0.2, atol=0.04)


def test_ulira_llr_matches_float64_loop():
  # The whole LLR matrix recomputed pair by pair from explicit sample lists. Models
  # that trained on an example and kept it score +1000 there: a fit that took one of
  # them as a "retrained" (or "unlearned") sample would be off by hundreds.
  trained, forgotten = privacy.inclusion(1, 24, 30, 6)
  rng = np.random.default_rng(2)
  scores = rng.normal(size=trained.shape) + 0.5 * forgotten + 1000.0 * (trained & ~forgotten)
  floor, min_samples = 1e-3, 3
  res = privacy.ulira(scores, trained, forgotten, variance_floor=floor, min_samples=min_samples)
  expected = np.full(trained.shape, np.nan)
  skipped_u = skipped_r = 0
  for t in range(24):
    for i in range(30):
      if not (forgotten[t, i] or not trained[t, i]):
        continue
      unl = [scores[m, i] for m in range(24) if m != t and forgotten[m, i]]
      ret = [scores[m, i] for m in range(24) if m != t and not trained[m, i]]
      if len(unl) < min_samples or len(ret) < min_samples:
        skipped_u += int(forgotten[t, i])
        skipped_r += int(not trained[t, i])
        continue
      logpdf = []
      for side in (unl, ret):
        mean = sum(side) / len(side)
        var = max(sum((v - mean) ** 2 for v in side) / (len(side) - 1), floor)
        logpdf.append(-0.5 * math.log(2 * math.pi * var) - (scores[t, i] - mean) ** 2 / (2 * var))
      expected[t, i] = logpdf[0] - logpdf[1]
  assert skipped_u > 0  # the configuration exercises the skips
  assert (res.skipped_unlearned, res.skipped_retrained) == (skipped_u, skipped_r)
  np.testing.assert_array_equal(np.isnan(res.llr), np.isnan(expected))
  np.testing.assert_allclose(res.llr, expected, rtol=1e-9, atol=1e-9)
  # Retrained samples never come from a model that trained on the example: every
  # retrained fit stays near 0, so no LLR is of the size a +1000 sample would cause.
  assert np.nanmax(np.abs(res.llr)) < 100.0


@pytest.mark.parametrize("args, match", [
    ((0, 0, 10, 2), "num_models=0"),
    ((0, 4, 9, 2), "population=9"),
    ((0, 4, 10, 6), r"forget_size=6 must be an integer in \[1, 5\]"),
    ((0, 4, 10, 0), "forget_size=0"),
])
def test_inclusion_bad_input(args, match):
  with pytest.raises(ValueError, match=match):
    privacy.inclusion(*args)


# ----------------------------------------------------------------------------- U-LiRA


def _population_scores(seed, trained, forgotten, shift):
  """Per-example means (spread 3) + N(0, 1) noise + ``shift`` where forgotten."""
  rng = np.random.default_rng(seed)
  mu = 3.0 * rng.normal(size=trained.shape[1])
  return mu[None, :] + shift * forgotten + rng.normal(size=trained.shape)


def test_ulira_identical_distributions_give_chance():
  # Unlearned and retrained scores are both N(mu_i, 1): no attack beats 50% in
  # expectation. Over 8 replicates of this configuration the mean accuracy had a
  # standard deviation of 0.47 points, so +-2 points is ~4 SD. An attack that fits the
  # Gaussians with the target *included* sees its own score in the unlearned fit on
  # every unlearned pair (and in the retrained fit on every retrained pair), and scored
  # 57.3 +- 0.3 over the same 8 replicates: this test rejects it.
  trained, forgotten = privacy.inclusion(7, 64, 400, 100)
  scores = _population_scores(7, trained, forgotten, 0.0)
  res = privacy.ulira(scores, trained, forgotten, seed=0)
  assert abs(res.mean - 50.0) < 2.0, res.mean
  assert res.skipped_unlearned == res.skipped_retrained == res.targets_without_pairs == 0
  assert np.all(np.isfinite(res.accuracy))
  # Each target: all its unlearned pairs, and equally many retrained ones.
  n_u = (res.used & forgotten).sum(1)
  n_r = (res.used & ~trained).sum(1)
  np.testing.assert_array_equal(n_u, forgotten.sum(1))
  np.testing.assert_array_equal(n_r, n_u)
  assert not np.any(res.used & trained & ~forgotten)
  # LLRs exist exactly on the attacked pairs.
  np.testing.assert_array_equal(np.isfinite(res.llr), forgotten | ~trained)
  np.testing.assert_allclose(res.std, np.std(res.accuracy, ddof=1))


@pytest.mark.parametrize("d", [1.0, 2.0])
def test_ulira_known_separation_gives_phi_half_d(d):
  # Unlearned N(mu_i + d, 1) against retrained N(mu_i, 1), equal priors (balanced):
  # the Bayes attack's accuracy is Phi(d / 2) (69.15% at d=1, 84.13% at d=2). With 64
  # unlearned and 128 retrained samples per example the fitted Gaussians are close to
  # the true ones: over 8 replicates of this configuration the mean accuracy was
  # 69.06 +- 0.23 (d=1) and 84.10 +- 0.17 (d=2), so +-1 point is > 4 SD plus the
  # estimation loss. An attack that always answers one side scores 50%.
  trained, forgotten = privacy.inclusion(11, 256, 200, 50)
  scores = _population_scores(11, trained, forgotten, d)
  res = privacy.ulira(scores, trained, forgotten, seed=1)
  expected = 100.0 * 0.5 * (1.0 + math.erf(d / 2.0 / math.sqrt(2.0)))
  assert abs(res.mean - expected) < 1.0, (res.mean, expected)
  # Positive LLR means "unlearned": unlearned pairs mostly positive.
  assert np.nanmean(res.llr[forgotten] > 0) > 0.6


def test_ulira_skips_are_counted():
  # 4 models, 2 examples. Example 0: forgotten by models 0 and 1, untrained by 2, 3.
  # Leaving any target out leaves one sample on its own side: below min_samples=2, so
  # all 4 pairs of example 0 are skipped (2 unlearned, 2 retrained).
  # Example 1: forgotten by 0, 1, 2; untrained by 3 only: every fit of the retrained
  # side has <= 1 sample: its 3 unlearned pairs and 1 retrained pair are skipped.
  trained = np.array([[1, 1], [1, 1], [0, 1], [0, 0]], bool)
  forgotten = np.array([[1, 1], [1, 1], [0, 1], [0, 0]], bool)
  scores = np.arange(8, dtype=float).reshape(4, 2)
  res = privacy.ulira(scores, trained, forgotten)
  assert (res.skipped_unlearned, res.skipped_retrained) == (5, 3)
  assert res.targets_without_pairs == 4
  assert np.all(np.isnan(res.accuracy)) and math.isnan(res.mean)
  assert np.all(np.isnan(res.llr)) and not res.used.any()


def test_ulira_hand_example_llr():
  # 6 models, 1 example. Models 0, 1, 2 forgot it (scores 3, 5, 4); models 3, 4, 5
  # never trained on it (scores 0, 2, 1).
  # Target 0 (unlearned, s=3): unlearned fit over models 1, 2: {5, 4}: mean 4.5,
  # var (ddof=1) 0.5; retrained fit over models 3-5: {0, 2, 1}: mean 1, var 1.
  # LLR = log N(3; 4.5, .5) - log N(3; 1, 1)
  #     = [-.5 log(2 pi .5) - 2.25/.5 / 2] - [-.5 log(2 pi) - 4/2]
  #     = .5 log 2 - 2.25 + 2 = 0.0965736 > 0: predicted unlearned.
  scores = np.array([[3.0], [5.0], [4.0], [0.0], [2.0], [1.0]])
  trained = np.array([[1], [1], [1], [0], [0], [0]], bool)
  res = privacy.ulira(scores, trained, trained.copy())
  np.testing.assert_allclose(res.llr[0, 0], 0.5 * math.log(2) - 0.25, rtol=1e-12)
  # Each model has one kind of pair only (the example is its single pair): no target
  # has both kinds, so none gets an accuracy, and each is counted.
  assert res.targets_without_pairs == 6 and np.all(np.isnan(res.accuracy))


def test_ulira_variance_floor_applies():
  # Models 0-2 forgot the example, all with score 1: their ddof=1 variance is 0, so
  # the floor 0.25 is used. Models 3-5 never trained on it, scores 0, 1, -1.
  # Target 3 (retrained, s=0): unlearned fit mean 1, var 0.25; retrained fit over
  # models 4, 5: {1, -1}, mean 0, var 2. LLR = [-.5 log(2 pi .25) - 1/(2*.25)] - [-.5 log(2 pi 2)]
  #                           = -.5 log(.125) - 2 = 1.0397208 - 2 = -0.9602792.
  scores = np.array([[1.0], [1.0], [1.0], [0.0], [1.0], [-1.0]])
  trained = np.array([[1], [1], [1], [0], [0], [0]], bool)
  res = privacy.ulira(scores, trained, trained.copy(), variance_floor=0.25)
  np.testing.assert_allclose(res.llr[3, 0], -0.5 * math.log(0.125) - 2.0, rtol=1e-12)


def test_ulira_bad_input():
  trained = np.array([[1, 0], [0, 1], [1, 1]], bool)
  forgotten = np.array([[0, 0], [0, 1], [0, 0]], bool)
  scores = np.zeros((3, 2))
  with pytest.raises(ValueError, match=r"forgotten\[0, 1\] is True but trained\[0, 1\]"):
    privacy.ulira(scores, trained, np.array([[0, 1], [0, 0], [0, 0]], bool))
  with pytest.raises(ValueError,
                     match=r"trained shape \(3, 3\) does not match scores shape \(3, 2\)"):
    privacy.ulira(scores, np.ones((3, 3), bool), forgotten)
  with pytest.raises(ValueError, match="trained must be a bool array; got dtype int64"):
    privacy.ulira(scores, trained.astype(np.int64), forgotten)
  with pytest.raises(ValueError, match=r"scores\[1, 0\] = nan"):
    privacy.ulira(np.array([[0.0, 0], [np.nan, 0], [0, 0]]), trained, forgotten)
  with pytest.raises(ValueError, match="variance_floor=0"):
    privacy.ulira(scores, trained, forgotten, variance_floor=0)
  with pytest.raises(ValueError, match="min_samples=1"):
    privacy.ulira(scores, trained, forgotten, min_samples=1)
  with pytest.raises(ValueError, match="1 model"):
    privacy.ulira(np.zeros((1, 2)), np.ones((1, 2), bool), np.zeros((1, 2), bool))


# ------------------------------------------------------- the NeurIPS 2023 challenge


def test_epsilon_hand_example():
  # Unlearned outputs U = {1, 3, 4}, retrained R = {0, 2, 5}; sorted: 0R 1U 2R 3U 4U 5R.
  # Rule "unlearned if x > tau" (FPR = share of R above tau, FNR = share of U at/below):
  #   tau=-inf: FPR 1,   FNR 0    -> one rate 0: no estimate
  #   tau=0.5:  FPR 2/3, FNR 0    -> no estimate
  #   tau=1.5:  FPR 2/3, FNR 1/3  -> log((1/3-d)/(1/3)) < 0, log((2/3-d)/(2/3)) < 0
  #   tau=2.5:  FPR 1/3, FNR 1/3  -> log((2/3-d)/(1/3)) = log(2 - 3d)  (both terms)
  #   tau=3.5:  FPR 1/3, FNR 2/3  -> both terms < 0
  #   tau=4.5:  FPR 1/3, FNR 1    -> log((2/3-d)/1) < 0; 1-d-1 < 0: nothing
  #   tau=+inf: FPR 0,   FNR 1    -> no estimate
  # Reversed rule (rates 1 - FPR, 1 - FNR): (0,1) (1/3,1) (1/3,2/3) (2/3,2/3) (2/3,1/3)
  #   (2/3,0) (1,0): every estimate is log of a ratio < 1 or absent.
  # So epsilon = log(2 - 3e-5) = 0.6931322, in bin 2 ([0.5, 1.0)): score 2/2^2 = 0.5.
  eps = privacy.per_example_epsilon([1.0, 3.0, 4.0], [0.0, 2.0, 5.0], DELTA)
  assert eps == pytest.approx(math.log(2 - 3 * DELTA), rel=1e-12)
  assert privacy.epsilon_score(eps) == 0.5
  # Swapping the sides (the reversed rule's job) gives the same epsilon.
  assert privacy.per_example_epsilon([0.0, 2.0, 5.0], [1.0, 3.0, 4.0], DELTA) == pytest.approx(eps)


def test_epsilon_reversed_direction_needed():
  # U = {0, 1}, R = {2, 3}: U lies *below* R. "x > tau" gives (FPR, FNR) = (1, 0),
  # (1, 1/2), (1, 1), (1/2, 1), (0, 1): only the reversed rule at tau=1.5 gives (0, 0),
  # a perfect separation: epsilon = inf, in the last of the 13 bins: score 2 / 2^13.
  assert privacy.per_example_epsilon([0.0, 1.0], [2.0, 3.0], DELTA) == math.inf
  assert privacy.epsilon_score(math.inf) == 2.0 / 2**13
  assert privacy.epsilon_score(math.inf, num_bins=None) == 0.0
  # U = {0, 1, 5}, R = {2, 3, 4}: with "x <= tau" at tau=1.5: FPR 0, FNR 1/3 (the 5)
  # -> one rate 0: nothing; at tau=2.5: FPR 1/3, FNR 1/3 -> log(2 - 3d). With "x >
  # tau" at tau=1.5: FPR 1, FNR 2/3 -> (1-d-1) < 0 and log((1/3-d)/1) < 0; at tau=4.5:
  # FPR 0, FNR 2/3: nothing. So epsilon = log(2 - 3d) again, found only reversed.
  assert privacy.per_example_epsilon([0.0, 1.0, 5.0], [2.0, 3.0, 4.0], DELTA) == pytest.approx(
      math.log(2 - 3 * DELTA), rel=1e-12)


def test_epsilon_identical_outputs_is_zero():
  # U = R = {0, 1}: every threshold has FPR + FNR = 1, so each estimate is
  # log((x - d) / x) < 0: epsilon = 0, score 1.
  assert privacy.per_example_epsilon([0.0, 1.0], [0.0, 1.0], DELTA) == 0.0
  assert privacy.epsilon_score(0.0) == 1.0


def test_epsilon_score_bins():
  # Bins of width 0.5: [0, .5) -> 1, [.5, 1) -> 1/2, [1, 1.5) -> 1/4, ...
  np.testing.assert_array_equal(
      privacy.epsilon_score(np.array([0.0, 0.49, 0.5, 0.99, 1.0, 2.74, np.inf])),
      [1.0, 1.0, 0.5, 0.5, 0.25, 2.0 / 2**6, 2.0 / 2**13])
  # The last bin starts at (13 - 1) * 0.5 = 6: everything from there scores 2 / 2^13.
  np.testing.assert_array_equal(
      privacy.epsilon_score(np.array([5.99, 6.0, 6.5, 40.0])),
      [2.0 / 2**12, 2.0 / 2**13, 2.0 / 2**13, 2.0 / 2**13])
  np.testing.assert_array_equal(
      privacy.epsilon_score(np.array([6.5, np.inf]), num_bins=None), [2.0 / 2**14, 0.0])
  np.testing.assert_array_equal(privacy.epsilon_score(np.array([0.0, 9.0]), num_bins=1),
                                [1.0, 1.0])
  assert privacy.epsilon_score(1.0, bin_width=1.0) == 0.5
  for bad in (0, 2.5, True):
    with pytest.raises(ValueError, match=f"num_bins={bad}"):
      privacy.epsilon_score(0.0, num_bins=bad)
  with pytest.raises(ValueError, match="epsilon -0.1"):
    privacy.epsilon_score(-0.1)
  with pytest.raises(ValueError, match="bin_width=0"):
    privacy.epsilon_score(0.0, bin_width=0)


def test_forgetting_quality_and_final_score():
  # Three forget examples (columns), three unlearned and three retrained models:
  #   example 0: the hand example above, epsilon log(2 - 3d) -> score 0.5
  #   example 1: U = R -> epsilon 0 -> score 1
  #   example 2: U below R -> epsilon inf -> the last bin: score 2 / 2^13
  unlearned = np.array([[1.0, 0.0, 0.0], [3.0, 1.0, 1.0], [4.0, 2.0, 1.5]])
  retrained = np.array([[0.0, 0.0, 2.0], [2.0, 1.0, 3.0], [5.0, 2.0, 4.0]])
  f, eps = privacy.forgetting_quality(unlearned, retrained, delta=DELTA)
  assert eps[1] == 0.0 and eps[2] == math.inf
  assert f == pytest.approx((0.5 + 1.0 + 2.0 / 2**13) / 3)
  # F * (RA_u / RA_r) * (TA_u / TA_r) = 0.5 * (90/100) * (80/85).
  assert privacy.challenge_score(0.5, 90.0, 100.0, 80.0, 85.0) == pytest.approx(
      0.5 * 0.9 * 80 / 85)
  with pytest.raises(ValueError, match="ra_retrain=0"):
    privacy.challenge_score(0.5, 90.0, 0.0, 80.0, 85.0)
  with pytest.raises(ValueError, match="forget_quality=1.5"):
    privacy.challenge_score(1.5, 90.0, 100.0, 80.0, 85.0)
  with pytest.raises(ValueError, match="unlearned covers 3 forget examples, retrained 2"):
    privacy.forgetting_quality(unlearned, retrained[:, :2])


def test_epsilon_bad_input():
  with pytest.raises(ValueError, match=r"unlearned must be a non-empty 1-D array.*shape \(0,\)"):
    privacy.per_example_epsilon([], [1.0])
  with pytest.raises(ValueError, match="retrained holds non-finite"):
    privacy.per_example_epsilon([0.0], [np.inf])
  with pytest.raises(ValueError, match="delta=0"):
    privacy.per_example_epsilon([0.0], [1.0], delta=0)


def test_epsilon_matches_brute_force_on_random_sets():
  # Float64 recomputation: every threshold on a grid far finer than the data spacing,
  # both directions, rates counted directly.
  rng = np.random.default_rng(5)
  for _ in range(20):
    u = np.round(rng.normal(0.7, 1.0, size=rng.integers(3, 12)), 1)
    r = np.round(rng.normal(0.0, 1.0, size=rng.integers(3, 12)), 1)
    best = 0.0
    for tau in np.concatenate([[-np.inf], np.arange(-6.0, 6.0, 0.05) + 0.025, [np.inf]]):
      for fpr, fnr in ((np.mean(r > tau), np.mean(u <= tau)),
                       (np.mean(r <= tau), np.mean(u > tau))):
        if fpr == 0 and fnr == 0:
          best = math.inf
        elif fpr > 0 and fnr > 0:
          for num, den in ((1 - DELTA - fpr, fnr), (1 - DELTA - fnr, fpr)):
            if num > 0:
              best = max(best, math.log(num / den))
    assert privacy.per_example_epsilon(u, r, DELTA) == pytest.approx(best, rel=1e-12)
