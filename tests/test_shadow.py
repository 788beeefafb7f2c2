"""Shadow models (``ieu_jax.shadow``): N copies as one program equal N single runs."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ieu_jax
from ieu_jax import _program
from ieu_jax import data as data_lib
from ieu_jax import methods
from ieu_jax import privacy
from ieu_jax import shadow
from ieu_jax.methods import retrain

NUM_CLASSES, DIM, N, POP, FORGET = 3, 5, 3, 24, 4
RECIPE = {"learning_rate": 0.05, "epochs": 2, "batch_size": 5, "schedule": "cosine",
          "weight_decay": 1e-3}


def _init(key):
  k1, k2 = jax.random.split(key)
  return {"w": 0.3 * jax.random.normal(k1, (DIM, NUM_CLASSES)),
          "b": 0.1 * jax.random.normal(k2, (NUM_CLASSES,))}


def _apply(params, x):
  return x @ params["w"] + params["b"]


def _population(x=None):
  rng = np.random.default_rng(0)
  y = rng.integers(0, NUM_CLASSES, POP)
  if x is None:
    x = rng.normal(size=(POP, DIM)) + np.eye(NUM_CLASSES, DIM)[y] * 2
  return data_lib.Dataset(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32), NUM_CLASSES)


POPULATION = _population()
TRAINED, FORGOTTEN = privacy.inclusion(3, N, POP, FORGET)
PROBLEM = methods.Problem(apply_fn=_apply, init_fn=_init, original=None, forget=None,
                          retain=None, num_classes=NUM_CLASSES, train=RECIPE)


def _subset(mask):
  idx = np.flatnonzero(mask)
  return data_lib.Dataset(POPULATION.x[idx], POPULATION.y[idx], NUM_CLASSES)


def _close(a, b, **tol):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tol)


@pytest.fixture(scope="module")
def shadows():
  return shadow.train_shadows(_init, _apply, POPULATION, TRAINED, RECIPE, jax.random.key(1))


def test_each_shadow_is_train_model_on_its_half_with_its_key(shadows):
  keys = jax.random.split(jax.random.key(1), N)
  singles = [retrain.train_model(_init, _apply, _subset(TRAINED[m]), RECIPE, keys[m], "single")
             for m in range(N)]
  for m in range(N):
    _close(_program.unstack(shadows, m), singles[m], rtol=2e-5, atol=2e-6)
  assert not np.allclose(singles[0]["w"], singles[1]["w"])


def test_a_shadow_never_sees_an_example_outside_its_half():
  # Poison one example: exactly the models whose half holds it must break.
  counts = TRAINED.sum(0)
  i = int(np.flatnonzero((counts > 0) & (counts < N))[0])
  x = np.asarray(POPULATION.x).copy()
  x[i] = np.nan
  holders = np.flatnonzero(TRAINED[:, i]).tolist()
  assert 0 < len(holders) < N
  with pytest.raises(ieu_jax.NonFiniteError,
                     match=re.escape(f"models {holders} stopped being finite")):
    shadow.train_shadows(_init, _apply, _population(x), TRAINED, RECIPE, jax.random.key(1))


def test_retrain_shadows_train_on_their_half_minus_their_forget_set():
  retrained = shadow.retrain_shadows(_init, _apply, POPULATION, TRAINED, FORGOTTEN, RECIPE,
                                     jax.random.key(2))
  keys = jax.random.split(jax.random.key(2), N)
  for m in range(N):
    single = retrain.train_model(_init, _apply, _subset(TRAINED[m] & ~FORGOTTEN[m]), RECIPE,
                                 keys[m], "single")
    _close(_program.unstack(retrained, m), single, rtol=2e-5, atol=2e-6)


SGD = dict(epochs=2, batch_size=3)
UNLEARN = {
    "FT": dict(SGD, learning_rate=0.1),
    "GA": dict(SGD, learning_rate=0.02),
    "IEU": dict(SGD, learning_rate=0.05, retain_scale=1.0, weight_decay=0.1, noise_std=1e-3),
    "SCRUB": dict(SGD, epochs=3, msteps=2, learning_rate=0.1, alpha=0.5),
    "SalUn": dict(SGD, learning_rate=0.1, mask_fraction=0.4),
}


@pytest.mark.parametrize("name", sorted(UNLEARN))
def test_each_copy_unlearns_as_the_single_method_on_its_subsets(shadows, name):
  hp = methods.hparams(name, UNLEARN[name])
  unlearned, diverged = shadow.unlearn_shadows(name, PROBLEM, shadows, TRAINED, FORGOTTEN, hp,
                                               jax.random.key(4), population=POPULATION)
  assert not diverged.any()
  keys = jax.random.split(jax.random.key(4), N)
  for m in range(N):
    problem = methods.Problem(
        apply_fn=_apply, init_fn=_init, original=_program.unstack(shadows, m),
        forget=_subset(FORGOTTEN[m]), retain=_subset(TRAINED[m] & ~FORGOTTEN[m]),
        num_classes=NUM_CLASSES, train=RECIPE)
    single = methods.get(name).unlearn(problem, hp, keys[m], name=name)
    _close(_program.unstack(unlearned, m), single, rtol=2e-5, atol=2e-6)


def test_bad_inclusion_and_methods_are_refused(shadows):
  unequal = TRAINED.copy()
  j = int(np.flatnonzero(~unequal[1])[0])
  unequal[1, j] = True
  with pytest.raises(ValueError, match=r"model 0 has 12, model 1 has 13"):
    shadow.train_shadows(_init, _apply, POPULATION, unequal, RECIPE, jax.random.key(0))
  with pytest.raises(ValueError, match=r"trained has 25 columns for a population of 24"):
    shadow.train_shadows(_init, _apply, POPULATION, np.pad(TRAINED, ((0, 0), (0, 1))), RECIPE,
                         jax.random.key(0))
  with pytest.raises(ValueError, match=r"trained must be an \(N, population\) boolean matrix"):
    shadow.train_shadows(_init, _apply, POPULATION, TRAINED.astype(int), RECIPE, jax.random.key(0))
  outside = FORGOTTEN.copy()
  k = int(np.flatnonzero(~TRAINED[0])[0])
  outside[0, k] = True
  with pytest.raises(ValueError, match=rf"forgotten\[0, {k}\] is True but the model never"):
    shadow.unlearn_shadows("FT", PROBLEM, shadows, TRAINED, outside, UNLEARN["FT"],
                           jax.random.key(0), population=POPULATION)
  with pytest.raises(ValueError, match="Retrain is retrain_shadows"):
    shadow.unlearn_shadows("Retrain", PROBLEM, shadows, TRAINED, FORGOTTEN, {}, jax.random.key(0),
                           population=POPULATION)


def test_cached_shadows_restore_on_a_rerun_and_retrain_on_a_change(tmp_path):
  calls = []
  like = jax.eval_shape(lambda: jax.vmap(_init)(jax.random.split(jax.random.key(0), N)))

  def cached(recipe, trained=TRAINED):
    def compute():
      calls.append(recipe["learning_rate"])
      return shadow.train_shadows(_init, _apply, POPULATION, trained, recipe, jax.random.key(1))
    parts = {"recipe": recipe, "key": jax.random.key(1), "population": POPULATION}
    return shadow.cached_shadows(str(tmp_path), "shadows", parts, like, compute,
                                 {"trained": trained})

  first = cached(RECIPE)
  again = cached(RECIPE)
  assert not first.restored and again.restored and calls == [0.05]
  for a, b in zip(jax.tree.leaves(first.params), jax.tree.leaves(again.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  changed = cached(dict(RECIPE, learning_rate=0.1))
  assert not changed.restored and calls == [0.05, 0.1]
  other = np.roll(TRAINED, 1, axis=0)
  assert not cached(RECIPE, other).restored and len(calls) == 3
  assert cached(RECIPE).restored and len(calls) == 3


def test_fingerprint_reads_array_bytes_and_keys():
  base = {"x": np.arange(4), "key": jax.random.key(1), "cfg": {"a": 1}}
  assert shadow.fingerprint(base) == shadow.fingerprint(dict(base))
  assert shadow.fingerprint(base) != shadow.fingerprint({**base, "x": np.arange(4) + 1})
  assert shadow.fingerprint(base) != shadow.fingerprint({**base, "key": jax.random.key(2)})
  assert shadow.fingerprint(base) != shadow.fingerprint({**base, "cfg": {"a": 2}})


@pytest.mark.parametrize("norm", ["none", "batch"])
def test_a_tiny_cnn_trains_and_unlearns_as_its_single_runs(norm):
  # Convolutions (vmapped: grouped) and, with BatchNorm, running statistics per copy.
  from ieu_jax import models  # pylint: disable=g-import-not-at-top
  init_fn, apply_fn = models.build_model("cnn", 3, (6, 6, 1), features=(4,), hidden=8, norm=norm)
  kx, ky = jax.random.split(jax.random.key(0))
  pop = data_lib.Dataset(jax.random.normal(kx, (16, 6, 6, 1)),
                         jax.random.randint(ky, (16,), 0, 3), 3)
  trained, forgotten = privacy.inclusion(1, 2, 16, 3)
  recipe = dict(RECIPE, batch_size=4, epochs=1)
  stacked = shadow.train_shadows(init_fn, apply_fn, pop, trained, recipe, jax.random.key(2))
  keys = jax.random.split(jax.random.key(2), 2)
  sub = lambda mask: data_lib.Dataset(pop.x[np.flatnonzero(mask)], pop.y[np.flatnonzero(mask)], 3)
  hp = methods.hparams("SCRUB", dict(SGD, epochs=1, msteps=1, learning_rate=0.05))
  problem = methods.Problem(apply_fn=apply_fn, init_fn=init_fn, original=None, forget=None,
                            retain=None, num_classes=3, train=recipe)
  unlearned, diverged = shadow.unlearn_shadows("SCRUB", problem, stacked, trained, forgotten, hp,
                                               jax.random.key(5), population=pop)
  assert not diverged.any()
  ukeys = jax.random.split(jax.random.key(5), 2)
  for m in range(2):
    single = retrain.train_model(init_fn, apply_fn, sub(trained[m]), recipe, keys[m], "single")
    _close(_program.unstack(stacked, m), single, rtol=1e-4, atol=1e-5)
    one = methods.Problem(apply_fn=apply_fn, init_fn=init_fn, original=single,
                          forget=sub(forgotten[m]), retain=sub(trained[m] & ~forgotten[m]),
                          num_classes=3, train=recipe)
    _close(_program.unstack(unlearned, m), methods.get("SCRUB").unlearn(one, hp, ukeys[m]),
           rtol=1e-4, atol=1e-5)
