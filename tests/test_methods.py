"""Baselines and IEU's ablations: each method's defining property on a tiny problem."""

import dataclasses
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl import flags
from ml_collections import config_flags
from scipy import stats

from ieu_jax import data as data_lib
from ieu_jax import experiment
from ieu_jax import methods
from ieu_jax._steps import softmax_cross_entropy
from ieu_jax.methods import ga
from ieu_jax.methods import ieu
from ieu_jax.methods import l1_sparse
from ieu_jax.methods import rl
from ieu_jax.methods import salun
from ieu_jax.methods import scrub
from experiments.configs import fashion_mnist

NUM_CLASSES, DIM = 4, 6
CONFIG_PATH = fashion_mnist.__file__


def _linear_apply(params, x):
  return x @ params["w"] + params["b"]


def _linear_params(seed, scale=0.5):
  rng = np.random.default_rng(seed)
  return {
      "w": jnp.asarray(scale * rng.normal(size=(DIM, NUM_CLASSES)), jnp.float32),
      "b": jnp.asarray(scale * rng.normal(size=(NUM_CLASSES,)), jnp.float32),
  }


def _dataset(seed, n):
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.normal(size=(n, DIM)), jnp.float32)
  y = jnp.asarray(rng.integers(0, NUM_CLASSES, size=n), jnp.int32)
  return data_lib.Dataset(x, y, NUM_CLASSES)


def _problem(apply_fn=_linear_apply, original=None, forget=None, retain=None):
  return methods.Problem(
      apply_fn=apply_fn,
      init_fn=lambda key: _linear_params(0),
      original=_linear_params(1) if original is None else original,
      forget=_dataset(2, 24) if forget is None else forget,
      retain=_dataset(3, 72) if retain is None else retain,
      num_classes=NUM_CLASSES,
      train={},
  )


# --- registry and configs ------------------------------------------------------------

NEW_NAMES = ("RL", "l1-sparse", "SalUn", "SCRUB", "GA", "GA-plain", "Noisy", "GA+Noisy", "GA+Decay")
ABLATIONS = ("GA-plain", "Noisy", "GA+Noisy", "GA+Decay", "IEU")


def test_registry_names_and_ablations_are_ieu():
  for name in NEW_NAMES + ("IEU",):
    assert name in methods.REGISTRY
  # GA is the published baseline, its own method; GA-plain is IEU's ascent-only ablation.
  assert methods.get("GA").unlearn is ga.unlearn and methods.get("GA").hparams_class is ga.GAHParams
  for name in ABLATIONS:
    assert methods.get(name).unlearn is ieu.unlearn
    assert methods.get(name).hparams_class is ieu.IEUHParams
  with pytest.raises(ValueError, match=r"unknown method 'Magic'.*'SCRUB'"):
    methods.get("Magic")


