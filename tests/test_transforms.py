"""IEU's optax transformations: closed forms, noise statistics, keys, composition."""

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

import ieu_jax


def _nested_tree(seed):
  rng = np.random.default_rng(seed)
  return {
      "conv": {"kernel": rng.normal(size=(3, 3, 2, 4)), "bias": rng.normal(size=(4,))},
      "head": [rng.normal(size=(5, 3)), {"b": rng.normal(size=(3,))}],
  }


def _f32(tree):
  return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), tree)


@pytest.mark.parametrize("with_retain", [False, True])
def test_update_matches_closed_form_without_noise(with_retain):
  lr, a_f, a_r, lam = 0.05, 1.5, 0.7, 0.3
  params64, gf64, gr64 = _nested_tree(0), _nested_tree(1), _nested_tree(2)
  params, gf, gr = _f32(params64), _f32(gf64), _f32(gr64)
  tx = ieu_jax.ieu_transform(
      lr, ascent_scale=a_f, retain_scale=a_r if with_retain else 0.0, weight_decay=lam
  )
  state = tx.init(params)
  extra = {"retain_grads": gr} if with_retain else {}
  updates, _ = jax.jit(tx.update)(gf, state, params, **extra)
  new = optax.apply_updates(params, updates)

  def expected(p, f, r):
    delta = lr * a_f * f - lr * lam * p
    if with_retain:
      delta = delta - lr * a_r * r
    return p + delta

  want = jax.tree.map(expected, params64, gf64, gr64)
  chex.assert_trees_all_close(new, want, rtol=2e-6, atol=2e-6)


def test_retain_scale_without_retain_grads_is_an_error():
  tx = ieu_jax.ieu_transform(0.1, retain_scale=0.5)
  p = jnp.ones(3)
  with pytest.raises(ValueError, match="retain_scale=0.5"):
    tx.update(p, tx.init(p), p)


def test_retain_grads_of_another_structure_is_an_error():
  tx = ieu_jax.ieu_transform(0.1, retain_scale=0.5)
  p = {"a": jnp.ones(3)}
  with pytest.raises(ValueError, match="structure"):
    tx.update(p, tx.init(p), p, retain_grads={"b": jnp.ones(3)})


_NAN, _INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    "builder,name,value,error",
    [(ieu_jax.ieu_transform, "learning_rate", v, e)
     for v, e in [(None, TypeError), (True, TypeError), ("0.1", TypeError), (-0.1, ValueError),
                  (_NAN, ValueError), (_INF, ValueError), (np.float32(-1), ValueError),
                  (jnp.asarray([0.1, -0.1]), ValueError)]]
    + [(ieu_jax.ieu_transform, name, v, e)
       for name in ("ascent_scale", "retain_scale", "weight_decay", "noise_std")
       for v, e in [(None, TypeError), (-0.5, ValueError), (_NAN, ValueError), (-_INF, ValueError)]]
    + [(ieu_jax.ascent, "ascent_scale", -1.0, ValueError),
       (ieu_jax.ascent, "ascent_scale", lambda count: 1.0, TypeError),
       (ieu_jax.ascent, "retain_scale", _INF, ValueError),
       (ieu_jax.decoupled_weight_decay, "weight_decay", -1e-4, ValueError),
       (ieu_jax.add_weight_noise, "noise_std", jnp.asarray(-0.01), ValueError),
       (ieu_jax.add_weight_noise, "noise_std", False, TypeError)],
)
def test_builders_refuse_bad_hyperparameters_by_name(builder, name, value, error):
  kwargs = {name: value}
  if builder is ieu_jax.ieu_transform and name != "learning_rate":
    kwargs["learning_rate"] = 0.1
  with pytest.raises(error, match=re.escape(f"{name}={value!r} must be a finite number >= 0")):
    builder(**kwargs)


def test_builders_accept_what_is_known_only_when_the_step_runs():
  params = jnp.ones(3)
  # A zero learning rate moves nothing; schedules are called at each step.
  for tx in (ieu_jax.ieu_transform(0.0), ieu_jax.ieu_transform(
      optax.constant_schedule(0.1), weight_decay=lambda count: 0.0, noise_std=lambda count: 0.0)):
    updates, _ = tx.update(params, tx.init(params), params)
    assert np.all(np.isfinite(updates))
  # Traced values are not checked (a negative one is the caller's business).
  jax.jit(lambda lr: ieu_jax.ieu_transform(lr, weight_decay=-lr).init(params))(-1.0)


