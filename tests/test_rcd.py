"""RCD against an independent float64 recomputation, censoring, and formulations."""

import dataclasses
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import builders
import ieu_jax
from builders import linear_apply


def _softmax_ce64(w, x, y):
  z = x @ w
  z = z - z.max(1, keepdims=True)
  logp = z - np.log(np.exp(z).sum(1, keepdims=True))
  p = np.exp(logp)
  loss = -logp[np.arange(len(y)), y].mean()
  p[np.arange(len(y)), y] -= 1
  return loss, x.T @ p / len(y), (z.argmax(1) == y).mean() * 100


def _numpy_trajectories(w0, x, y, indices, lr, steps, momentum=0.0):
  """Plain float64 SGD (with optax's momentum form) over the given batch indices."""
  curves = []
  for k in range(indices.shape[0]):
    w, v = w0.copy(), np.zeros_like(w0)
    row = []
    for t in range(steps + 1):
      loss, _, acc = _softmax_ce64(w, x, y)
      row.append((acc, loss))
      if t == steps:
        break
      idx = indices[k, t]
      _, g, _ = _softmax_ce64(w, x[idx], y[idx])
      v = momentum * v + g
      w = w - lr * (v if momentum else g)
    curves.append(row)
  return np.array(curves)


@pytest.mark.parametrize("criterion,threshold", [("loss", 0.35), ("accuracy", 90.0)])
def test_first_hit_matches_float64_recomputation(criterion, threshold):
  x, y, w0 = builders.softmax_regression()
  protocol = ieu_jax.RelearnProtocol(
      learning_rates=0.3, momentum=0.5, batch_size=8, max_steps=60,
      criterion=criterion, threshold=threshold, num_trajectories=4,
  )
  key = jax.random.key(3)
  w, data = builders.as_relearn_inputs(x, y, w0)
  result = ieu_jax.relearn(w, linear_apply, data, protocol, key,
                           reference_params=jnp.zeros_like(w), formulation="sequential")
  # The data orders are successive permutations of the relearn set.
  orders = np.stack([
      np.asarray(ieu_jax.trajectory_batch_indices(jax.random.fold_in(key, k), len(y), 60, 8))
      for k in range(4)
  ])
  for k in range(4):
    epoch = orders[k].reshape(-1)[: len(y)]
    np.testing.assert_array_equal(np.sort(epoch), np.arange(len(y)))
  assert len({orders[k].tobytes() for k in range(4)}) == 4  # different data orders

  ref = _numpy_trajectories(w0, x, y, orders, 0.3, 60, momentum=0.5)
  # The run stopped at the last first hit: the curves agree up to it, NaN after.
  stop = result.stopped_at
  assert stop == result.first_hit.max() < 60
  np.testing.assert_allclose(result.loss[:, :stop + 1], ref[:, :stop + 1, 1], rtol=2e-4, atol=2e-5)
  np.testing.assert_allclose(result.accuracy[:, :stop + 1], ref[:, :stop + 1, 0], atol=1e-3)
  assert np.isnan(result.loss[:, stop + 1:]).all() and np.isnan(result.accuracy[:, stop + 1:]).all()
  metric = ref[..., 1] if criterion == "loss" else ref[..., 0]
  hit = metric <= threshold if criterion == "loss" else metric >= threshold
  assert hit.any(axis=1).all(), "the test problem should relearn within budget"
  want = hit.argmax(axis=1)
  np.testing.assert_array_equal(result.first_hit, want)
  assert not result.censored.any()
  assert want.min() > 0  # not trivially met at step 0
  assert len(set(want.tolist())) > 1 or criterion == "accuracy"
  # Distance to the zero reference is the Frobenius norm at step 0.
  np.testing.assert_allclose(result.distance[:, 0], np.linalg.norm(w0), rtol=1e-5)