@pytest.mark.parametrize("name", sorted(methods.REGISTRY))
def test_every_method_refuses_an_unknown_key_and_names_the_valid_ones(name):
  cls = methods.get(name).hparams_class
  valid = sorted(f.name for f in dataclasses.fields(cls))
  required = {f.name: 1 for f in dataclasses.fields(cls)
              if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
  with pytest.raises(ValueError) as e:
    methods.hparams(name, dict(required, learning_rte=0.1))
  assert f"{name}: unknown hyperparameter(s) ['learning_rte']" in str(e.value)
  assert f"valid keys are {valid}" in str(e.value)
  # The required keys are exactly those required before (no key became optional).
  want = {"Retrain": set(), "FT": {"epochs", "learning_rate"}, "RL": {"epochs", "learning_rate"},
          "SalUn": {"epochs", "learning_rate"}, "l1-sparse": {"epochs", "learning_rate", "alpha"},
          "SCRUB": {"epochs", "learning_rate", "msteps"}}.get(name, {"epochs", "learning_rate"})
  assert set(required) == want
  if required:
    with pytest.raises(ValueError, match="missing required"):
      methods.hparams(name, {})


def test_hyperparameter_defaults():
  sgd = dict(momentum=0.9, weight_decay=5e-4, batch_size=128, steps=None)
  req = dict(epochs=3, learning_rate=0.1)
  assert methods.hparams("Retrain").to_dict() == {}
  assert methods.hparams("FT", req).to_dict() == dict(req, **sgd)
  assert methods.hparams("RL", req).to_dict() == dict(req, **sgd, exclude_true=False)
  assert methods.hparams("SalUn", req).to_dict() == dict(
      req, **sgd, exclude_true=False, mask_fraction=0.5, mask_applies_to="updates")
  assert methods.hparams("l1-sparse", dict(req, alpha=1e-4)).to_dict() == dict(
      req, **sgd, alpha=1e-4)
  assert methods.hparams("SCRUB", dict(req, msteps=2)).to_dict() == dict(
      req, **sgd, msteps=2, temperature=4.0, gamma=0.99, alpha=0.001, forget_batch_size=None)
  assert methods.hparams("GA", req).to_dict() == dict(req, **sgd)
  for name in ABLATIONS:
    assert methods.hparams(name, req).to_dict() == dict(
        req, ascent_scale=1.0, retain_scale=0.0, weight_decay=0.0, noise_std=0.0,
        batch_size=128, max_grad_norm=None, steps=None)
  with pytest.raises(ValueError, match=r"mask_applies_to='x': expected one of \('updates', 'gradients'\)"):
    methods.hparams("SalUn", dict(req, mask_applies_to="x"))
  with pytest.raises(TypeError, match="epochs=2.5 must be an integer"):
    methods.hparams("FT", dict(req, epochs=2.5))


@pytest.mark.parametrize("variant", ["", "small", "results", "results_nonorm", "results_clip"])
def test_every_configured_key_is_a_hyperparameter(variant):
  config = fashion_mnist.get_config(variant)
  for name in methods.REGISTRY:
    hp = methods.hparams(name, config.method.get(name))
    assert isinstance(hp, methods.get(name).hparams_class)
    if name != "Retrain":
      assert set(config.method[name].to_dict()) <= set(hp.to_dict())
  for name in config.search:  # the search grids name hyperparameters too
    assert set(config.search[name].to_dict()) <= set(methods.hparams(name, config.method[name]).to_dict())


@pytest.mark.parametrize("variant", ["", "small"])
def test_config_has_every_method_and_the_ablations_differ_as_named(variant):
  config = fashion_mnist.get_config(variant)
  for name in methods.REGISTRY:
    if name != "Retrain":
      assert name in config.method, name
  m = {name: config.method[name].to_dict() for name in ABLATIONS}
  get = lambda name, k: m[name].get(k, 0.0)
  has = {
      # (ascent, retain, decay, noise)
      "GA-plain": (True, False, False, False),
      "Noisy": (False, True, False, True),
      "GA+Noisy": (True, True, False, True),
      "GA+Decay": (True, True, True, False),
      "IEU": (True, True, True, True),
  }
  for name, want in has.items():
    got = tuple(get(name, k) > 0 for k in ("ascent_scale", "retain_scale", "weight_decay", "noise_std"))
    assert got == want, name
  # The baseline GA runs the reference SGD; its grid is its own.
  assert methods.hparams("GA", config.method.GA).to_dict()["momentum"] == 0.9
  assert methods.hparams("GA", config.method.GA).to_dict()["weight_decay"] == 5e-4
  assert "GA" in config.search and "GA-plain" in config.search


def test_results_is_the_batchnorm_comparison_and_differs_from_nonorm_only_there():
  bn, plain = fashion_mnist.get_config("results"), fashion_mnist.get_config("results_nonorm")
  assert bn.model.norm == "batch" and plain.model.norm is None
  a, b = bn.to_dict(), plain.to_dict()
  del a["model"]["norm"], b["model"]["norm"], a["method"], b["method"]
  assert a == b  # sizes, scenarios, RCD protocol: the same comparison
  assert bn.method.GA.learning_rate != plain.method.GA.learning_rate  # searched anew
  assert "max_grad_norm" not in bn.method.GA or bn.method.GA.max_grad_norm is None


@pytest.mark.parametrize("variant", ["results_nonorm", "results_clip"])
def test_results_variants_keep_the_ablations_chosen_values_under_the_new_name(variant):
  config = fashion_mnist.get_config(variant)
  names = config.methods.split(",")
  assert "GA" in names and "GA-plain" in names
  assert config.method["GA-plain"].to_dict() == dict(
      dict(ascent_scale=1.0, batch_size=32, epochs=5, learning_rate=0.003),
      **({"max_grad_norm": 5.0} if variant == "results_clip" else {}))
  assert "max_grad_norm" not in config.method.GA  # the baseline as published, unclipped
  assert methods.hparams("GA", config.method.GA).momentum == 0.9


def test_methods_override_on_the_command_line_selects_names_with_symbols():
  argv = ["prog", f"--config={CONFIG_PATH}:small",
          "--config.methods=Retrain,GA+Noisy,l1-sparse,SalUn"]
  fv = flags.FlagValues()
  # Override flags are defined from the arguments, as the binary's are from sys.argv.
  config_flags.DEFINE_config_file("config", None, "config", flag_values=fv, lock_config=True,
                                  sys_argv=argv)
  fv(argv)
  config = fv.config
  assert experiment.method_names(config) == ["Retrain", "GA+Noisy", "l1-sparse", "SalUn"]
  assert config.method["GA+Noisy"].noise_std > 0


# --- the shared descent step ---------------------------------------------------------

def test_descent_on_passes_batch_key_and_aux_to_the_objective():
  from ieu_jax import training  # pylint: disable=g-import-not-at-top
  p0, batch, key = _linear_params(1), (_dataset(5, 10).x, _dataset(5, 10).y), jax.random.key(3)
  scale = jnp.asarray(2.0)

  def objective(p, batch, key, scale):
    noise = jax.random.normal(key, (batch[0].shape[0], NUM_CLASSES))
    return scale * softmax_cross_entropy(_linear_apply(p, batch[0]) + noise, batch[1])

  tx = optax.sgd(0.1)
  got, _, value = jax.jit(training.descent_on(objective, tx))(p0, tx.init(p0), batch, key, scale)
  want_value, g = jax.value_and_grad(objective)(p0, batch, key, scale)
  chex.assert_trees_all_close(got, jax.tree.map(lambda p, d: p - 0.1 * d, p0, g), atol=1e-6)
  np.testing.assert_allclose(value, want_value, rtol=1e-6)
  # The classifier objective ignores the key: plain descent on cross-entropy.
  ce = training.classifier_objective(_linear_apply)
  assert float(ce(p0, batch, key)) == float(ce(p0, batch))


# --- RL ------------------------------------------------------------------------------

@pytest.mark.parametrize("exclude_true", [False, True])
def test_random_labels_are_uniform(exclude_true):
  n = 40_000
  true = jnp.asarray(np.arange(n) % NUM_CLASSES, jnp.int32)
  labels = np.asarray(rl.random_labels(jax.random.key(0), true, NUM_CLASSES, exclude_true))
  assert labels.dtype == np.int32 and labels.shape == (n,)
  same = labels == np.asarray(true)
  if exclude_true:
    assert not same.any()
    # Uniform over the three other classes: the offset (label - true) mod C is uniform on 1..C-1.
    offsets = (labels - np.asarray(true)) % NUM_CLASSES
    counts = np.bincount(offsets, minlength=NUM_CLASSES)[1:]
  else:
    # The true class is kept at rate 1/C, like every other class.
    assert abs(same.mean() - 1 / NUM_CLASSES) < 0.01
    counts = np.bincount(labels, minlength=NUM_CLASSES)
  assert stats.chisquare(counts).pvalue > 1e-3
  # Uniform within each true class too (not, say, a fixed permutation of classes).
  for c in range(NUM_CLASSES):
    sub = labels[np.asarray(true) == c]
    k = np.bincount(sub, minlength=NUM_CLASSES)
    k = np.delete(k, c) if exclude_true else k
    assert stats.chisquare(k).pvalue > 1e-3


def test_rl_draws_fresh_labels_for_every_batch_and_epoch(monkeypatch):
  drawn = []
  real = rl.random_labels

  def spy(key, labels, num_classes, exclude_true=False):
    out = real(key, labels, num_classes, exclude_true)
    jax.debug.callback(lambda a: drawn.append(np.asarray(a)), out, ordered=True)
    return out

  monkeypatch.setattr(rl, "random_labels", spy)
  # All forget examples alike, so the epoch's shuffle cannot hide repeated labels.
  forget = data_lib.Dataset(jnp.ones((32, DIM)), jnp.zeros(32, jnp.int32), NUM_CLASSES)
  hp = rl.RLHParams(epochs=3, learning_rate=0.01, batch_size=16)
  params = rl.unlearn(_problem(forget=forget), hp, jax.random.key(0))
  jax.block_until_ready(params)
  jax.effects_barrier()
  assert len(drawn) == 3 * 2  # 3 epochs x 2 forget batches
  keys = {tuple(d) for d in drawn}
  assert len(keys) == len(drawn), "two batches got the same random labels"
  per_epoch = [np.bincount(np.concatenate(drawn[2 * e:2 * e + 2]), minlength=NUM_CLASSES)
               for e in range(3)]
  assert any((per_epoch[0] != h).any() for h in per_epoch[1:]), "labels fixed across epochs"
  # Uniform, true class (0) included.
  assert set(np.concatenate(drawn)) == set(range(NUM_CLASSES))


def test_rl_is_forget_descent_then_retain_pass_and_keyed():
  problem = _problem()
  hp = rl.RLHParams(epochs=2, learning_rate=0.05, batch_size=8)
  a = rl.unlearn(problem, hp, jax.random.key(1))
  c = rl.unlearn(problem, hp, jax.random.key(2))
  assert not np.allclose(a["w"], c["w"])
  chex.assert_trees_all_equal(problem.original, _linear_params(1))  # not donated away
  # One forget step by hand: descent on CE with the labels random_labels draws.
  tx = optax.sgd(0.1)
  p0 = _linear_params(1)
  batch = (problem.forget.x[:8], problem.forget.y[:8])
  key = jax.random.key(5)
  got, _, _ = rl.relabel_descent(_linear_apply, tx, NUM_CLASSES)(p0, tx.init(p0), batch, key)
  labels = rl.random_labels(key, batch[1], NUM_CLASSES)
  g = jax.jit(jax.grad(lambda p: softmax_cross_entropy(_linear_apply(p, batch[0]), labels)))(p0)
  chex.assert_trees_all_close(got, jax.tree.map(lambda p, d: p - 0.1 * d, p0, g), atol=1e-6)


def test_ga_ascent_step_by_hand():
  # One step of plain SGD on -CE: the parameters move *up* the cross-entropy.
  tx = optax.sgd(0.1)
  p0 = _linear_params(1)
  problem = _problem()
  batch = (problem.forget.x[:8], problem.forget.y[:8])
  got, _, loss = ga.ascent_step(_linear_apply, tx)(p0, tx.init(p0), batch, jax.random.key(0))
  ce = lambda p: softmax_cross_entropy(_linear_apply(p, batch[0]), batch[1])
  g = jax.grad(ce)(p0)
  chex.assert_trees_all_close(got, jax.tree.map(lambda p, d: p + 0.1 * d, p0, g), atol=1e-6)
  assert float(loss) == pytest.approx(-float(ce(p0)), rel=1e-6)
  assert float(ce(got)) > float(ce(p0))


# --- SalUn ---------------------------------------------------------------------------

def _numpy_flat(tree):
  return np.concatenate([np.ravel(np.asarray(x)) for x in jax.tree.leaves(tree)])


@pytest.mark.parametrize("fraction", [0.0, 0.13, 0.5, 0.77, 1.0])
def test_saliency_mask_keeps_exactly_the_global_top_fraction(fraction):
  rng = np.random.default_rng(0)
  grads = {"a": jnp.asarray(rng.normal(size=(5, 7)), jnp.float32),
           "b": [jnp.asarray(3 * rng.normal(size=(11,)), jnp.float32)],
           "c": jnp.asarray(0.1 * rng.normal(size=(2, 3, 4)), jnp.float32)}
  mask = salun.saliency_mask(grads, fraction)
  chex.assert_trees_all_equal_shapes(mask, grads)
  assert all(m.dtype == jnp.bool_ for m in jax.tree.leaves(mask))
  flat, keep = np.abs(_numpy_flat(grads)), _numpy_flat(mask)
  k = math.floor(fraction * flat.size + 0.5)
  assert keep.sum() == k
  if 0 < k < flat.size:
    assert flat[keep].min() > flat[~keep].max()


def test_saliency_mask_is_global_not_per_layer_and_breaks_ties_by_position():
  grads = {"big": jnp.full((4,), -5.0), "small": jnp.full((4,), 0.1)}
  mask = salun.saliency_mask(grads, 0.5)
  np.testing.assert_array_equal(mask["big"], [True] * 4)
  np.testing.assert_array_equal(mask["small"], [False] * 4)
  ties = {"a": jnp.ones((2, 2)), "b": jnp.ones((3,))}
  mask = salun.saliency_mask(ties, 3 / 7)
  np.testing.assert_array_equal(mask["a"], [[True, True], [True, False]])
  np.testing.assert_array_equal(mask["b"], [False] * 3)
  with pytest.raises(ValueError, match="fraction"):
    salun.saliency_mask(ties, 1.5)


def test_forget_gradient_is_the_full_set_gradient_in_chunks():
  problem = _problem()
  x, y = problem.forget.x, problem.forget.y
  want = jax.jit(jax.grad(lambda p: softmax_cross_entropy(_linear_apply(p, x), y)))(problem.original)
  got = salun.forget_gradient(_linear_apply, problem.original, x, y, batch_size=7)  # 24 = 3*7+3
  chex.assert_trees_all_close(got, want, atol=1e-6)


def _salun_run(mode, weight_decay=5e-4):
  problem = _problem()
  hp = salun.SalUnHParams(epochs=2, learning_rate=0.1, momentum=0.9, weight_decay=weight_decay,
            batch_size=8, mask_fraction=0.5, mask_applies_to=mode)
  params = salun.unlearn(problem, hp, jax.random.key(0))
  # The mask SalUn must have used: from the forget gradient at the original weights.
  grads = salun.forget_gradient(_linear_apply, problem.original, problem.forget.x, problem.forget.y)
  mask = _numpy_flat(salun.saliency_mask(grads, 0.5))
  return _numpy_flat(problem.original), _numpy_flat(params), mask


def test_salun_holds_non_salient_weights_fixed():
  theta0, theta, mask = _salun_run("updates")
  assert mask.sum() == round(0.5 * mask.size)
  np.testing.assert_array_equal(theta[~mask], theta0[~mask])  # bit for bit
  assert (theta[mask] != theta0[mask]).all()


def test_salun_gradient_variant_lets_weight_decay_shrink_the_masked_weights():
  theta0, theta, mask = _salun_run("gradients")
  ratio = theta[~mask] / theta0[~mask]
  # No gradient reaches them: only the (linear) decay with momentum moves them,
  # by one common factor below 1.
  np.testing.assert_allclose(ratio, ratio[0], rtol=1e-5)
  assert ratio[0] < 1.0 - 1e-4
  with pytest.raises(ValueError, match="mask_applies_to"):
    salun.unlearn(_problem(), salun.SalUnHParams(epochs=1, learning_rate=0.1, mask_applies_to="x"),
                  jax.random.key(0))


# --- l1-sparse -----------------------------------------------------------------------

def test_l1_coefficient_decays_linearly_to_zero():
  alpha, epochs = 0.3, 5
  a = np.array([l1_sparse.l1_coefficient(e, epochs, alpha) for e in range(epochs + 1)])
  np.testing.assert_allclose(a, alpha * (1 - np.arange(epochs + 1) / epochs), atol=1e-12)
  assert a[0] == alpha and a[-1] == 0.0
  np.testing.assert_allclose(np.diff(a), -alpha / epochs)


def test_l1_term_gradient_is_coefficient_times_sign():
  params = _linear_params(4)
  params["b"] = params["b"].at[0].set(0.0)  # sign(0) = 0, not JAX's d|x|/dx = 1
  batch = (_dataset(5, 10).x, _dataset(5, 10).y)
  coef = 0.37
  g_total = jax.jit(jax.grad(lambda p: l1_sparse.loss(_linear_apply, p, batch, coef)))(params)
  g_ce = jax.jit(jax.grad(lambda p: softmax_cross_entropy(_linear_apply(p, batch[0]), batch[1])))(params)
  diff = jax.tree.map(jnp.subtract, g_total, g_ce)
  chex.assert_trees_all_close(diff, jax.tree.map(lambda p: coef * jnp.sign(p), params), atol=1e-6)
  assert float(diff["b"][0]) == 0.0
  np.testing.assert_allclose(l1_sparse.l1_norm(params), np.abs(_numpy_flat(params)).sum(), rtol=1e-6)


def test_l1_sparse_uses_the_per_epoch_schedule():
  # Logits that do not depend on the weights: the only gradient is the l1 term's.
  apply_fn = lambda p, x: jnp.zeros((x.shape[0], NUM_CLASSES)) + 0.0 * p["b"].sum()
  # Weights far from 0, so that no sign changes during the run.
  original = jax.tree.map(lambda p: jnp.sign(p) * (0.5 + jnp.abs(p)), _linear_params(1))
  problem = _problem(apply_fn=apply_fn, original=original)
  lr, alpha, epochs = 0.01, 1.0, 4
  hp = l1_sparse.L1SparseHParams(epochs=epochs, learning_rate=lr, alpha=alpha, momentum=0.0,
                                 weight_decay=0.0, batch_size=36)  # 72 retain: 2 steps an epoch
  params = l1_sparse.unlearn(problem, hp, jax.random.key(0))
  total = 2 * sum(l1_sparse.l1_coefficient(e, epochs, alpha) for e in range(epochs))
  want = jax.tree.map(lambda p: p - lr * total * jnp.sign(p), problem.original)
  chex.assert_trees_all_close(params, want, atol=1e-6)


# --- SCRUB ---------------------------------------------------------------------------

def test_distill_kl_is_teacher_to_student_at_temperature():
  rng = np.random.default_rng(0)
  s, t, temp = rng.normal(size=(5, 3)), 3 * rng.normal(size=(5, 3)), 2.5

  def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)

  ps, pt = softmax(s / temp), softmax(t / temp)
  want = temp**2 * np.mean(np.sum(pt * (np.log(pt) - np.log(ps)), -1))
  reverse = temp**2 * np.mean(np.sum(ps * (np.log(ps) - np.log(pt)), -1))
  assert abs(want - reverse) > 0.05  # the direction matters on this instance
  got = scrub.distill_kl(jnp.asarray(s, jnp.float32), jnp.asarray(t, jnp.float32), temp)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  assert float(scrub.distill_kl(jnp.asarray(t), jnp.asarray(t), temp)) == pytest.approx(0.0, abs=1e-6)