def _noise_samples(noise_std, n=40_000, key=0):
  params = {"a": jnp.zeros((n // 2,)), "b": jnp.zeros((n // 4, 2))}
  tx = ieu_jax.ieu_transform(0.1, ascent_scale=0.0, noise_std=noise_std, key=key)
  updates, _ = jax.jit(tx.update)(params, tx.init(params), params)
  return np.concatenate([np.ravel(x) for x in jax.tree.leaves(updates)]).astype(np.float64)


def _std_is_consistent(samples, sigma, alpha=1e-3):
  """Two-sided chi-square test of H0: the samples are N(0, sigma^2)."""
  n = samples.size
  statistic = np.sum(samples**2) / sigma**2  # ~ chi2(n) under H0 (mean known 0)
  p = 2 * min(stats.chi2.cdf(statistic, n), stats.chi2.sf(statistic, n))
  return p > alpha


def test_noise_has_the_declared_scale_and_rejects_wrong_scales():
  sigma = 0.03
  samples = _noise_samples(sigma)
  assert _std_is_consistent(samples, sigma)
  assert not _std_is_consistent(samples, sigma * 2 / 3)
  assert not _std_is_consistent(samples, sigma * 1.5)
  # Gaussian and centred, not merely of the right variance.
  assert stats.kstest(samples / sigma, "norm").pvalue > 1e-3
  assert abs(samples.mean()) < 5 * sigma / np.sqrt(samples.size)


def test_noise_keys_same_different_and_fresh():
  a, b = _noise_samples(1.0, n=1000, key=7), _noise_samples(1.0, n=1000, key=7)
  c = _noise_samples(1.0, n=1000, key=jax.random.key(8))
  np.testing.assert_array_equal(a, b)
  assert np.abs(a - c).max() > 0.1
  # Fresh at every step: two consecutive updates differ and are uncorrelated.
  params = jnp.zeros((2000,))
  tx = ieu_jax.add_weight_noise(1.0, key=3)
  state = tx.init(params)
  update = jax.jit(tx.update)
  u1, state = update(params, state)
  u2, state = update(params, state)
  assert abs(np.corrcoef(u1, u2)[0, 1]) < 0.1
  assert int(state.count) == 2


def test_noise_key_forms_agree():
  p = jnp.zeros(16)
  outs = []
  for key in (5, jnp.int32(5), jax.random.key(5), jax.random.key_data(jax.random.key(5))):
    tx = ieu_jax.add_weight_noise(1.0, key=key)
    outs.append(tx.update(p, tx.init(p))[0])
  for o in outs[1:]:
    np.testing.assert_array_equal(outs[0], o)
  with pytest.raises(TypeError, match="key"):
    ieu_jax.add_weight_noise(1.0, key=jnp.zeros(3, jnp.float32)).init(p)


def test_vmap_over_keys_gives_different_noise():
  params = jnp.zeros((64,))
  grads = jnp.zeros((64,))

  def one(key):
    tx = ieu_jax.ieu_transform(0.1, noise_std=1.0, key=key)
    return tx.update(grads, tx.init(params), params)[0]

  keys = jax.random.split(jax.random.key(0), 4)
  out = jax.jit(jax.vmap(one))(keys)
  assert out.shape == (4, 64)
  for i in range(4):
    for j in range(i):
      assert np.abs(out[i] - out[j]).max() > 0.1
  # The same as running each key alone.
  np.testing.assert_allclose(out[2], one(keys[2]), rtol=1e-6)


def test_vmap_over_noise_std_and_learning_rate():
  n = 20_000
  params, grads = jnp.zeros((n,)), jnp.ones((n,))
  stds = jnp.array([0.0, 0.01, 0.1])
  lrs = jnp.array([0.1, 0.2, 0.3])

  def one(lr, s):
    tx = ieu_jax.ieu_transform(lr, noise_std=s, key=0)
    return tx.update(grads, tx.init(params), params)[0]

  out = np.asarray(jax.jit(jax.vmap(one))(lrs, stds))
  for lr, s, row in zip(lrs, stds, out):
    np.testing.assert_allclose(row.mean(), lr, atol=5 * max(float(s), 1e-7) / np.sqrt(n) + 1e-6)
    if s == 0:
      np.testing.assert_allclose(row, lr, rtol=1e-6)
    else:
      assert _std_is_consistent(row - float(lr), float(s))


def test_a_static_zero_noise_level_matches_a_traced_zero():
  # At noise_std = 0 (a Python number) no noise is drawn; the updates and the
  # state (count, key stream) must be those of a zero the step cannot see.
  params = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones((3,))}
  grads = jax.tree.map(lambda p: 0.5 * p + 1.0, params)
  static = ieu_jax.add_weight_noise(0.0, key=3)
  traced = ieu_jax.add_weight_noise(jnp.asarray(0.0), key=3)
  s1, s2 = static.init(params), traced.init(params)
  for _ in range(3):
    u1, s1 = jax.jit(static.update)(grads, s1)
    u2, s2 = jax.jit(traced.update)(grads, s2)
    chex.assert_trees_all_equal(u1, u2, grads)
    assert int(s1.count) == int(s2.count)
    np.testing.assert_array_equal(jax.random.key_data(s1.key), jax.random.key_data(s2.key))


def test_inject_hyperparams_with_defaults_as_they_stand():
  params = {"w": jnp.ones((500,)), "b": jnp.zeros((3,))}
  grads = jax.tree.map(jnp.ones_like, params)
  tx = optax.inject_hyperparams(ieu_jax.ieu_transform)(
      learning_rate=0.1, noise_std=0.0, weight_decay=0.5, key=11
  )
  state = tx.init(params)
  assert state.hyperparams["key"].dtype == jnp.int32  # a seed arrives as an array
  update = jax.jit(tx.update)
  u, state = update(grads, state, params)
  chex.assert_trees_all_close(
      optax.apply_updates(params, u),
      jax.tree.map(lambda p: p + 0.1 * 1.0 - 0.1 * 0.5 * p, params),
      rtol=1e-6,
  )
  # Change a hyperparameter in the state: the next update uses it.
  state.hyperparams["noise_std"] = jnp.asarray(0.2)
  state.hyperparams["weight_decay"] = jnp.asarray(0.0)
  u2, _ = update(grads, state, params)
  noise = np.asarray(u2["w"]) - 0.1
  assert _std_is_consistent(noise, 0.2)


def test_schedules_for_learning_rate_and_noise():
  params = jnp.zeros((4000,))
  grads = jnp.ones((4000,))
  tx = ieu_jax.ieu_transform(
      optax.linear_schedule(0.1, 0.0, 10),
      noise_std=lambda count: jnp.where(count >= 1, 1e6, 0.0),  # 0, then large
      key=0,
  )
  state = tx.init(params)
  u1, state = tx.update(grads, state, params)
  np.testing.assert_allclose(u1, 0.1, rtol=1e-6)  # step 0: lr 0.1, no noise
  u2, state = tx.update(grads, state, params)
  assert np.std(np.asarray(u2)) > 1e5  # step 1: the noise schedule switched on


def test_init_accepts_shape_dtype_structs_and_state_is_stable():
  params = {"w": jnp.ones((3, 2)), "b": jnp.ones((2,), jnp.bfloat16)}
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
  tx = ieu_jax.ieu_transform(0.1, weight_decay=0.1, noise_std=0.01, key=1)
  abstract_state = jax.eval_shape(tx.init, abstract)
  state = tx.init(params)
  chex.assert_trees_all_equal_shapes_and_dtypes(
      jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype) if not jax.dtypes.issubdtype(s.dtype, jax.dtypes.prng_key) else jax.random.key(0), abstract_state),
      state,
  )
  update = jax.jit(tx.update)
  new_state = state
  for _ in range(3):
    updates, new_state = update(params, new_state, params)
  chex.assert_trees_all_equal_shapes_and_dtypes(state, new_state)
  chex.assert_trees_all_equal_shapes_and_dtypes(updates, params)
  noise_state = new_state[-1]
  assert isinstance(noise_state, ieu_jax.WeightNoiseState)
  assert noise_state.count.dtype == jnp.int32