def test_censored_trajectories_are_reported_not_averaged():
  w, data = builders.as_relearn_inputs(*builders.softmax_regression(1))
  protocol = ieu_jax.RelearnProtocol(
      learning_rates=(0.001, 0.5), batch_size=8, max_steps=20, criterion="loss",
      threshold=0.45, num_trajectories=3,
  )
  result = ieu_jax.relearn(w, linear_apply, data, protocol, jax.random.key(0),
                           formulation="sequential")
  np.testing.assert_array_equal(result.learning_rate, [0.001] * 3 + [0.5] * 3)
  assert result.censored[:3].all() and not result.censored[3:].any()
  np.testing.assert_array_equal(result.first_hit[:3], -1)
  summary = ieu_jax.rcd_summary(result)
  hits = result.first_hit[3:]
  steps = np.concatenate([[20.0] * 3, hits])  # censored ones count as the budget T = 20
  assert summary.censored_frac == pytest.approx(0.5) and summary.lower_bound
  assert summary.steps_mean == pytest.approx(steps.mean())  # not hits.mean()
  assert summary.steps_std == pytest.approx(steps.std())
  assert summary.median == pytest.approx(np.median(steps))
  # All censored: the largest possible mean, T, marked as a lower bound.
  all_censored = result._replace(censored=np.ones(6, bool), first_hit=-np.ones(6, int))
  s = ieu_jax.rcd_summary(all_censored, summary)
  assert s.steps_mean == 20.0 and s.steps_std == 0.0 and s.median == 20.0
  assert s.lower_bound and s.censored_frac == 1.0
  assert s.normalized == pytest.approx(20.0 / steps.mean())
  none = ieu_jax.rcd_summary(result._replace(censored=np.zeros(6, bool),
                                             first_hit=np.arange(6)))
  assert not none.lower_bound and none.steps_mean == 2.5 and none.median == 2.5


def test_normalisation_by_a_reference():
  base = ieu_jax.RelearnResult(
      first_hit=np.array([10, 20, -1, 30]), censored=np.array([False, False, True, False]),
      learning_rate=np.ones(4), steps=np.arange(51), accuracy=None, loss=None, distance=None,
  )
  ref = base._replace(first_hit=np.array([40, 40, 40, 40]), censored=np.zeros(4, bool))
  s = ieu_jax.rcd_summary(base, ref)
  assert s.normalized == pytest.approx((10 + 20 + 50 + 30) / 4 / 40)  # censored: T = 50
  assert ieu_jax.rcd_summary(ref, ref).normalized == 1.0
  zero = ref._replace(first_hit=np.zeros(4, int))
  assert math.isnan(ieu_jax.rcd_summary(base, zero).normalized)