def _perturbed(params, seed, scale=0.3):
  return jax.tree.map(jnp.add, params, _linear_params(seed, scale))


def test_scrub_max_step_raises_the_forget_kl():
  problem = _problem()
  teacher, batch = problem.original, (problem.forget.x, problem.forget.y)
  tx = optax.sgd(0.05)
  step = jax.jit(scrub.max_step(_linear_apply, tx, 4.0))
  kl = lambda p: float(scrub.distill_kl(_linear_apply(p, batch[0]), _linear_apply(teacher, batch[0]), 4.0))
  student = _perturbed(teacher, 7)
  before = kl(student)
  for _ in range(3):
    student, _, reported = step(student, tx.init(student), batch, None, teacher)
  assert kl(student) > before + 1e-3
  # At the teacher itself the divergence and its gradient vanish: nothing moves.
  same, _, value = step(teacher, tx.init(teacher), batch, None, teacher)
  assert float(value) == pytest.approx(0.0, abs=1e-6)
  chex.assert_trees_all_close(same, teacher, atol=1e-6)


def test_scrub_min_step_lowers_retain_loss_and_kl():
  problem = _problem()
  teacher, batch = problem.original, (problem.retain.x, problem.retain.y)
  tx = optax.sgd(0.05)
  ce = lambda p: float(softmax_cross_entropy(_linear_apply(p, batch[0]), batch[1]))
  kl = lambda p: float(scrub.distill_kl(_linear_apply(p, batch[0]), _linear_apply(teacher, batch[0]), 4.0))
  student = _perturbed(teacher, 8)
  ce_step = jax.jit(scrub.min_step(_linear_apply, tx, 4.0, gamma=1.0, alpha=0.0))
  after, _, value = ce_step(student, tx.init(student), batch, None, teacher)
  assert float(value) == pytest.approx(ce(student), rel=1e-5)
  assert ce(after) < ce(student) - 1e-3
  kl_step = jax.jit(scrub.min_step(_linear_apply, tx, 4.0, gamma=0.0, alpha=1.0))
  after, _, _ = kl_step(student, tx.init(student), batch, None, teacher)
  assert kl(after) < kl(student) - 1e-4