def test_components_compose_in_ordinary_chains():
  params = {"w": jnp.full((4,), 2.0), "b": jnp.full((2,), 2.0)}
  grads = {"w": jnp.full((4,), 3.0), "b": jnp.full((2,), 3.0)}
  mask = {"w": True, "b": False}
  tx = optax.chain(
      optax.clip_by_global_norm(1.0),
      ieu_jax.ascent(2.0),
      optax.masked(ieu_jax.decoupled_weight_decay(0.5), mask),
      optax.sgd(0.1),
      optax.masked(ieu_jax.add_weight_noise(1.0, key=0), mask),
  )
  updates, _ = tx.update(grads, tx.init(params), params)
  clipped = 3.0 / np.sqrt(6 * 9.0)  # each gradient element after global-norm clipping
  np.testing.assert_allclose(updates["b"], 0.1 * 2.0 * clipped, rtol=1e-6)  # no decay, no noise
  w = np.asarray(updates["w"])
  assert np.all(np.abs(w - (0.1 * 2.0 * clipped - 0.1 * 0.5 * 2.0)) > 1e-4)  # noisy
  # The ascent with Adam: the direction of the update is the gradient's sign.
  adam = optax.chain(ieu_jax.ascent(), optax.adam(1e-2))
  u, _ = adam.update(grads, adam.init(params), params)
  np.testing.assert_allclose(u["w"], 1e-2, rtol=1e-4)


