"""Models with state: BatchNorm statistics through training, unlearning, RCD and checkpoints.

Every expected number is recomputed here independently: the batch statistics in
float64 NumPy from a hand-written convolution, the parameter counts from the
architecture's description, the relearning curve from a plain Python loop.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ieu_jax
from ieu_jax import _state
from ieu_jax import checkpoints
from ieu_jax import models
from ieu_jax import training

_SHAPE = (6, 6, 1)


def _tiny(norm="batch"):
  return models.build_model("cnn", 3, _SHAPE, features=(4,), hidden=8, norm=norm)


def _data(n=12, seed=0):
  kx, ky = jax.random.split(jax.random.key(seed))
  return jax.random.normal(kx, (n, *_SHAPE)), jax.random.randint(ky, (n,), 0, 3)


def _conv_same_3x3(x, kernel):
  """float64 'SAME' 3x3 convolution (cross-correlation), stride 1: (N,H,W,C)x(3,3,C,F)."""
  x = np.asarray(x, np.float64)
  k = np.asarray(kernel, np.float64)
  n, h, w, _ = x.shape
  padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  out = np.zeros((n, h, w, k.shape[-1]))
  for i in range(3):
    for j in range(3):
      out += np.einsum("nhwc,cf->nhwf", padded[:, i:i + h, j:j + w], k[i, j])
  return out


def test_bn_cnn_is_stateful_and_the_others_are_not():
  init_fn, _ = _tiny()
  variables = init_fn(jax.random.key(0))
  assert _state.is_stateful(variables)
  stats = variables.state["batch_stats"]
  assert set(stats) == {"BatchNorm_0"}
  np.testing.assert_array_equal(stats["BatchNorm_0"]["mean"], np.zeros(4))
  np.testing.assert_array_equal(stats["BatchNorm_0"]["var"], np.ones(4))
  for norm in ("none", "group"):
    assert not _state.is_stateful(_tiny(norm)[0](jax.random.key(0)))


def test_train_step_updates_the_statistics_as_a_float64_recomputation():
  init_fn, apply_fn = _tiny()
  variables = init_fn(jax.random.key(1))
  x, y = _data()
  tx = optax.sgd(0.1)
  step = ieu_jax.make_train_step(apply_fn, tx)
  new, _, metrics = step(variables, tx.init(variables.params), (x, y))
  assert bool(metrics.finite)
  # The forward pass of the step ran with the params before it.
  z = _conv_same_3x3(x, variables.params["Conv_0"]["kernel"])
  mean, var = z.mean(axis=(0, 1, 2)), z.var(axis=(0, 1, 2))  # biased, as flax's
  got = new.state["batch_stats"]["BatchNorm_0"]
  np.testing.assert_allclose(got["mean"], 0.9 * 0.0 + 0.1 * mean, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got["var"], 0.9 * 1.0 + 0.1 * var, rtol=1e-5, atol=1e-6)
  # The params moved by SGD on the train-mode loss; the statistics are not params.
  grads = jax.grad(lambda p: ieu_jax.softmax_cross_entropy(
      apply_fn(_state.Variables(p, variables.state), x, train=True)[0], y))(variables.params)
  expected = jax.tree.map(lambda p, g: p - 0.1 * g, variables.params, grads)
  for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_eval_mode_uses_the_stored_statistics_and_train_mode_the_batch():
  init_fn, apply_fn = _tiny()
  variables = init_fn(jax.random.key(2))
  # Statistics away from their initial values, so that eval mode is not trivial.
  variables = _state.Variables(variables.params, jax.tree.map(
      lambda s: s + 0.3, variables.state))
  x, _ = _data(8)
  other, _ = _data(8, seed=5)
  batch_a = x
  batch_b = jnp.concatenate([x[:1], other[1:]])
  eval_a, eval_b = apply_fn(variables, batch_a)[0], apply_fn(variables, batch_b)[0]
  np.testing.assert_array_equal(eval_a, eval_b)
  train_a = apply_fn(variables, batch_a, train=True)[0][0]
  train_b = apply_fn(variables, batch_b, train=True)[0][0]
  assert float(jnp.max(jnp.abs(train_a - train_b))) > 1e-3
  # Eval mode equals normalising with the stored statistics by hand (float64).
  z = _conv_same_3x3(x[:1], variables.params["Conv_0"]["kernel"])
  stats = variables.state["batch_stats"]["BatchNorm_0"]
  bn = variables.params["BatchNorm_0"]
  h = (z - np.asarray(stats["mean"])) / np.sqrt(np.asarray(stats["var"], np.float64) + 1e-5)
  h = np.maximum(h * np.asarray(bn["scale"]) + np.asarray(bn["bias"]), 0.0)
  h = h.reshape(1, 3, 2, 3, 2, 4).max(axis=(2, 4)).reshape(1, -1)
  d0, d1 = variables.params["Dense_0"], variables.params["Dense_1"]
  h = np.maximum(h @ np.asarray(d0["kernel"], np.float64) + np.asarray(d0["bias"]), 0.0)
  logits = h @ np.asarray(d1["kernel"], np.float64) + np.asarray(d1["bias"])
  np.testing.assert_allclose(eval_a, logits[0], rtol=1e-4, atol=1e-5)


def _bn_channels_resnet18(width=64):
  """Channels of every BatchNorm of the CIFAR ResNet-18, from its description."""
  channels = [width]  # the stem
  for stage in range(4):
    f = width * 2**stage
    channels += [f, f] * 2  # two blocks of two convolutions, each followed by a BN
    if stage > 0:
      channels.append(f)  # the projection shortcut's BN
  return channels


def test_resnet18_batchnorm_parameter_and_statistics_counts():
  init_fn, _ = models.build_model("resnet18", 10, (32, 32, 3), norm="batch")
  variables = jax.eval_shape(init_fn, jax.random.key(0))
  count = lambda t: sum(math.prod(a.shape) for a in jax.tree.leaves(t))
  assert count(variables.params) == 11_173_962
  # A running mean and a running variance per channel of every BN.
  assert count(variables.state) == 2 * sum(_bn_channels_resnet18()) == 9_600
  assert set(variables.state) == {"batch_stats"}


def test_ieu_noise_and_decay_never_touch_the_statistics():
  init_fn, apply_fn = _tiny()
  variables = init_fn(jax.random.key(3))
  forget, retain = _data(6, seed=1), _data(6, seed=2)
  tx = ieu_jax.ieu_transform(0.05, ascent_scale=1.0, retain_scale=1.0, weight_decay=0.5,
                             noise_std=0.1, key=jax.random.key(4))
  step = ieu_jax.make_unlearn_step(apply_fn, tx)
  new, _, _ = step(variables, tx.init(variables.params), forget, retain)
  # Exactly two train-mode forward passes' updates, forget then retain (up to the
  # rounding of jit against op by op); a decay of 2.5% or noise of 0.1 would show.
  after_forget = apply_fn(variables, forget[0], train=True)[1]
  expected = apply_fn(_state.Variables(variables.params, after_forget), retain[0], train=True)[1]
  for a, b in zip(jax.tree.leaves(new.state), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)
  # The params did move by far more than the forward passes could explain (noise).
  moved = optax.tree.norm(jax.tree.map(jnp.subtract, new.params, variables.params))
  assert float(moved) > 0.1


def test_stateless_steps_are_bit_identical_to_the_plain_formulas():
  init_fn, apply_fn = _tiny("none")
  params = init_fn(jax.random.key(5))
  x, y = _data()
  tx = optax.adam(1e-2)
  loss = lambda p, b: ieu_jax.softmax_cross_entropy(apply_fn(p, b[0]), b[1])

  @jax.jit
  def plain(p, s, b):
    g = jax.grad(loss)(p, b)
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u)

  got, _, _ = ieu_jax.make_train_step(apply_fn, tx)(params, tx.init(params), (x, y))
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(plain(params, tx.init(params), (x, y)))):
    np.testing.assert_array_equal(a, b)
  fn = jax.jit(training.descent(apply_fn, tx))
  got = fn(params, tx.init(params), (x, y), jax.random.key(0))[0]
  assert not _state.is_stateful(got)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(plain(params, tx.init(params), (x, y)))):
    np.testing.assert_array_equal(a, b)


def test_checkpoint_saves_and_restores_the_statistics(tmp_path):
  init_fn, apply_fn = _tiny()
  variables = init_fn(jax.random.key(6))
  tx = optax.sgd(0.1)
  variables, _, _ = ieu_jax.make_train_step(apply_fn, tx)(
      variables, tx.init(variables.params), _data())
  path = tmp_path / "bn"
  checkpoints.save_params(path, variables)
  like = jax.eval_shape(init_fn, jax.random.key(0))
  restored = checkpoints.restore_params(path, like, checkpoints.checksum(variables))
  assert _state.is_stateful(restored)
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(variables)):
    np.testing.assert_array_equal(a, b)
  assert float(jnp.abs(restored.state["batch_stats"]["BatchNorm_0"]["mean"]).sum()) > 0


@pytest.mark.parametrize("formulation", ["sequential", "vmap_loop", "map_scan", "vmap_scan"])
def test_rcd_attacker_runs_in_train_mode_with_its_own_statistics(formulation):
  """One trajectory against a plain loop: train-mode SGD steps, eval-mode evaluations."""
  init_fn, apply_fn = _tiny()
  variables = init_fn(jax.random.key(7))
  x, y = _data(16, seed=3)
  protocol = ieu_jax.RelearnProtocol(learning_rates=0.5, batch_size=4, max_steps=4,
                                     criterion="loss", threshold=0.0,
                                     num_trajectories=2, formulation=formulation)
  key = jax.random.key(8)
  result = ieu_jax.relearn(variables, apply_fn, (x, y), protocol, key)
  from ieu_jax import _rcd
  for k in range(2):
    idx = np.asarray(_rcd.trajectory_batch_indices(
        jax.random.fold_in(key, k), 16, protocol.max_steps, protocol.batch_size))
    params, state = variables.params, variables.state
    accs = []

    losses = []

    def evaluate(params, state):
      logits = apply_fn(_state.Variables(params, state), x)  # eval mode
      losses.append(float(ieu_jax.softmax_cross_entropy(logits, y)))
      return 100.0 * float(jnp.mean(jnp.argmax(logits, -1) == y))

    accs.append(evaluate(params, state))
    for t in range(protocol.max_steps):
      b = idx[t]

      def loss(p):
        logits, new_state = apply_fn(_state.Variables(p, state), x[b], train=True)
        return ieu_jax.softmax_cross_entropy(logits, y[b]), new_state

      grads, state = jax.grad(loss, has_aux=True)(params)
      params = jax.tree.map(lambda p, g: p - 0.5 * g, params, grads)
      accs.append(evaluate(params, state))
    np.testing.assert_allclose(result.accuracy[k], accs, atol=1e-4)
    np.testing.assert_allclose(result.loss[k], losses, rtol=1e-4, atol=1e-5)
  assert result.accuracy.shape == (2, protocol.max_steps + 1)


def _bn_problem():
  from ieu_jax import data as data_lib
  from ieu_jax import methods
  init_fn, apply_fn = _tiny()
  variables = init_fn(jax.random.key(9))
  # An "original" whose statistics are not the initial ones.
  tx = optax.adam(1e-2)
  step = ieu_jax.make_train_step(apply_fn, tx)
  opt = tx.init(variables.params)
  x, y = _data(24, seed=4)
  for _ in range(3):
    variables, opt, _ = step(variables, opt, (x, y))
  return methods.Problem(
      apply_fn=apply_fn, init_fn=init_fn, original=variables,
      forget=data_lib.Dataset(x[:8], y[:8], 3), retain=data_lib.Dataset(x[8:], y[8:], 3),
      num_classes=3, train=dict(learning_rate=1e-2, epochs=1, batch_size=8))


_ONE_EPOCH = {
    "Retrain": {},
    "FT": dict(epochs=1, learning_rate=0.01, batch_size=8),
    "RL": dict(epochs=1, learning_rate=0.01, batch_size=8),
    "l1-sparse": dict(epochs=1, learning_rate=0.01, alpha=1e-4, batch_size=8),
    "SalUn": dict(epochs=1, learning_rate=0.01, batch_size=8),
    "SCRUB": dict(epochs=1, msteps=1, learning_rate=0.01, batch_size=8),
    "GA": dict(epochs=1, learning_rate=0.01, batch_size=8),
    "IEU": dict(epochs=1, learning_rate=0.01, retain_scale=1.0, weight_decay=0.1,
                noise_std=1e-3, batch_size=8),
}


@pytest.mark.parametrize("name", sorted(_ONE_EPOCH))
def test_every_method_carries_the_statistics(name):
  """Each method returns its variables whole, the statistics moved by its train-mode passes."""
  from ieu_jax import methods
  problem = _bn_problem()
  method = methods.get(name)
  out = method.unlearn(problem, methods.hparams(name, _ONE_EPOCH[name]), jax.random.key(0),
                       name=name)
  assert _state.is_stateful(out)
  assert jax.tree.structure(out) == jax.tree.structure(problem.original)
  assert bool(ieu_jax._steps.tree_is_finite(out))
  before = problem.original.state["batch_stats"]["BatchNorm_0"]
  after = out.state["batch_stats"]["BatchNorm_0"]
  assert float(jnp.max(jnp.abs(after["mean"] - before["mean"]))) > 1e-6


def test_scrub_student_in_train_mode_teacher_in_eval_mode():
  """At student == teacher the max objective is -T^2 KL(eval || train), not 0."""
  from ieu_jax.methods import scrub
  problem = _bn_problem()
  v = problem.original
  x = problem.forget.x
  value, new_state = scrub.max_objective(problem.apply_fn, 4.0)(
      v, (x, problem.forget.y), None, v)
  t = np.asarray(problem.apply_fn(v, x), np.float64) / 4.0  # eval mode
  s = np.asarray(problem.apply_fn(v, x, train=True)[0], np.float64) / 4.0  # train mode
  log_t = t - np.log(np.exp(t).sum(-1, keepdims=True))
  log_s = s - np.log(np.exp(s).sum(-1, keepdims=True))
  kl = np.mean(np.sum(np.exp(log_t) * (log_t - log_s), -1))
  assert kl > 1e-4
  np.testing.assert_allclose(float(value), -16.0 * kl, rtol=1e-4)
  expected_state = problem.apply_fn(v, x, train=True)[1]
  for a, b in zip(jax.tree.leaves(new_state), jax.tree.leaves(expected_state)):
    np.testing.assert_array_equal(a, b)
  # The min pass: gamma * CE + alpha * KL, the student in train mode, its new state.
  y = np.asarray(problem.forget.y)
  value, new_state = scrub.min_objective(problem.apply_fn, 4.0, 0.5, 2.0)(
      v, (x, problem.forget.y), None, v)
  s_raw = s * 4.0
  ce = np.mean(np.log(np.exp(s_raw).sum(-1)) - s_raw[np.arange(len(y)), y])
  np.testing.assert_allclose(float(value), 0.5 * ce + 2.0 * 16.0 * kl, rtol=1e-4)
  for a, b in zip(jax.tree.leaves(new_state), jax.tree.leaves(expected_state)):
    np.testing.assert_array_equal(a, b)


def test_salun_saliency_gradient_is_eval_mode_over_the_params():
  from ieu_jax.methods import salun
  problem = _bn_problem()
  v = problem.original
  x, y = problem.forget.x, problem.forget.y
  got = salun.forget_gradient(problem.apply_fn, v, x, y, batch_size=3)  # 3 chunks, padded
  full = jax.grad(lambda p: ieu_jax.softmax_cross_entropy(
      problem.apply_fn(_state.Variables(p, v.state), x), y))(v.params)
  assert jax.tree.structure(got) == jax.tree.structure(v.params)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(full)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_l1_penalty_is_over_the_params_only():
  from ieu_jax.methods import l1_sparse
  problem = _bn_problem()
  v = problem.original
  batch = (problem.retain.x, problem.retain.y)
  value, _ = l1_sparse.loss(problem.apply_fn, v, batch, 0.5)
  ce = ieu_jax.softmax_cross_entropy(problem.apply_fn(v, batch[0], train=True)[0], batch[1])
  l1 = sum(np.abs(np.asarray(a, np.float64)).sum() for a in jax.tree.leaves(v.params))
  np.testing.assert_allclose(float(value), float(ce) + 0.5 * l1, rtol=1e-5)


def test_config_norm_is_checked_and_its_default_enters_no_fingerprint():
  from experiments.configs import fashion_mnist
  from ieu_jax import pipeline
  from ieu_jax import sections
  config = fashion_mnist.get_config("small")
  assert config.model.norm is None
  sections.check_model(config.model)
  key = lambda c: pipeline.fingerprint(c, "original", ("model",))
  without = config.copy_and_resolve_references()
  del without.model["norm"]
  base = key(without)
  assert key(config) == base  # None: the model's default
  for norm, same in (("none", True), ("group", False), ("batch", False)):
    c = config.copy_and_resolve_references()
    c.model.norm = norm
    sections.check_model(c.model)
    assert (key(c) == base) is same, norm
  c = config.copy_and_resolve_references()
  c.model.norm = "layer"
  with pytest.raises(ValueError, match="norm='layer'"):
    sections.check_model(c.model)


def test_rl_and_ga_objectives_run_in_train_mode():
  """Their value from train-mode logits and the train-mode state, recomputed apart."""
  from ieu_jax.methods import ga, rl
  problem = _bn_problem()
  v = problem.original
  x, y = problem.forget.x, problem.forget.y
  logits, expected_state = problem.apply_fn(v, x, train=True)
  z = np.asarray(logits, np.float64)
  log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
  key = jax.random.key(11)
  labels = np.asarray(rl.random_labels(key, y, 3))
  checks = {
      "RL": (rl.relabel_objective(problem.apply_fn, 3)(v, (x, y), key),
             -np.mean(log_p[np.arange(len(labels)), labels])),
      "GA": (ga.ascent_objective(problem.apply_fn)(v, (x, y), key),
             np.mean(log_p[np.arange(len(y)), np.asarray(y)])),
  }
  for name, ((value, state), expected) in checks.items():
    np.testing.assert_allclose(float(value), expected, rtol=1e-4, err_msg=name)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(expected_state)):
      np.testing.assert_array_equal(a, b, err_msg=name)


def test_resnet18_batchnorm_train_step_updates_the_stem_statistics():
  init_fn, apply_fn = models.build_model("resnet18", 3, (8, 8, 3), width=4, norm="batch")
  variables = init_fn(jax.random.key(12))
  x = jax.random.normal(jax.random.key(13), (6, 8, 8, 3))
  y = jnp.arange(6) % 3
  tx = optax.sgd(0.1)
  new, _, _ = ieu_jax.make_train_step(apply_fn, tx)(variables, tx.init(variables.params), (x, y))
  z = _conv_same_3x3(x, variables.params["Conv_0"]["kernel"])
  got = new.state["batch_stats"]["BatchNorm_0"]
  np.testing.assert_allclose(got["mean"], 0.1 * z.mean(axis=(0, 1, 2)), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got["var"], 0.9 + 0.1 * z.var(axis=(0, 1, 2)), rtol=1e-5, atol=1e-6)
  # Every BN's statistics moved (each block's too), and only the statistics are state.
  for path, leaf in jax.tree_util.tree_leaves_with_path(new.state):
    old = variables.state
    for k in path:
      old = old[k.key]
    assert float(jnp.max(jnp.abs(leaf - old))) > 0, path