def test_scrub_passes_and_unlearn():
  assert scrub.passes(4, 2) == [("max", "min"), ("max", "min"), ("min",), ("min",)]
  assert scrub.passes(2, 0) == [("min",), ("min",)]
  problem = _problem()
  hp = scrub.SCRUBHParams(epochs=3, msteps=2, learning_rate=0.05, batch_size=8)
  params = scrub.unlearn(problem, hp, jax.random.key(0))
  chex.assert_trees_all_equal(problem.original, _linear_params(1))  # the teacher stays frozen
  assert not np.allclose(params["w"], problem.original["w"])
  chex.assert_trees_all_equal(params, scrub.unlearn(problem, hp, jax.random.key(0)))


# --- IEU's optional gradient clipping --------------------------------------------------


def test_ieu_max_grad_norm_bounds_every_ascent_step():
  # Large inputs make the forget gradient large; one epoch of one step each.
  forget = _dataset(2, 8)
  forget = data_lib.Dataset(forget.x * 100.0, forget.y, NUM_CLASSES)
  problem = _problem(forget=forget)
  base_hp = ieu.IEUHParams(epochs=1, learning_rate=0.1, ascent_scale=1.0, batch_size=8)
  moved = lambda p: float(optax.tree.norm(jax.tree.map(jnp.subtract, p, problem.original)))
  free = moved(ieu.unlearn(problem, base_hp, jax.random.key(0)))
  clipped = moved(ieu.unlearn(problem, base_hp.replace(max_grad_norm=0.5), jax.random.key(0)))
  assert free > 1.0  # unclipped, the single ascent step is long
  np.testing.assert_allclose(clipped, 0.1 * 0.5, rtol=1e-5)  # exactly lr * max_grad_norm