def test_unlearn_step_on_a_linear_model_matches_a_float64_recomputation():
  rng = np.random.default_rng(0)
  w0 = rng.normal(size=(5, 3))
  xf, yf = rng.normal(size=(8, 5)), rng.integers(0, 3, 8)
  xr, yr = rng.normal(size=(6, 5)), rng.integers(0, 3, 6)
  lr, lam, a_r = 0.1, 0.2, 0.5

  def grad64(w, x, y):
    z = x @ w
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    return x.T @ p / len(y)

  want = w0 + lr * grad64(w0, xf, yf) - lr * a_r * grad64(w0, xr, yr) - lr * lam * w0
  tx = ieu_jax.ieu_transform(lr, retain_scale=a_r, weight_decay=lam)
  step = ieu_jax.make_unlearn_step(lambda w, x: x @ w, tx)
  w = jnp.asarray(w0, jnp.float32)
  f = (jnp.asarray(xf, jnp.float32), jnp.asarray(yf))
  r = (jnp.asarray(xr, jnp.float32), jnp.asarray(yr))
  new_w, _, metrics = step(w, tx.init(w), f, r)
  np.testing.assert_allclose(new_w, want, rtol=1e-5, atol=1e-6)
  assert bool(metrics.finite)
  # A NaN is reported by the step, not hidden.
  bad = w.at[0, 0].set(jnp.nan)
  assert not bool(step(bad, tx.init(bad), f, r)[2].finite)


def _linear_data(seed, n, scale=1.0):
  rng = np.random.default_rng(seed)
  return (jnp.asarray(scale * rng.normal(size=(n, 5)), jnp.float32),
          jnp.asarray(rng.integers(0, 3, n)))


