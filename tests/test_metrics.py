"""Metrics against answers known in advance."""

import re

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


def _linear(x):
  return x @ jnp.ones((x.shape[1], 3))  # three classes


_X = jnp.ones((5, 4))


@pytest.mark.parametrize("metric", [ieu_jax.accuracy, ieu_jax.true_class_confidence])
@pytest.mark.parametrize(
    "inputs,labels,kwargs,message",
    [(_X, jnp.array([0, 1, 2, 3, 0]), {}, "labels[3]=3 is not a class of the 3 logits"),
     (_X, jnp.array([0, -1, 2, 1, 0]), {}, "labels[1]=-1 is not a class of the 3 logits"),
     (_X, np.array([0, 1, 2, 1, 7]), {}, "labels[4]=7 is not a class of the 3 logits"),
     (_X[:0], jnp.zeros((0,), jnp.int32), {}, "inputs is empty (shape (0, 4))"),
     (_X, jnp.zeros((5, 1), jnp.int32), {}, "labels must be a 1-D array of integer classes; got"
      " shape (5, 1)"),
     (_X, jnp.zeros((5,)), {}, "dtype float32"),
     (_X, jnp.zeros((4,), jnp.int32), {}, "differ in length: 5 vs 4"),
     (_X, jnp.zeros((5,), jnp.int32), dict(batch_size=0), "batch_size=0 must be"),
     (_X, jnp.zeros((5,), jnp.int32), dict(batch_size=True), "batch_size=True must be")],
)
def test_labelled_metrics_refuse_bad_input_by_name(metric, inputs, labels, kwargs, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    metric(lambda w, x: _linear(x), None, inputs, labels, **kwargs)


@pytest.mark.parametrize(
    "inputs,batch_size,message",
    [(_X, 0, "batch_size=0 must be a positive integer"),
     (_X, -2, "batch_size=-2 must be a positive integer"),
     (_X, 2.0, "batch_size=2.0 must be a positive integer"),
     (_X[:0], 8, "inputs is empty (shape (0, 4))")],
)
def test_predict_refuses_bad_input_by_name(inputs, batch_size, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    ieu_jax.predict(lambda w, x: _linear(x), None, inputs, batch_size=batch_size)


@pytest.mark.parametrize(
    "retain,test,forget,kwargs,message",
    [(np.zeros(0), np.ones(3), np.ones(3), {}, "retain_conf must be a non-empty"),
     (np.ones(3), np.zeros(0), np.ones(3), {}, "test_conf must be a non-empty"),
     (np.ones(3), np.ones(3), np.zeros(0), {}, "forget_conf must be a non-empty"),
     (np.array([1.0, np.nan]), np.ones(3), np.ones(3), {}, "retain_conf holds non-finite"),
     (np.ones(3), np.ones((3, 2)), np.ones(3), {}, "feature widths differ"),
     (np.ones(3), np.ones(3), np.ones(3), dict(max_per_class=0), "max_per_class=0 must be"),
     (np.ones(3), np.ones(3), np.ones(3), dict(max_per_class=-1), "max_per_class=-1 must be"),
     (np.ones(3), np.ones(3), np.ones(3), dict(max_per_class=True), "max_per_class=True must be")],
)
def test_mia_efficacy_refuses_bad_input_by_name(retain, test, forget, kwargs, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    ieu_jax.mia_efficacy(retain, test, forget, **kwargs)


_ROW = {"UA": 1.0, "RA": 2.0, "TA": 3.0, "MIA": 4.0}


@pytest.mark.parametrize(
    "row,reference,keys,error,message",
    [({"UA": 1.0, "RA": 2.0, "TA": 3.0}, _ROW, ("UA", "RA", "TA", "MIA"), KeyError,
      "row lacks the key(s) ['MIA']"),
     (_ROW, {"UA": 1.0}, ("UA", "RA"), KeyError, "reference lacks the key(s) ['RA']"),
     (_ROW, _ROW, ("UA", "VA"), KeyError, "row lacks the key(s) ['VA']"),
     (_ROW, _ROW, (), ValueError, "keys=[] is empty")],
)
def test_avg_gap_refuses_missing_keys_by_name(row, reference, keys, error, message):
  with pytest.raises(error, match=re.escape(message)):
    ieu_jax.avg_gap(row, reference, keys)