def test_ieu_max_grad_norm_bounds_the_retain_gradient_too():
  # max_grad_norm has make_unlearn_step's meaning: the retain gradient, here far
  # above the bound, is clipped as the forget gradient is.
  retain = _dataset(3, 72)
  problem = _problem(retain=data_lib.Dataset(retain.x * 100.0, retain.y, NUM_CLASSES))
  hp = ieu.IEUHParams(epochs=1, learning_rate=0.1, ascent_scale=0.0, retain_scale=1.0,
                      batch_size=24, max_grad_norm=0.5)  # 24 forget examples: one step
  moved = lambda p: float(optax.tree.norm(jax.tree.map(jnp.subtract, p, problem.original)))
  assert moved(ieu.unlearn(problem, hp.replace(max_grad_norm=None), jax.random.key(0))) > 1.0
  np.testing.assert_allclose(moved(ieu.unlearn(problem, hp, jax.random.key(0))), 0.1 * 0.5,
                             rtol=1e-5)


# SCRUB's whole run, recomputed in float64 by hand. Every pass is one full-batch step
# (batch size = set size, so the shuffle cannot change the mean), and the linear
# model's gradients are closed forms: d CE / d z = (softmax(z) - onehot(y)) / n and
# d KL_T(t || s) / d z_s = T * (softmax(z_s / T) - softmax(z_t / T)) / n for the
# T**2-scaled divergence.