def test_formulations_agree():
  w, data = builders.as_relearn_inputs(*builders.softmax_regression(2))
  protocol = ieu_jax.RelearnProtocol(
      optimizer="adam", learning_rates=(0.05, 0.1), batch_size=8, max_steps=12,
      criterion="loss", threshold=0.5, num_trajectories=2, eval_every=3,
  )
  args = (w, linear_apply, data, protocol, jax.random.key(1))
  results = [ieu_jax.relearn(*args, formulation=f) for f in ieu_jax.FORMULATIONS]
  np.testing.assert_array_equal(results[0].steps, [0, 3, 6, 9, 12])
  for r in results[1:]:
    np.testing.assert_allclose(r.loss, results[0].loss, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(r.first_hit, results[0].first_hit)
    assert r.stopped_at == results[0].stopped_at


@pytest.mark.parametrize("formulation", ieu_jax.FORMULATIONS)
def test_stopping_when_done_changes_nothing_up_to_the_stop(formulation):
  w, data = builders.as_relearn_inputs(*builders.softmax_regression(4))
  protocol = ieu_jax.RelearnProtocol(
      learning_rates=(0.1, 0.3), momentum=0.5, batch_size=8, max_steps=40,
      criterion="loss", threshold=0.4, num_trajectories=3, stop_when_done=False)
  args = (w, linear_apply, data)
  full = ieu_jax.relearn(*args, protocol, jax.random.key(5), formulation=formulation)
  assert full.stopped_at == 40 and not np.isnan(full.loss).any()
  assert not full.censored.any() and 0 < full.first_hit.max() < 30
  assert len(set(full.first_hit.tolist())) > 1
  stop = int(full.first_hit.max())
  for chunk in (1, 3, 16, 100):  # chunks that end before, at and after the stop
    early = ieu_jax.relearn(*args, dataclasses.replace(protocol, stop_when_done=True),
                            jax.random.key(5), formulation=formulation, chunk_steps=chunk)
    np.testing.assert_array_equal(early.first_hit, full.first_hit)
    assert early.stopped_at == stop
    for f in ("loss", "accuracy"):
      np.testing.assert_array_equal(getattr(early, f)[:, :stop + 1],
                                    getattr(full, f)[:, :stop + 1])
      assert np.isnan(getattr(early, f)[:, stop + 1:]).all()
  # A censored trajectory (unreachable loss for the small rate) runs the budget.
  hard = dataclasses.replace(protocol, learning_rates=(1e-4, 0.3), stop_when_done=True)
  res = ieu_jax.relearn(*args, hard, jax.random.key(5), formulation=formulation)
  assert res.censored[:3].all() and res.stopped_at == 40 and not np.isnan(res.loss).any()


def _fake_start(accuracy, static_chunks=False):
  """A formulation whose trajectory k has accuracy ``accuracy(k, step)``; counts work."""
  from ieu_jax import _rcd_engine  # pylint: disable=g-import-not-at-top

  calls = []

  def start(prog, params, traj):
    del prog, params
    k = len(traj.lr)

    def advance(t, blocks, t0):  # the carry: steps done per trajectory
      assert (t == t0).all()
      calls.append(blocks.shape)
      steps = t[:, None] + blocks.shape[2] * (1 + np.arange(blocks.shape[1]))
      acc = np.vectorize(accuracy)(np.arange(k)[:, None], steps)
      nan = np.full_like(acc, np.nan)
      return steps[:, -1], np.stack([acc, -acc, np.zeros_like(acc), nan], axis=-1)

    acc0 = np.vectorize(accuracy)(np.arange(k), 0).astype(float)
    first = np.stack([acc0, -acc0, np.zeros(k), np.full(k, np.nan)], axis=-1)
    return _rcd_engine.Runner(first, np.zeros(k, int), advance, np.copy, static_chunks)

  return start, calls


def _drive(start, protocol, chunk_steps=4):
  from ieu_jax import _rcd_engine  # pylint: disable=g-import-not-at-top

  prog = _rcd_engine.Program(None, None, protocol, None)
  indices = np.zeros((protocol.num_trajectories, protocol.max_steps, 32), np.int32)
  traj = _rcd_engine.Trajectories(np.ones(protocol.num_trajectories), None)
  threshold = np.full(protocol.num_trajectories, protocol.threshold, np.float32)
  return _rcd_engine.run(start, prog, None, traj, indices, chunk_steps, threshold)


def test_the_driver_stops_at_the_first_chunk_after_the_last_hit():
  """The chunked loop on a fake formulation whose hits are known in advance."""
  hit_at = np.array([5, 11, 2])  # first step with accuracy >= 50, per trajectory
  protocol = ieu_jax.RelearnProtocol(max_steps=40, threshold=50.0, num_trajectories=3)
  start, calls = _fake_start(lambda k, t: 80.0 if t >= hit_at[k] else 10.0)
  curves, stop = _drive(start, protocol)
  assert stop == 11 and calls == [(3, 4, 1, 32)] * 3
  np.testing.assert_array_equal(np.argmax(curves[..., 0] >= 50, axis=1), hit_at)
  assert np.isnan(curves[:, 12:]).all() and not np.isnan(curves[:, :12, :3]).any()
  # Met at step 0 by every trajectory: no step is run at all.
  start, calls = _fake_start(lambda k, t: 80.0)
  curves, stop = _drive(start, protocol)
  assert stop == 0 and not calls and np.isnan(curves[:, 1:]).all()


def test_chunks_tile_the_budget_and_only_scans_get_a_filled_last_chunk():
  protocol = ieu_jax.RelearnProtocol(max_steps=50, threshold=50.0, num_trajectories=2)
  late = lambda k, t: 80.0 if t >= 48 else 10.0
  for static, want in ((True, [(2, 13, 1, 32)] * 4), (False, [(2, 13, 1, 32)] * 3 + [(2, 11, 1, 32)])):
    start, calls = _fake_start(late, static_chunks=static)
    curves, stop = _drive(start, protocol, chunk_steps=16)  # 50 steps: 4 chunks of 13
    assert calls == want and stop == 48
    np.testing.assert_array_equal(np.argmax(curves[..., 0] >= 50, axis=1), [48, 48])


def test_probing_replays_the_windows_of_first_hits_at_full_resolution():
  hit_at = np.array([13, 6, 14, 37])
  protocol = ieu_jax.RelearnProtocol(max_steps=42, threshold=50.0, num_trajectories=4,
                                     probe_every=5)
  start, calls = _fake_start(lambda k, t: 60.0 + t if t >= hit_at[k] else 10.0 + t)
  curves, stop = _drive(start, protocol)
  np.testing.assert_array_equal(np.argmax(curves[..., 0] >= 50, axis=1), hit_at)
  assert stop == 37
  # Probes at 5, 10, ..., 35; first hits in the windows (5, 10], (10, 15], (35, 40]
  # are replayed point by point; nothing after the stop.
  coarse, fine = (4, 1, 5, 32), (4, 5, 1, 32)
  assert calls == [coarse, coarse, fine, coarse, fine] + [coarse] * 4 + [coarse, fine]
  evaluated = np.flatnonzero(~np.isnan(curves[0, :, 0]))
  np.testing.assert_array_equal(evaluated, [0, 5, *range(6, 16), 20, 25, 30, 35, 36, 37])
  np.testing.assert_array_equal(curves[2, evaluated, 0],
                                [60.0 + t if t >= 14 else 10.0 + t for t in evaluated])
  # The documented limit: a hit that is gone again at the next probe is missed
  # (step by step, the first hit is 3; probing sees the one at 20).
  start, _ = _fake_start(lambda k, t: 80.0 if t == 3 or t >= 20 else 10.0)
  curves, _ = _drive(start, protocol)
  np.testing.assert_array_equal(np.argmax(curves[..., 0] >= 50, axis=1), [20] * 4)


@pytest.mark.parametrize("formulation", ["map_scan", "sequential"])
def test_probing_finds_the_per_step_first_hits_of_a_real_model(formulation):
  w, data = builders.as_relearn_inputs(*builders.softmax_regression(4))
  per_step = ieu_jax.RelearnProtocol(
      learning_rates=(0.02, 0.3), momentum=0.5, batch_size=8, max_steps=40,
      criterion="loss", threshold=0.4, num_trajectories=3)
  args = (w, linear_apply, data)
  want = ieu_jax.relearn(*args, per_step, jax.random.key(5), formulation=formulation)
  assert len(set(want.first_hit.tolist())) > 2  # hits in several windows
  assert want.first_hit.max() - want.first_hit.min() > 8  # and windows without one
  got = ieu_jax.relearn(*args, dataclasses.replace(per_step, probe_every=4),
                        jax.random.key(5), formulation=formulation)
  np.testing.assert_array_equal(got.first_hit, want.first_hit)
  assert got.stopped_at == want.stopped_at
  seen = ~np.isnan(got.loss)
  assert 0 < seen.sum() < (~np.isnan(want.loss)).sum()  # fewer evaluations
  np.testing.assert_allclose(got.loss[seen], want.loss[seen], rtol=1e-6)


def test_bad_input_is_named():
  w, data = builders.as_relearn_inputs(*builders.softmax_regression())
  with pytest.raises(ValueError, match="relearn_data is empty"):
    ieu_jax.relearn(w, linear_apply, (jnp.zeros((0, 6)), jnp.zeros((0,), int)),
                    ieu_jax.RelearnProtocol(), jax.random.key(0))
  with pytest.raises(ValueError, match="formulation='pmap'"):
    ieu_jax.relearn(w, linear_apply, data,
                    ieu_jax.RelearnProtocol(), jax.random.key(0), formulation="pmap")
  with pytest.raises(ValueError, match="optimizer='rmsprop'"):
    ieu_jax.RelearnProtocol(optimizer="rmsprop")
  with pytest.raises(ValueError, match="max_steps=10 is not a multiple of eval_every=3"):
    ieu_jax.RelearnProtocol(max_steps=10, eval_every=3)
  with pytest.raises(ValueError, match="learning_rates"):
    ieu_jax.RelearnProtocol(learning_rates=(0.1, -1.0))


@pytest.mark.parametrize(
    "fields,bad",
    [(dict(threshold=150.0), "threshold=150.0"),
     (dict(threshold=-1), "threshold=-1"),
     (dict(threshold=math.nan), "threshold=nan"),
     (dict(threshold=True), "threshold=True"),
     (dict(criterion="loss", threshold=-0.1), "threshold=-0.1"),
     (dict(criterion="loss", threshold=math.inf), "threshold=inf"),
     (dict(momentum=-0.5), "momentum=-0.5"),
     (dict(momentum=1.0), "momentum=1.0"),
     (dict(momentum=math.nan), "momentum=nan"),
     (dict(momentum=None), "momentum=None"),
     (dict(learning_rates=math.inf), "learning_rates=inf"),
     (dict(learning_rates=(0.1, math.nan)), "learning_rates=(0.1, nan)"),
     (dict(learning_rates=()), "learning_rates=()"),
     (dict(learning_rates="0.1"), "learning_rates='0.1'"),
     (dict(learning_rates=True), "learning_rates=True"),
     (dict(batch_size=True), "batch_size=True"),
     (dict(max_steps=True, eval_every=1), "max_steps=True"),
     (dict(num_trajectories=False), "num_trajectories=False"),
     (dict(eval_every=True), "eval_every=True"),
     (dict(probe_every=True), "probe_every=True"),
     (dict(batch_size=0), "batch_size=0"),
     (dict(stop_when_done=1), "stop_when_done=1")],
)
def test_protocol_refuses_bad_fields_by_name(fields, bad):
  with pytest.raises(ValueError, match=re.escape(bad) + " must be"):
    ieu_jax.RelearnProtocol(**fields)


def test_protocol_accepts_the_edges_of_its_ranges():
  for fields in (dict(threshold=0), dict(threshold=100), dict(threshold=np.float32(90)),
                 dict(criterion="loss", threshold=0.0), dict(criterion="loss", threshold=1e3),
                 dict(momentum=0.0), dict(momentum=0.99), dict(batch_size=np.int64(8)),
                 dict(learning_rates=[0.1, 0.2]), dict(learning_rates=np.float64(1e-3))):
    ieu_jax.RelearnProtocol(**fields)


@pytest.mark.parametrize("formulation", ["map_scan", "vmap_scan", "sequential"])
def test_repeated_calls_do_not_retrace(formulation):
  w0, data = builders.as_relearn_inputs(*builders.softmax_regression(3))
  traces = []

  def apply(w, inputs):
    traces.append(inputs.shape)  # runs only while tracing
    return inputs @ w

  protocol = ieu_jax.RelearnProtocol(learning_rates=(0.1, 0.2), batch_size=8, max_steps=4,
                                     num_trajectories=2, criterion="loss", threshold=0.1)
  first = ieu_jax.relearn(w0, apply, data, protocol, jax.random.key(0),
                          formulation=formulation)
  n = len(traces)
  assert n > 0
  # Other weights, other keys, other learning rates: the same compiled programs.
  second = ieu_jax.relearn(w0 * 2, apply, data,
                           dataclasses.replace(protocol, learning_rates=(0.3, 0.4)),
                           jax.random.key(1), formulation=formulation)
  assert len(traces) == n, f"{formulation} retraced: {traces[n:]}"
  assert not np.allclose(first.loss, second.loss)
  np.testing.assert_array_equal(second.learning_rate, [0.3, 0.3, 0.4, 0.4])


def test_fastest_rate_keeps_each_orders_first_hit_over_the_grid():
  """3 orders x 2 rates, by hand: order 0 is faster at rate 1, order 1 at rate 0,
  order 2 is censored at rate 0 only, and a tie keeps the first rate."""
  from ieu_jax import _rcd  # pylint: disable=g-import-not-at-top
  first = np.array([10, 5, -1, 4, 9, 7])  # rate 0: orders 0-2; rate 1: orders 0-2
  censored = first < 0
  result = ieu_jax.RelearnResult(
      first_hit=first, censored=censored, learning_rate=np.repeat([0.01, 0.1], 3),
      steps=np.arange(21), accuracy=np.arange(6)[:, None] * np.ones((6, 21)),
      loss=None, distance=None, stopped_at=20)
  best = _rcd.fastest_rate(result, num_orders=3)
  np.testing.assert_array_equal(best.first_hit, [4, 5, 7])
  np.testing.assert_array_equal(best.learning_rate, [0.1, 0.01, 0.1])
  np.testing.assert_array_equal(best.accuracy[:, 0], [3, 1, 5])  # the kept trajectories
  all_censored = result._replace(first_hit=np.array([-1, 5, -1, -1, 5, -1]),
                                 censored=np.array([True, False, True, True, False, True]))
  best = _rcd.fastest_rate(all_censored, num_orders=3)
  np.testing.assert_array_equal(best.censored, [True, False, True])
  np.testing.assert_array_equal(best.learning_rate, [0.01, 0.01, 0.01])  # tie: the first
  with pytest.raises(ValueError, match="num_orders=4 does not divide 6"):
    _rcd.fastest_rate(result, num_orders=4)
