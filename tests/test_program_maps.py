"""Per-setting data, keys, starts and aux in ``_program.run_stacked`` (the shadow models'
engine): setting ``g`` equals the single run on its own subsets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ieu_jax import _program
from ieu_jax import data as data_lib
from ieu_jax import methods

NUM_CLASSES, DIM, G = 4, 6, 3
FORGET_POOL, RETAIN_POOL, NF, NR = 20, 40, 9, 21


def _linear_apply(params, x):
  return x @ params["w"] + params["b"]


def _dataset(seed, n):
  rng = np.random.default_rng(seed)
  return data_lib.Dataset(jnp.asarray(rng.normal(size=(n, DIM)), jnp.float32),
                          jnp.asarray(rng.integers(0, NUM_CLASSES, size=n), jnp.int32),
                          NUM_CLASSES)


def _original(seed):
  rng = np.random.default_rng(seed)
  return {"w": jnp.asarray(0.5 * rng.normal(size=(DIM, NUM_CLASSES)), jnp.float32),
          "b": jnp.asarray(0.5 * rng.normal(size=(NUM_CLASSES,)), jnp.float32)}


def _problem(forget, retain, original):
  return methods.Problem(apply_fn=_linear_apply, init_fn=None, original=original, forget=forget,
                         retain=retain, num_classes=NUM_CLASSES, train={})


POOL = _problem(_dataset(2, FORGET_POOL), _dataset(3, RETAIN_POOL), _original(1))
SGD = dict(epochs=2, batch_size=4)
SETTINGS = {
    "FT": dict(SGD, learning_rate=0.1),
    "IEU": dict(SGD, learning_rate=0.05, retain_scale=1.0, weight_decay=0.1, noise_std=1e-3),
    "SCRUB": dict(SGD, epochs=3, msteps=2, learning_rate=0.1, alpha=0.5),
}


def _maps(seed):
  rng = np.random.default_rng(seed)
  return {"forget": np.stack([rng.choice(FORGET_POOL, NF, replace=False) for _ in range(G)]),
          "retain": np.stack([rng.choice(RETAIN_POOL, NR, replace=False) for _ in range(G)])}


def _subset(ds, idx):
  return data_lib.Dataset(ds.x[idx], ds.y[idx], ds.num_classes)


def _run(name, problem, maps=None, **kw):
  hp = methods.hparams(name, SETTINGS[name])
  prog = methods.get(name).program(problem, hp, name)
  values = [{k: getattr(hp, k) for k in prog.arrays}] * G
  if maps is not None:
    maps = {k: v for k, v in maps.items() if k in prog.data or k in prog.aux_maps.values()}
  return _program.run_stacked(prog, problem.original, values, jax.random.key(5), maps=maps, **kw)


def _close(a, b, **tol):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tol)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_identity_maps_reproduce_the_unmapped_run(name):
  # To float rounding only: a mapped batch is gathered per setting (batched), which
  # changes the contraction order XLA picks for the first layer (seen: 1 ulp).
  identity = {"forget": np.tile(np.arange(FORGET_POOL), (G, 1)),
              "retain": np.tile(np.arange(RETAIN_POOL), (G, 1))}
  plain, _ = _run(name, POOL)
  mapped, diverged = _run(name, POOL, identity)
  assert not diverged.any()
  _close(plain, mapped, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(SETTINGS))
@pytest.mark.parametrize("layout", ["vmap", "map"])
def test_a_mapped_setting_is_the_single_run_on_its_subsets(name, layout):
  maps = _maps(0)
  stacked, diverged = _run(name, POOL, maps, layout=layout)
  assert not diverged.any()
  hp = methods.hparams(name, SETTINGS[name])
  singles = []
  for g in range(G):
    sub = _problem(_subset(POOL.forget, maps["forget"][g]), _subset(POOL.retain, maps["retain"][g]),
                   POOL.original)
    singles.append(methods.get(name).unlearn(sub, hp, jax.random.key(5), name=name))
    _close(_program.unstack(stacked, g), singles[g], rtol=2e-5, atol=2e-6)
  # The subsets matter: the settings' models differ.
  assert not np.allclose(singles[0]["w"], singles[1]["w"])


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_own_starts_keys_and_teachers_give_each_setting_its_single_run(name):
  maps = _maps(1)
  originals = [_original(10 + g) for g in range(G)]
  start = jax.tree.map(lambda *a: jnp.stack(a), *originals)
  keys = jax.random.split(jax.random.key(9), G)
  problem = _problem(POOL.forget, POOL.retain, start)  # SCRUB's teacher: one per setting
  hp = methods.hparams(name, SETTINGS[name])
  prog = methods.get(name).program(problem, hp, name)
  values = [{k: getattr(hp, k) for k in prog.arrays}] * G
  maps = {k: v for k, v in maps.items() if k in prog.data or k in prog.aux_maps.values()}
  stacked, diverged = _program.run_stacked(
      prog, start, values, None, maps=maps, keys=keys, stacked=True,
      stacked_aux=(0,) if name == "SCRUB" else ())
  assert not diverged.any()
  full = _maps(1)
  for g in range(G):
    sub = _problem(_subset(POOL.forget, full["forget"][g]), _subset(POOL.retain, full["retain"][g]),
                   originals[g])
    single = methods.get(name).unlearn(sub, hp, keys[g], name=name)
    _close(_program.unstack(stacked, g), single, rtol=2e-5, atol=2e-6)


def test_ieu_retain_batches_stay_in_the_mapped_retain_set():
  # A retain set whose examples outside the map are poisoned with NaN: a retain batch
  # drawn from the whole set rather than through the map would make the weights NaN.
  x = np.asarray(POOL.retain.x).copy()
  maps = _maps(2)
  outside = np.setdiff1d(np.arange(RETAIN_POOL), np.unique(maps["retain"]))
  assert outside.size
  x[outside] = np.nan
  retain = data_lib.Dataset(jnp.asarray(x), POOL.retain.y, NUM_CLASSES)
  stacked, diverged = _run("IEU", _problem(POOL.forget, retain, POOL.original), maps)
  assert not diverged.any()
  assert all(np.isfinite(np.asarray(a)).all() for a in jax.tree.leaves(stacked))


@pytest.mark.parametrize("maps, message", [
    ({"forget": np.zeros((G + 1, 5), int)}, r"maps\['forget'\] has 4 rows for 3 settings"),
    ({"forget": np.full((G, 5), FORGET_POOL)},
     r"maps\['forget'\]\[0, 0\] = 20 is outside the data set's 20 examples"),
    ({"forget": np.full((G, 5), -1)}, r"maps\['forget'\]\[0, 0\] = -1 is outside"),
    ({"forget": [[0, 1], [0, 1, 2], [0]]}, r"maps\['forget'\]: the rows have unequal widths"),
    ({"forget": np.zeros(G, int)}, r"maps\['forget'\] has shape \(3,\)"),
    ({"forget": np.zeros((G, 2))}, r"maps\['forget'\] has dtype float64"),
    ({"test": np.zeros((G, 2), int)}, r"maps\['test'\]: the program has no data set 'test'"),
    ({"retain": np.full((G, 2), RETAIN_POOL + 3)}, r"maps\['retain'\]\[0, 0\] = 43"),
])
def test_bad_maps_are_refused_naming_the_value(maps, message):
  hp = methods.hparams("IEU", SETTINGS["IEU"])
  prog = methods.get("IEU").program(POOL, hp, "IEU")
  values = [{k: getattr(hp, k) for k in prog.arrays}] * G
  with pytest.raises(ValueError, match=message):
    _program.run_stacked(prog, POOL.original, values, jax.random.key(0), maps=maps)


def test_bad_keys_starts_and_aux_are_refused():
  hp = methods.hparams("SCRUB", SETTINGS["SCRUB"])
  prog = methods.get("SCRUB").program(POOL, hp, "SCRUB")
  values = [{k: getattr(hp, k) for k in prog.arrays}] * G
  run = lambda **kw: _program.run_stacked(prog, POOL.original, values, jax.random.key(0), **kw)
  with pytest.raises(ValueError, match="2 keys for 3 settings"):
    run(keys=jax.random.split(jax.random.key(0), 2))
  with pytest.raises(ValueError,
                     match=r"stacked variables: a leaf of shape \(4,\) has no leading axis"):
    run(stacked=True)
  with pytest.raises(ValueError, match=r"aux entry 0: a leaf of shape \(4,\)"):
    run(stacked_aux=(0,))
  with pytest.raises(ValueError, match="stacked_aux position 1 is outside"):
    run(stacked_aux=(1,))