def _np_softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _np_scrub_step(kind, p, teacher, buf, x, y, hp):
  """One SGD (momentum, coupled decay) step of SCRUB's ``kind`` pass, in float64."""
  n, temp = x.shape[0], hp.temperature
  z, zt = x @ p["w"] + p["b"], x @ teacher["w"] + teacher["b"]
  dkl = temp * (_np_softmax(z / temp) - _np_softmax(zt / temp)) / n
  if kind == "max":
    dz = -dkl
  else:
    dz = hp.gamma * (_np_softmax(z) - np.eye(NUM_CLASSES)[y]) / n + hp.alpha * dkl
  grads = {"w": x.T @ dz, "b": dz.sum(0)}
  for k in p:
    d = grads[k] + hp.weight_decay * p[k]
    buf[k] = d if buf[k] is None else hp.momentum * buf[k] + d
    p[k] = p[k] - hp.learning_rate * buf[k]
  return p, buf


def _np_scrub(problem, hp, schedule, teacher_follows=False):
  """float64 SCRUB over ``schedule``: ``[(kind, set name), ...]`` in order.

  ``teacher_follows``: the broken variant whose teacher is the current student.
  """
  f64 = lambda t: {k: np.asarray(v, np.float64) for k, v in t.items()}
  teacher = f64(problem.original)
  p, buf = dict(teacher), {k: None for k in teacher}
  sets = {"forget": problem.forget, "retain": problem.retain}
  for kind, where in schedule:
    x, y = np.asarray(sets[where].x, np.float64), np.asarray(sets[where].y)
    p, buf = _np_scrub_step(kind, p, dict(p) if teacher_follows else teacher, buf, x, y, hp)
  return p


