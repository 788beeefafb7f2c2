"""RCD's criteria: per-trajectory draws and thresholds, the other-class guard, and the
classifier attackers' draws (``ieu_jax.attackers``), checked against hand computations
and direct recomputations."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import builders
import ieu_jax
from ieu_jax import _rcd_engine
from ieu_jax import attackers


# ----------------------------------------------------------------------------
# The hit rule, by hand.


def test_a_hit_needs_the_own_threshold_and_the_guard_within_its_drop():
  protocol = ieu_jax.RelearnProtocol(criterion="accuracy", threshold=50.0, guard_drop=5.0)
  # Two trajectories, three points each: (score, loss, distance, guard).
  nan = np.nan
  curves = np.array([
      [[40, 0, 0, 80], [60, 0, 0, 76], [70, 0, 0, 74.5]],   # guard 80 -> 76 ok, 74.5 not
      [[40, 0, 0, 80], [60, 0, 0, 90], [nan, 0, 0, 90]],    # own threshold 65: never met
  ], np.float32)
  threshold = np.array([50.0, 65.0], np.float32)
  hits = _rcd_engine.hits(curves, protocol, threshold, curves[:, 0, 3])
  np.testing.assert_array_equal(hits, [[False, True, False], [False, False, False]])
  unguarded = dataclasses.replace(protocol, guard_drop=None)
  np.testing.assert_array_equal(
      _rcd_engine.hits(curves, unguarded, threshold, curves[:, 0, 3]),
      [[False, True, True], [False, False, False]])
  first, censored = ieu_jax._rcd.first_hits(curves, protocol, threshold)
  np.testing.assert_array_equal(first, [1, -1])
  np.testing.assert_array_equal(censored, [False, True])


# ----------------------------------------------------------------------------
# The guard on a real relearning: a drift into a constant predictor is no hit.


def _blobs(seed, n_per_class, centres):
  rng = np.random.default_rng(seed)
  y = np.repeat(np.arange(len(centres)), n_per_class)
  x = centres[y] + 0.5 * rng.normal(size=(len(y), centres.shape[1]))
  return jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32)


def _apply(w, x):
  return x @ w["w"] + w["b"]


def _forgot_class_zero():
  """A healthy softmax regression that never predicts class 0 (its examples sit where
  class 1's do and were learnt as class 1), the forget class's examples, and held-out
  examples of the other classes. Any model that predicts class 0 on its examples
  predicts it on class 1's too."""
  centres = np.array([[-3.0, 0.0], [-3.0, 0.0], [3.0, 0.0]])
  x, y = _blobs(0, 60, centres)
  learnt = jnp.where(y == 0, 1, y)
  w = {"w": jnp.zeros((2, 3)), "b": jnp.zeros(3)}
  loss = lambda w: ieu_jax.softmax_cross_entropy(_apply(w, x), learnt)
  for _ in range(300):
    w = jax.tree.map(lambda p, g: p - 0.5 * g, w, jax.grad(loss)(w))
  hx, hy = _blobs(1, 60, centres)
  forget = (x[y == 0], y[y == 0])
  guard = (hx[hy != 0], hy[hy != 0])
  return w, forget, guard


@pytest.mark.parametrize("formulation", ["map_scan", "vmap_loop", "sequential"])
def test_a_drift_into_a_constant_predictor_of_the_forgotten_class_is_never_a_hit(formulation):
  w, forget, guard = _forgot_class_zero()
  assert float(ieu_jax.accuracy(_apply, w, *guard)) > 95.0  # healthy on the other classes
  assert float(ieu_jax.accuracy(_apply, w, *forget)) < 5.0  # and it forgot class 0
  # Relearning class 0 alone at a large step pushes the model to predict 0 everywhere.
  protocol = ieu_jax.RelearnProtocol(learning_rates=5.0, batch_size=16, max_steps=30,
                                     threshold=99.0, num_trajectories=3, guard_drop=5.0)
  key = jax.random.key(0)
  guarded = ieu_jax.relearn(w, _apply, forget, protocol, key, guard_data=guard,
                            formulation=formulation)
  free = ieu_jax.relearn(w, _apply, forget, dataclasses.replace(protocol, guard_drop=None),
                         key, formulation=formulation)
  # Without the guard every trajectory "relearns"; the model then fails the others.
  assert not free.censored.any()
  # With it, none does: wherever forget accuracy reached the threshold, the guard had
  # fallen by more than 5 points (it is computed exactly there).
  assert guarded.censored.all()
  met = guarded.accuracy >= 99.0
  assert met.any()
  assert (guarded.guard[met] < guarded.guard[:, :1].repeat(met.shape[1], 1)[met] - 5.0).all()
  # The guard's values are the accuracy on the guard data (a direct recomputation).
  np.testing.assert_allclose(guarded.guard[:, 0], float(ieu_jax.accuracy(_apply, w, *guard)),
                             rtol=1e-6)


def test_a_guard_that_holds_changes_no_hit():
  """A model that relearns without hurting the other classes: the same first hits."""
  x, y, w0 = builders.softmax_regression(3, n=64)
  w, data = builders.as_relearn_inputs(x, y, w0)
  protocol = ieu_jax.RelearnProtocol(learning_rates=0.5, max_steps=40, threshold=85.0,
                                     num_trajectories=3, batch_size=8, guard_drop=100.0)
  key = jax.random.key(2)
  guarded = ieu_jax.relearn(w, builders.linear_apply, data, protocol, key, guard_data=data)
  free = ieu_jax.relearn(w, builders.linear_apply, data,
                         dataclasses.replace(protocol, guard_drop=None), key)
  np.testing.assert_array_equal(guarded.first_hit, free.first_hit)
  assert not free.censored.all()


# ----------------------------------------------------------------------------
# Draws: each data order its own examples, evaluation set and threshold.


def test_each_order_trains_and_is_judged_on_its_own_draw():
  x, y, w0 = builders.softmax_regression(1, n=60)
  w, (xs, ys) = builders.as_relearn_inputs(x, y, w0)
  rng = np.random.default_rng(0)
  train = np.stack([np.sort(rng.choice(60, 20, replace=False)) for _ in range(3)])
  evals = np.stack([np.sort(rng.choice(60, 25, replace=False)) for _ in range(3)])
  thr = np.array([70.0, 80.0, 75.0])
  protocol = ieu_jax.RelearnProtocol(learning_rates=0.3, max_steps=30, threshold=50.0,
                                     num_trajectories=3, batch_size=8, stop_when_done=False)
  key = jax.random.key(4)
  res = ieu_jax.relearn(w, builders.linear_apply, (xs, ys), protocol, key,
                        draws=ieu_jax.Draws(train, evals, thr))
  for k in range(3):
    # Order k, recomputed directly: the order-k draw as the whole data, the same key
    # (trajectory k of a K-order run uses fold_in(key, k)), its own threshold.
    direct = ieu_jax.relearn(
        w, builders.linear_apply, (xs[train[k]], ys[train[k]]),
        dataclasses.replace(protocol, threshold=float(thr[k])), key,
        eval_data=(xs[evals[k]], ys[evals[k]]))
    np.testing.assert_allclose(res.accuracy[k], direct.accuracy[k], atol=1e-4)
    np.testing.assert_allclose(res.loss[k], direct.loss[k], rtol=1e-4, atol=1e-5)
    assert res.first_hit[k] == direct.first_hit[k]
  np.testing.assert_array_equal(res.threshold, thr.astype(np.float32))
  # The draws matter: the same run on all the data differs.
  whole = ieu_jax.relearn(w, builders.linear_apply, (xs, ys), protocol, key)
  assert not np.allclose(whole.accuracy, res.accuracy)


def test_a_rate_grid_repeats_each_orders_draw_at_every_rate():
  x, y, w0 = builders.softmax_regression(1, n=40)
  w, data = builders.as_relearn_inputs(x, y, w0)
  train = np.array([np.arange(0, 20), np.arange(20, 40)])
  protocol = ieu_jax.RelearnProtocol(learning_rates=(0.1, 0.3), max_steps=10,
                                     threshold=99.0, num_trajectories=2, batch_size=8)
  res = ieu_jax.relearn(w, builders.linear_apply, data, protocol, jax.random.key(0),
                        draws=ieu_jax.Draws(train, train, np.array([60.0, 70.0])))
  np.testing.assert_array_equal(res.threshold, np.float32([60, 70, 60, 70]))
  # Step 0 is evaluated on each order's own examples, the same at both rates.
  acc0 = [float(ieu_jax.accuracy(builders.linear_apply, w, data[0][t], data[1][t]))
          for t in train]
  np.testing.assert_allclose(res.accuracy[:, 0], acc0 * 2, atol=1e-4)


@pytest.mark.parametrize("draws, says", [
    (ieu_jax.Draws(train=np.zeros((2, 4), np.int32)), r"draws.train has shape \(2, 4\)"),
    (ieu_jax.Draws(train=np.full((3, 4), 48)), r"indices in \[48, 48\], outside the 48"),
    (ieu_jax.Draws(eval=np.zeros((3, 2))), "dtype float64: expected integer"),
    (ieu_jax.Draws(threshold=np.array([1.0, np.nan, 2.0])), "3 finite numbers"),
])
def test_bad_draws_are_named(draws, says):
  w, data = builders.as_relearn_inputs(*builders.softmax_regression(0))
  protocol = ieu_jax.RelearnProtocol(num_trajectories=3, max_steps=4)
  with pytest.raises(ValueError, match=says):
    ieu_jax.relearn(w, builders.linear_apply, data, protocol, jax.random.key(0), draws=draws)


def test_a_guard_needs_its_drop_and_the_drop_its_guard():
  w, data = builders.as_relearn_inputs(*builders.softmax_regression(0))
  protocol = ieu_jax.RelearnProtocol(num_trajectories=2, max_steps=4)
  with pytest.raises(ValueError, match="guard_data is given but protocol.guard_drop=None"):
    ieu_jax.relearn(w, builders.linear_apply, data, protocol, jax.random.key(0), guard_data=data)
  with pytest.raises(ValueError, match="guard_data is missing but protocol.guard_drop=5.0"):
    ieu_jax.relearn(w, builders.linear_apply, data,
                    dataclasses.replace(protocol, guard_drop=5.0), jax.random.key(0))
  with pytest.raises(ValueError, match="guard_drop=-1.0"):
    ieu_jax.RelearnProtocol(guard_drop=-1.0)


# ----------------------------------------------------------------------------
# The classifier attackers' draws and thresholds.


def test_forget_draws_are_disjoint_fresh_per_order_and_reproducible():
  train, held = attackers.forget_draws(50, 20, 100, num_orders=4, seed=3)
  assert train.shape == (4, 20) and held.shape == (4, 30)  # held-out capped at the rest
  for t, h in zip(train, held):
    assert not set(t) & set(h) and len(set(t) | set(h)) == 50
  assert len({tuple(t) for t in train}) == 4  # a fresh draw per order
  again, _ = attackers.forget_draws(50, 20, 100, num_orders=4, seed=3)
  np.testing.assert_array_equal(train, again)
  other, _ = attackers.forget_draws(50, 20, 100, num_orders=4, seed=4)
  assert not np.array_equal(train, other)
  # Without a held-out set m may take the whole forget set; with one, one is left.
  assert attackers.forget_draws(10, 64, None, 2, 0)[0].shape == (2, 10)
  t, h = attackers.forget_draws(10, 64, 5, 2, 0)
  assert t.shape == (2, 9) and h.shape == (2, 1)
  with pytest.raises(ValueError, match="forget set has 1 example"):
    attackers.forget_draws(1, 64, 5, 2, 0)


def test_thresholds_by_hand():
  orig = np.array([1, 1, 1, 0, 1, 1, 0, 0], bool)
  retrain = np.array([0, 1, 0, 0, 0, 1, 0, 1], bool)
  idx = np.array([[0, 1, 2, 3], [4, 5, 6, 7]])
  np.testing.assert_allclose(attackers.thresholds("relearned", idx, orig, None, 1.0),
                             [75.0 - 1.0, 50.0 - 1.0])
  # An original that never learnt an order's examples: 0, not below (the protocol's range).
  np.testing.assert_allclose(attackers.thresholds("relearned", idx, ~orig & False, None, 1.0),
                             [0.0, 0.0])
  # recovered: halfway between the original's (75, 50) and Retrain's (25, 50).
  np.testing.assert_allclose(attackers.thresholds("recovered", idx, orig, retrain, 1.0),
                             [50.0, 50.0])


def test_the_guard_set_excludes_the_forgotten_class():
  val = ieu_jax.data.Dataset(x=jnp.arange(30, dtype=jnp.float32).reshape(30, 1, 1, 1),
                             y=jnp.asarray(np.arange(30) % 3, jnp.int32), num_classes=3)
  x, y = attackers.guard_set(val, (1,), size=12, seed=0)
  assert y.shape == (12,) and 1 not in np.asarray(y)
  np.testing.assert_array_equal(np.asarray(x).ravel() % 3, np.asarray(y))  # pairs kept
  x, y = attackers.guard_set(val, (), size=100, seed=0)
  assert y.shape == (30,)
  with pytest.raises(ValueError, match="no example outside the forgotten classes"):
    attackers.guard_set(val, (0, 1, 2), size=5, seed=0)
