"""Metrics against answers known in advance."""

import jax.numpy as jnp
import numpy as np
import pytest

import ieu_jax


def _confidences(rng, n, member):
  # Members are confidently right; non-members much less so.
  return rng.uniform(0.85, 1.0, n) if member else rng.uniform(0.0, 0.6, n)


@pytest.mark.parametrize("member_share,expected", [(0.0, 100.0), (1.0, 0.0), (0.3, 70.0)])
def test_mia_efficacy_on_separable_synthetic_confidences(member_share, expected):
  rng = np.random.default_rng(0)
  retain = _confidences(rng, 800, True)
  test = _confidences(rng, 500, False)
  n_forget = 400
  n_members = int(member_share * n_forget)
  forget = np.concatenate(
      [_confidences(rng, n_members, True), _confidences(rng, n_forget - n_members, False)]
  )
  score = ieu_jax.mia_efficacy(retain, test, forget)
  assert score == pytest.approx(expected, abs=1.5)


def test_mia_efficacy_on_indistinguishable_confidences_is_near_chance_on_average():
  rng = np.random.default_rng(1)
  same = lambda n: rng.uniform(0, 1, n)  # members and non-members alike
  scores = [ieu_jax.mia_efficacy(same(300), same(300), same(300), seed=s) for s in range(5)]
  # The attack can only guess: the forget set is split near half/half on average.
  assert 25 < np.mean(scores) < 75


def test_mia_bad_input():
  with pytest.raises(ValueError, match="forget_conf"):
    ieu_jax.mia_efficacy(np.ones(3), np.zeros(3), np.zeros(0))
  with pytest.raises(ValueError, match="non-finite"):
    ieu_jax.mia_efficacy(np.array([1.0, np.nan]), np.zeros(3), np.zeros(3))


def test_avg_gap_by_hand():
  row = {"UA": 10.0, "RA": 95.0, "TA": 90.0, "MIA": 20.0, "extra": 1.0}
  ref = {"UA": 12.0, "RA": 99.0, "TA": 89.0, "MIA": 26.0}
  assert ieu_jax.avg_gap(row, ref) == pytest.approx((2 + 4 + 1 + 6) / 4)
  assert ieu_jax.avg_gap(ref, ref) == 0.0
  with pytest.raises(KeyError, match="MIA"):
    ieu_jax.avg_gap({"UA": 1, "RA": 1, "TA": 1}, ref)


def test_accuracy_and_confidence_match_numpy_across_chunks():
  rng = np.random.default_rng(2)
  w = rng.normal(size=(4, 3)).astype(np.float32)
  x = rng.normal(size=(37, 4)).astype(np.float32)
  y = rng.integers(0, 3, 37)
  apply = lambda p, inputs: inputs @ p
  z = x.astype(np.float64) @ w
  want_acc = 100 * np.mean(z.argmax(1) == y)
  p = np.exp(z - z.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  for batch in (5, 37, 100):  # padding of the last chunk must not leak in
    acc = ieu_jax.accuracy(apply, jnp.asarray(w), jnp.asarray(x), jnp.asarray(y), batch_size=batch)
    assert acc == pytest.approx(want_acc, abs=1e-4)
    conf = ieu_jax.true_class_confidence(
        apply, jnp.asarray(w), jnp.asarray(x), jnp.asarray(y), batch_size=batch
    )
    np.testing.assert_allclose(conf, p[np.arange(37), y], rtol=1e-5)
  with pytest.raises(ValueError, match="37 vs 36"):
    ieu_jax.accuracy(apply, jnp.asarray(w), jnp.asarray(x), jnp.asarray(y[:36]))