SCRUB_HP = scrub.SCRUBHParams(epochs=3, msteps=2, learning_rate=0.2, temperature=2.0,
                              gamma=1.0, alpha=0.5, momentum=0.9, weight_decay=0.05,
                              batch_size=72, forget_batch_size=24)  # one step per pass
# epoch 1: max on forget, min on retain; epoch 2: the same; epoch 3: min on retain.
SCRUB_SCHEDULE = [("max", "forget"), ("min", "retain")] * 2 + [("min", "retain")]


def test_scrub_run_equals_the_float64_recomputation_of_its_passes():
  problem = _problem()
  got = scrub.unlearn(problem, SCRUB_HP, jax.random.key(0))
  want = _np_scrub(problem, SCRUB_HP, SCRUB_SCHEDULE)
  for k in want:
    np.testing.assert_allclose(np.asarray(got[k]), want[k], atol=2e-5, rtol=2e-5)
  # The other orders and sets the recomputation rules out, each far outside that tolerance:
  # the passes of an epoch swapped, the max pass on the retain set, or a teacher that
  # follows the student (every divergence 0).
  swapped = [("min", "retain"), ("max", "forget")] * 2 + [("min", "retain")]
  on_retain = [("max", "retain"), ("min", "retain")] * 2 + [("min", "retain")]
  for wrong in (_np_scrub(problem, SCRUB_HP, swapped), _np_scrub(problem, SCRUB_HP, on_retain),
                _np_scrub(problem, SCRUB_HP, SCRUB_SCHEDULE, teacher_follows=True)):
    assert max(np.abs(wrong[k] - want[k]).max() for k in want) > 1e-3


