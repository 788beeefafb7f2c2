"""The sweep engine: G settings of a method as one program equal G single runs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ieu_jax
from ieu_jax import _program
from ieu_jax import data as data_lib
from ieu_jax import methods
from ieu_jax import models
from ieu_jax.methods import base
import builders

NUM_CLASSES, DIM = 4, 6


def _linear_apply(params, x):
  return x @ params["w"] + params["b"]


def _dataset(seed, n):
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.normal(size=(n, DIM)), jnp.float32)
  y = jnp.asarray(rng.integers(0, NUM_CLASSES, size=n), jnp.int32)
  return data_lib.Dataset(x, y, NUM_CLASSES)


def _problem(forget_size=24, retain_size=72, apply_fn=_linear_apply, original=None):
  rng = np.random.default_rng(1)
  if original is None:
    original = {"w": jnp.asarray(0.5 * rng.normal(size=(DIM, NUM_CLASSES)), jnp.float32),
                "b": jnp.asarray(0.5 * rng.normal(size=(NUM_CLASSES,)), jnp.float32)}
  return methods.Problem(apply_fn=apply_fn, init_fn=None, original=original,
                         forget=_dataset(2, forget_size), retain=_dataset(3, retain_size),
                         num_classes=NUM_CLASSES, train={})


SGD = dict(epochs=2, batch_size=8)
# Per method: a base setting and the array hyperparameters the grid varies.
GRIDS = {
    "FT": (SGD, dict(learning_rate=[0.01, 0.1, 0.3], momentum=[0.0, 0.9, 0.5])),
    "GA": (SGD, dict(learning_rate=[0.001, 0.01, 0.03], weight_decay=[0.0, 5e-4, 0.1])),
    "RL": (SGD, dict(learning_rate=[0.01, 0.05, 0.1], momentum=[0.9, 0.0, 0.5])),
    "l1-sparse": (SGD, dict(learning_rate=[0.01, 0.05, 0.1], alpha=[0.0, 1e-3, 1e-2])),
    "SalUn": (SGD, dict(learning_rate=[0.01, 0.05, 0.1], weight_decay=[5e-4, 0.0, 0.1])),
    "SCRUB": (dict(SGD, epochs=3, msteps=2),
              dict(learning_rate=[0.01, 0.05, 0.1], temperature=[4.0, 1.0, 2.0],
                   gamma=[0.99, 0.5, 1.0], alpha=[0.001, 0.5, 0.1])),
    "IEU": (dict(SGD, retain_scale=1.0),
            dict(learning_rate=[0.01, 0.05, 0.02], weight_decay=[0.0, 0.1, 1.0],
                 noise_std=[0.0, 1e-3, 1e-2], retain_scale=[1.0, 0.5, 2.0])),
}


def _grid(name):
  fixed, varied = GRIDS[name]
  size = len(next(iter(varied.values())))
  return [methods.hparams(name, dict(fixed, **{k: v[i] for k, v in varied.items()}))
          for i in range(size)]


def _close(a, b, **tol):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tol)


@pytest.mark.parametrize("name, layout", [(n, "vmap") for n in sorted(GRIDS)]
                         + [("IEU", "map"), ("SCRUB", "map")])
def test_every_setting_of_a_sweep_is_its_single_run(name, layout):
  problem, key = _problem(), jax.random.key(7)
  grid = _grid(name)
  result = ieu_jax.sweep(name, problem, grid, key, layout=layout)
  assert result.programs == 1 and not result.diverged.any()
  singles = [methods.get(name).unlearn(problem, hp, key, name=name) for hp in grid]
  for g, single in enumerate(singles):
    _close(_program.unstack(result.variables, g), single, rtol=2e-5, atol=2e-6)
  # The settings really differ (a sweep that ran one setting G times would pass above
  # only if every single run were the same).
  assert not np.allclose(singles[0]["w"], singles[1]["w"])


def test_a_sweep_of_the_small_cnn_matches_its_single_runs_in_both_layouts():
  init_fn, apply_fn = builders.small_cnn()
  rng = np.random.default_rng(0)
  ds = lambda n, s: data_lib.Dataset(
      jnp.asarray(np.random.default_rng(s).normal(size=(n, 28, 28, 1)), jnp.float32),
      jnp.asarray(np.random.default_rng(s).integers(0, 10, n), jnp.int32), 10)
  problem = methods.Problem(apply_fn=apply_fn, init_fn=init_fn, original=init_fn(jax.random.key(0)),
                            forget=ds(16, 1), retain=ds(32, 2), num_classes=10, train={})
  del rng
  grid = [methods.hparams("IEU", dict(epochs=1, batch_size=8, retain_scale=1.0, learning_rate=lr,
                                      weight_decay=wd, noise_std=1e-3))
          for lr, wd in ((0.01, 0.0), (0.05, 0.1))]
  key = jax.random.key(3)
  singles = [methods.get("IEU").unlearn(problem, hp, key) for hp in grid]
  for layout in ("map", "vmap"):
    result = ieu_jax.sweep("IEU", problem, grid, key, layout=layout)
    for g in range(2):
      _close(_program.unstack(result.variables, g), singles[g], rtol=1e-4, atol=1e-5)


def test_chunks_change_no_number():
  problem, key = _problem(), jax.random.key(1)
  grid = _grid("SCRUB")
  whole = ieu_jax.sweep("SCRUB", problem, grid, key, layout="map")
  chunked = ieu_jax.sweep("SCRUB", problem, grid, key, layout="map", chunk=2)
  assert chunked.programs == 2
  for a, b in zip(jax.tree.leaves(whole.variables), jax.tree.leaves(chunked.variables)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_static_hyperparameters_split_the_grid_into_programs_in_order():
  problem, key = _problem(), jax.random.key(2)
  grid = [methods.hparams("IEU", dict(SGD, learning_rate=0.01, retain_scale=r, batch_size=b))
          for r, b in ((1.0, 8), (0.0, 8), (1.0, 4), (2.0, 8))]
  result = ieu_jax.sweep("IEU", problem, grid, key)
  assert result.programs == 3  # (retain, 8), (no retain, 8), (retain, 4)
  for g, hp in enumerate(grid):
    _close(_program.unstack(result.variables, g), methods.get("IEU").unlearn(problem, hp, key),
           rtol=2e-5, atol=2e-6)


def test_a_diverging_setting_is_flagged_and_the_others_go_on():
  problem, key = _problem(), jax.random.key(4)
  grid = [methods.hparams("GA", dict(SGD, learning_rate=lr)) for lr in (0.01, 1e30, 0.02)]
  result = ieu_jax.sweep("GA", problem, grid, key)
  np.testing.assert_array_equal(result.diverged, [False, True, False])
  with pytest.raises(ieu_jax.NonFiniteError, match="GA"):
    methods.get("GA").unlearn(problem, grid[1], key, name="GA")
  for g in (0, 2):
    _close(_program.unstack(result.variables, g), methods.get("GA").unlearn(problem, grid[g], key),
           rtol=2e-5, atol=2e-6)


def _step_counts(name, problem, hp, key):
  prog = methods.get(name).program(problem, hp, name)
  counts = {}
  for seg, batches in _program._passes(prog, key, hp.steps):
    counts[seg.kind] = counts.get(seg.kind, 0) + int(batches.shape[0])
  return counts


@pytest.mark.parametrize("forget_size", [8, 40])
def test_a_step_budget_is_the_same_whatever_the_forget_set(forget_size):
  problem, key = _problem(forget_size=forget_size, retain_size=120 - forget_size), jax.random.key(0)
  for name, fixed in (("GA", SGD), ("RL", SGD), ("SCRUB", dict(SGD, msteps=1)),
                      ("FT", SGD), ("l1-sparse", dict(SGD, alpha=1e-3))):
    hp = methods.hparams(name, dict(fixed, learning_rate=0.01, steps=23))
    assert sum(_step_counts(name, problem, hp, key).values()) == 23, name
  # With epochs, the length follows the forget set: GA's steps are epochs x batches.
  hp = methods.hparams("GA", dict(SGD, learning_rate=0.01))
  assert _step_counts("GA", problem, hp, key) == {"ascent": 2 * -(-forget_size // 8)}
  # RL's passes keep their order: a forget pass, then the retain pass, cut at the budget.
  hp = methods.hparams("RL", dict(SGD, learning_rate=0.01, steps=3))
  assert _step_counts("RL", problem, hp, key) == (
      {"forget": 1, "retain": 2} if forget_size == 8 else {"forget": 3})


def test_steps_equal_to_whole_epochs_reproduce_the_epochs_and_a_prefix_is_a_prefix():
  problem, key = _problem(), jax.random.key(5)
  per_epoch = -(-72 // 8)  # FT runs over the 72 retain examples
  by_epochs = methods.hparams("FT", dict(SGD, learning_rate=0.05))
  by_steps = by_epochs.replace(steps=2 * per_epoch, epochs=1)
  _close(methods.get("FT").unlearn(problem, by_epochs, key),
         methods.get("FT").unlearn(problem, by_steps, key), rtol=0, atol=0)
  # A budget that ends inside an epoch runs exactly that many steps: plain SGD with
  # no momentum or decay on a linear model, recomputed in float64.
  hp = methods.hparams("FT", dict(SGD, learning_rate=0.05, momentum=0.0, weight_decay=0.0,
                                  steps=per_epoch + 3))
  got = methods.get("FT").unlearn(problem, hp, key)
  w = {k: np.asarray(v, np.float64) for k, v in problem.original.items()}
  x, y = np.asarray(problem.retain.x, np.float64), np.asarray(problem.retain.y)
  from ieu_jax.training import epoch_indices
  done = 0
  for epoch in range(2):
    ekey = jax.random.fold_in(key, epoch)
    for i, idx in enumerate(np.asarray(epoch_indices(ekey, 72, 8))):
      if done == hp.steps:
        break
      logits = x[idx] @ w["w"] + w["b"]
      p = np.exp(logits - logits.max(1, keepdims=True))
      p /= p.sum(1, keepdims=True)
      p[np.arange(len(idx)), y[idx]] -= 1
      w = {"w": w["w"] - 0.05 * x[idx].T @ p / len(idx), "b": w["b"] - 0.05 * p.mean(0)}
      done += 1
  assert done == hp.steps
  _close(got, w, rtol=1e-5, atol=1e-6)


def test_bad_sweeps_are_refused_by_name():
  problem, key = _problem(), jax.random.key(0)
  with pytest.raises(ValueError, match="grid is empty"):
    ieu_jax.sweep("FT", problem, [], key)
  with pytest.raises(ValueError, match="Retrain: the method has no program"):
    ieu_jax.sweep("Retrain", problem, [{}], key)
  with pytest.raises(ValueError, match="layout='grouped'"):
    ieu_jax.sweep("FT", problem, _grid("FT"), key, layout="grouped")
  with pytest.raises(ValueError, match="chunk=0"):
    ieu_jax.sweep("FT", problem, _grid("FT"), key, chunk=0)
  with pytest.raises(ValueError, match="FT: steps=0 must be a positive integer"):
    ieu_jax.sweep("FT", problem, [dict(SGD, learning_rate=0.1, steps=0)], key)
  with pytest.raises(ValueError, match="unknown method"):
    ieu_jax.sweep("Nope", problem, [{}], key)
  prog = base.run_program  # the single path checks the array names too
  del prog
  with pytest.raises(ValueError, match=r"missing \['momentum'\]"):
    _program.run(methods.get("FT").program(problem, _grid("FT")[0]), problem.original,
                 {"learning_rate": 0.1, "weight_decay": 0.0}, key)


def test_a_batchnorm_sweep_carries_each_settings_statistics():
  init_fn, apply_fn = models.build_model("cnn", 10, (28, 28, 1), features=(4, 8), hidden=16,
                                         norm="batch")
  ds = lambda n, s: data_lib.Dataset(
      jnp.asarray(np.random.default_rng(s).normal(size=(n, 28, 28, 1)), jnp.float32),
      jnp.asarray(np.random.default_rng(s).integers(0, 10, n), jnp.int32), 10)
  original = init_fn(jax.random.key(0))
  problem = methods.Problem(apply_fn=apply_fn, init_fn=init_fn, original=original,
                            forget=ds(16, 1), retain=ds(32, 2), num_classes=10, train={})
  grid = [methods.hparams("FT", dict(epochs=1, batch_size=8, learning_rate=lr)) for lr in (0.01, 0.1)]
  key = jax.random.key(3)
  result = ieu_jax.sweep("FT", problem, grid, key)
  for g, hp in enumerate(grid):
    single = methods.get("FT").unlearn(problem, hp, key)
    got = _program.unstack(result.variables, g)
    assert isinstance(got, ieu_jax.Variables)
    _close(got, single, rtol=1e-4, atol=1e-5)  # params and running statistics alike
  # Train mode moved the statistics away from the original's, differently per setting.
  stats = lambda v: jax.tree.leaves(v.state)
  assert not np.allclose(stats(_program.unstack(result.variables, 0))[0], stats(original)[0])
  assert not np.allclose(stats(_program.unstack(result.variables, 0))[0],
                         stats(_program.unstack(result.variables, 1))[0])


@pytest.mark.parametrize("name, runs", [("RL", 1), ("l1-sparse", 2)])
def test_budgets_share_one_run_where_the_segments_do_not_depend_on_them(name, runs):
  problem, key = _problem(), jax.random.key(6)
  fixed, varied = GRIDS[name]
  lrs = varied["learning_rate"][:2]
  grid = [methods.hparams(name, dict(fixed, learning_rate=lr, steps=b, **(
      {"alpha": 1e-2} if name == "l1-sparse" else {}))) for b in (7, 19) for lr in lrs]
  result = ieu_jax.sweep(name, problem, grid, key)
  assert result.programs == runs  # l1-sparse's penalty decays over the budget's epochs
  for g, hp in enumerate(grid):
    _close(_program.unstack(result.variables, g), methods.get(name).unlearn(problem, hp, key),
           rtol=2e-5, atol=2e-6)
  with pytest.raises(ValueError, match="keep="):
    prog = methods.get("l1-sparse").program(problem, methods.hparams(
        "l1-sparse", dict(SGD, learning_rate=0.1, alpha=0.1, steps=9)))
    _program.run_stacked(prog, problem.original, [{"learning_rate": 0.1, "momentum": 0.9,
                                                   "weight_decay": 0.0, "alpha": 0.1}],
                         key, budget=9, keep=[3])