def test_unlearn_step_with_objectives_and_keys_matches_a_hand_computation():
  lr, a_r, lam = 0.1, 0.5, 0.2
  w = jnp.asarray(np.random.default_rng(0).normal(size=(5, 3)), jnp.float32)
  f, r = _linear_data(1, 8), _linear_data(2, 6)
  kf, kr = jax.random.key(3), jax.random.key(4)

  def objective(w, batch, key):  # a loss that draws noise from its key
    x, y = batch
    logits = x @ w + jax.random.normal(key, (x.shape[0], 3))
    return ieu_jax.softmax_cross_entropy(logits, y)

  def retain_objective(w, batch, key):
    return objective(w, batch, key) + 0.5 * jnp.sum(w**2)

  tx = ieu_jax.ieu_transform(lr, retain_scale=a_r, weight_decay=lam)
  step = ieu_jax.make_unlearn_step(None, tx, objective=objective,
                                   retain_objective=retain_objective)
  new_w, _, metrics = step(w, tx.init(w), f, r, keys=(kf, kr))
  gf = jax.grad(objective)(w, f, kf)
  gr = jax.grad(retain_objective)(w, r, kr)
  want = w + lr * gf - lr * a_r * gr - lr * lam * w
  np.testing.assert_allclose(new_w, want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(metrics.forget_loss, objective(w, f, kf), rtol=1e-6)
  np.testing.assert_allclose(metrics.retain_loss, retain_objective(w, r, kr), rtol=1e-6)
  # The keys reach the objectives: other keys, another step.
  other, _, _ = step(w, tx.init(w), f, r, keys=(kr, kf))
  assert not np.allclose(other, new_w)
  # The retain objective defaults to the forget one.
  same = ieu_jax.make_unlearn_step(None, tx, objective=objective)
  got, _, _ = same(w, tx.init(w), f, r, keys=(kf, kr))
  want = w + lr * gf - lr * a_r * jax.grad(objective)(w, r, kr) - lr * lam * w
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_unlearn_step_refuses_ambiguous_arguments():
  tx = ieu_jax.ieu_transform(0.1)
  apply_fn = lambda w, x: x @ w
  objective = lambda w, batch, key: jnp.sum(w)
  with pytest.raises(ValueError, match="not both"):
    ieu_jax.make_unlearn_step(apply_fn, tx, objective=objective)
  with pytest.raises(ValueError, match="apply_fn or objective"):
    ieu_jax.make_unlearn_step(None, tx)
  with pytest.raises(ValueError, match="max_grad_norm"):
    ieu_jax.make_unlearn_step(apply_fn, tx, max_grad_norm=0.0)


@pytest.mark.parametrize(
    "build,error,message",
    [(lambda f, bound=bound: ieu_jax.make_unlearn_step(
         f, ieu_jax.ieu_transform(0.1), max_grad_norm=bound),
      ValueError, f"max_grad_norm={bound!r}: use None")
     for bound in (0.0, -1.0, _NAN, _INF, True, "1")]
    + [(lambda f: ieu_jax.make_unlearn_step(f, ieu_jax.ieu_transform), TypeError,
        "tx=<function ieu_transform"),
       (lambda f: ieu_jax.make_train_step(f, None), TypeError, "tx=None must be")],
)
def test_step_builders_refuse_bad_arguments_by_name(build, error, message):
  with pytest.raises(error, match=re.escape(message)):
    build(lambda w, x: x @ w)


def test_clip_by_norm_is_the_one_formula():
  tree = _f32(_nested_tree(0))
  for bound in (0.5, 1e3):
    norm = optax.tree.norm(tree)
    want = jax.tree.map(lambda g: g * jnp.minimum(1.0, bound / (norm + 1e-12)), tree)
    chex.assert_trees_all_equal(ieu_jax._steps.clip_by_norm(tree, bound), want)  # bit for bit
  np.testing.assert_allclose(optax.tree.norm(ieu_jax._steps.clip_by_norm(tree, 0.5)), 0.5, rtol=1e-6)


def test_unlearn_step_max_grad_norm_clips_each_gradient_before_tx():
  lr, bound = 0.1, 1.0
  w = jnp.asarray(np.random.default_rng(0).normal(size=(5, 3)), jnp.float32)
  f = _linear_data(1, 8, scale=0.1)  # a small forget gradient: left as it is
  r = _linear_data(2, 6, scale=100.0)  # a large retain gradient: clipped to the bound
  loss = lambda w, batch: ieu_jax.softmax_cross_entropy(batch[0] @ w, batch[1])
  gf, gr = jax.grad(loss)(w, f), jax.grad(loss)(w, r)
  assert float(optax.tree.norm(gf)) < bound < float(optax.tree.norm(gr))
  tx = ieu_jax.ieu_transform(lr, ascent_scale=1.0, retain_scale=1.0)
  step = ieu_jax.make_unlearn_step(lambda w, x: x @ w, tx, max_grad_norm=bound)
  new_w, _, _ = step(w, tx.init(w), f, r)
  want = w + lr * gf - lr * gr * (bound / float(optax.tree.norm(gr)))
  np.testing.assert_allclose(new_w, want, rtol=1e-5, atol=1e-6)
  # Each gradient alone: the retain step moves by exactly lr * bound.
  only_retain = ieu_jax.ieu_transform(lr, ascent_scale=0.0, retain_scale=1.0)
  step = ieu_jax.make_unlearn_step(lambda w, x: x @ w, only_retain, max_grad_norm=bound)
  moved, _, _ = step(w, only_retain.init(w), f, r)
  np.testing.assert_allclose(optax.tree.norm(moved - w), lr * bound, rtol=1e-5)
  # The default call form, unclipped, moves by the full retain gradient.
  free = ieu_jax.make_unlearn_step(lambda w, x: x @ w, only_retain)
  moved, _, _ = free(w, only_retain.init(w), f, r)
  assert float(optax.tree.norm(moved - w)) > 10 * lr * bound