def test_scrub_first_max_pass_is_moved_by_weight_decay_alone():
  # At the start the student is the teacher: the divergence's gradient is 0 (up to
  # float32 rounding, ~1e-8 here), so the first max step is the coupled weight decay
  # alone, theta - lr * wd * theta.
  problem = _problem()
  teacher, lr, wd = problem.original, 0.2, 0.05
  tx = scrub.SCRUBHParams(epochs=1, msteps=1, learning_rate=lr, weight_decay=wd).optimizer()
  grads = jax.grad(scrub.max_objective(_linear_apply, 2.0))(
      teacher, (problem.forget.x, problem.forget.y), None, teacher)
  assert all(float(jnp.abs(g).max()) < 1e-6 for g in jax.tree.leaves(grads))
  after, _, _ = scrub.max_step(_linear_apply, tx, 2.0)(
      teacher, tx.init(teacher), (problem.forget.x, problem.forget.y), None, teacher)
  chex.assert_trees_all_close(after, jax.tree.map(lambda p: p * (1 - lr * wd), teacher),
                              atol=1e-7)


# --- GA (the baseline) against GA-plain (IEU's ablation) --------------------------------

def _np_ce_grad(p, x, y):
  """Closed-form gradient of the mean cross-entropy of the linear model, float64."""
  dz = (_np_softmax(x @ p["w"] + p["b"]) - np.eye(NUM_CLASSES)[y]) / x.shape[0]
  return {"w": x.T @ dz, "b": dz.sum(0)}


def _np_ga_sgd(p0, x, y, lr, m, wd, steps):
  """Full-batch SGD ascent with momentum and weight decay, by hand in float64:
  d = -grad CE + wd * theta; v = m * v + d (v_1 = d_1); theta -= lr * v."""
  p, v = dict(p0), {k: np.zeros_like(a) for k, a in p0.items()}
  for _ in range(steps):
    g = _np_ce_grad(p, x, y)
    for k in p:
      v[k] = m * v[k] + (-g[k] + wd * p[k])
      p[k] = p[k] - lr * v[k]
  return p


def test_ga_baseline_is_sgd_ascent_with_momentum_and_weight_decay():
  problem = _problem()
  lr, m, wd, epochs = 0.1, 0.9, 0.05, 3  # one full-batch step an epoch: three steps
  hp = ga.GAHParams(epochs=epochs, learning_rate=lr, momentum=m, weight_decay=wd, batch_size=24)
  got = ga.unlearn(problem, hp, jax.random.key(0))
  x, y = np.asarray(problem.forget.x, np.float64), np.asarray(problem.forget.y)
  p0 = {k: np.asarray(v, np.float64) for k, v in problem.original.items()}
  p = _np_ga_sgd(p0, x, y, lr, m, wd, epochs)
  for k in p:
    np.testing.assert_allclose(np.asarray(got[k]), p[k], atol=2e-6, rtol=1e-5)
  # GA-plain, IEU's ablation, at the same learning rate: theta += lr * grad CE, no
  # momentum, no decay; recomputed by hand and run through the registry's method.
  plain = methods.get("GA-plain").unlearn(
      problem, methods.hparams("GA-plain", dict(epochs=epochs, learning_rate=lr, batch_size=24)),
      jax.random.key(0), name="GA-plain")
  q = dict(p0)
  for _ in range(epochs):
    g = _np_ce_grad(q, x, y)
    q = {k: q[k] + lr * g[k] for k in q}
  for k in q:
    np.testing.assert_allclose(np.asarray(plain[k]), q[k], atol=2e-6, rtol=1e-5)
  # The two differ far beyond that tolerance, and each part of the baseline's optimizer
  # matters: without momentum, or without the decay, the recomputation misses.
  assert max(np.abs(p[k] - q[k]).max() for k in p) > 1e-2
  for m_, wd_ in ((0.0, wd), (m, 0.0)):
    r = _np_ga_sgd(p0, x, y, lr, m_, wd_, epochs)
    assert max(np.abs(r[k] - p[k]).max() for k in p) > 1e-3


def test_ga_baseline_raises_the_forget_loss_and_defaults_to_the_reference_sgd():
  hp = ga.GAHParams(epochs=2, learning_rate=0.01)
  assert (hp.momentum, hp.weight_decay) == (0.9, 5e-4)
  problem = _problem()
  ce = lambda p: float(softmax_cross_entropy(_linear_apply(p, problem.forget.x), problem.forget.y))
  assert ce(ga.unlearn(problem, hp.replace(batch_size=8), jax.random.key(0))) > ce(problem.original) + 0.02
