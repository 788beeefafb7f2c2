"""Generative unlearning: metrics against closed forms, and a tiny end-to-end run.

The end-to-end run is the ``:small`` config shrunk further (8x8 images of four
classes, IEU only, short relearning) in a temporary workdir: the original
generator must produce its classes, and after IEU the forgotten class's rate
must drop while the retained classes' rate does not.
"""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
import scipy.linalg

import ieu_jax
from experiments.configs import ddpm_fashion_mnist
from ieu_jax import data as data_lib
from ieu_jax import generative
from ieu_jax import outputs
from ieu_jax.generative import diffusion


# ----------------------------------------------------------------------------
# Metrics.


def test_frechet_distance_closed_forms():
  rng = np.random.default_rng(0)
  a = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6))
  assert generative.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
  shift = rng.normal(size=6)
  # Equal covariances: the distance is exactly the squared mean difference.
  assert generative.frechet_distance(a, a + shift) == pytest.approx(np.sum(shift**2), rel=1e-6)
  # Scaled copies: tr(S + c^2 S - 2 c S) = (1 - c)^2 tr(S).
  cov = np.cov(a, rowvar=False)
  assert generative.frechet_distance(a, 3.0 * a) == pytest.approx(
      np.sum((2.0 * a.mean(0)) ** 2) + 4.0 * np.trace(cov), rel=1e-6)
  # General case against the textbook formula with the symmetric square root.
  b = rng.normal(size=(400, 6)) * 2.0 + 1.0
  cb = np.cov(b, rowvar=False)
  root = scipy.linalg.sqrtm(cov)
  expected = (np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(cov) + np.trace(cb)
              - 2.0 * np.trace(np.real(scipy.linalg.sqrtm(root @ cb @ root))))
  assert generative.frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)


def test_class_rates():
  labels = np.array([0, 0, 0, 0, 3, 3])
  predicted = np.array([0, 1, 0, 0, 3, 0])
  assert generative.class_rates(predicted, labels, [0, 3]) == {0: 75.0, 3: 50.0}


def test_classifier_features_are_the_penultimate_layer():
  init, logits_fn, features_fn = generative.classifier_fns(10, (8, 8, 1), hidden=12)
  params = init(jax.random.key(0))
  x = jax.random.normal(jax.random.key(1), (5, 8, 8, 1))
  feats = features_fn(params, x)
  assert feats.shape == (5, 12) and float(feats.min()) >= 0.0
  dense = params["Dense_1"]
  np.testing.assert_allclose(feats @ dense["kernel"] + dense["bias"], logits_fn(params, x),
                             rtol=1e-5, atol=1e-5)


def test_warmup_cosine():
  lr = lambda c: float(generative.warmup_cosine(c, 1000, 2.0, 100, floor=0.1))
  assert lr(0) == 0.0 and lr(50) == pytest.approx(1.0) and lr(100) == pytest.approx(2.0)
  assert lr(550) == pytest.approx(0.2 + 1.8 * 0.5) and lr(1000) == pytest.approx(0.2)
  assert lr(5000) == pytest.approx(0.2)


def _toy_problem():
  """A linear "network" on 2-d data: eps = W x_t + E[label]."""
  eps_fn = lambda p, x, t, y: x @ p["w"] + p["e"][y]
  params = {"w": jnp.eye(2) * 0.5, "e": jnp.zeros((4, 2))}
  x = jax.random.normal(jax.random.key(0), (40, 2))
  y = jnp.asarray(np.repeat([0, 1, 2, 2], 10), jnp.int32)
  ds = data_lib.Dataset(x=x, y=y, num_classes=3)
  forget, retain = ds.take(np.arange(10, 20)), ds.take(np.r_[0:10, 20:40])
  return generative.GenProblem(
      eps_fn=eps_fn, schedule=diffusion.linear_schedule(100), original=params, forget=forget,
      retain=retain, forget_class=1, retained_classes=(0, 2), null_label=3, label_drop=0.1)


def test_saliency_mask_keeps_the_top_fraction():
  problem = _toy_problem()
  mask = generative.saliency_mask(problem, jax.random.key(1), 0.25)
  flat = np.concatenate([np.ravel(m) for m in jax.tree.leaves(mask)])
  assert set(np.unique(flat)) <= {0.0, 1.0}
  # 12 weights, but the rows of E for labels never seen have zero gradient.
  grads = jax.grad(problem.forget_loss)(problem.original, problem.forget.x[:256],
                                        problem.forget.y[:256], jax.random.key(1))
  g = np.concatenate([np.abs(np.ravel(v)) for v in jax.tree.leaves(grads)])
  assert np.all(g[flat == 1] >= g[flat == 0].max())
  assert flat.sum() == np.sum(g >= np.quantile(g, 0.75)) and 0 < flat.sum() <= 0.5 * g.size


def _toy_rcd(problem):
  """The relearning task of a toy "generator": its sample is E[label] plus noise."""
  generate = generative.make_generate(
      lambda p, key, y: p["e"][y] + 0.3 * jax.random.normal(key, (y.shape[0], 2)), chunk=8)
  logits_fn = lambda c, x: x @ c  # classifier: (2,) features -> 3 classes
  classifier = jnp.asarray([[1.0, -1.0, 0.0], [0.0, 0.0, 0.5]])
  return generative.relearning_task(problem, generate, logits_fn, num_samples=12), classifier


@pytest.mark.parametrize("formulation", ["sequential", "map_scan"])
def test_generator_rcd_is_the_engine_with_the_documented_keys(formulation):
  """The engine's curves equal a plain Python loop: Adam on the training loss with
  step t of trajectory k keyed fold_in(fold_in(key, k), t + 1); the rate from the
  task's evaluation."""
  problem = _toy_problem()
  (objective, rate), classifier = _toy_rcd(problem)
  noise = jax.random.key_data(jax.random.key(7))
  protocol = ieu_jax.RelearnProtocol(optimizer="adam", learning_rates=0.05, batch_size=4,
                                     max_steps=30, eval_every=5, num_trajectories=2,
                                     stop_when_done=False, formulation=formulation)
  data = (problem.forget.x, problem.forget.y)
  key = jax.random.key(3)
  res = ieu_jax.relearn(problem.original, None, data, protocol, key, objective=objective,
                        evaluation=rate, eval_data=(classifier, noise))
  assert res.stopped_at == 30  # every trajectory runs the whole budget
  tx = optax.adam(0.05)
  for k in range(2):
    tkey = jax.random.fold_in(key, k)
    order = ieu_jax.trajectory_batch_indices(tkey, 10, 30, 4)
    params, state = problem.original, tx.init(problem.original)
    want = [float(rate(params, (classifier, noise))[0])]
    for t in range(30):
      idx = order[t]
      grads = jax.grad(problem.retain_loss)(params, data[0][idx], data[1][idx],
                                            jax.random.fold_in(tkey, t + 1))
      updates, state = tx.update(grads, state, params)
      params = optax.apply_updates(params, updates)
      if (t + 1) % 5 == 0:
        want.append(float(rate(params, (classifier, noise))[0]))
    np.testing.assert_allclose(res.accuracy[k], want, atol=1e-4)
  # The rates move (the test would not notice a wrong key otherwise), and with a
  # reachable threshold the first hit is the first grid point at or above it.
  assert len(set(res.accuracy[0])) > 1
  threshold = float(np.max(res.accuracy))
  reachable = dataclasses.replace(protocol, threshold=threshold, stop_when_done=True)
  hit = ieu_jax.relearn(problem.original, None, data, reachable, key,
                        objective=objective, evaluation=rate, eval_data=(classifier, noise))
  for k in range(2):
    above = np.flatnonzero(res.accuracy[k] >= threshold)
    assert hit.first_hit[k] == (protocol.eval_steps[above[0]] if above.size else -1)


# ----------------------------------------------------------------------------
# End to end.


def _tiny_config():
  config = ddpm_fashion_mnist.get_config("small")
  config.methods = "IEU"
  config.rcd.max_steps = 20
  config.rcd.eval_samples = 16
  config.eval.samples_per_class = 24
  return config


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("generative"))
  return generative.run_generative(_tiny_config(), workdir), workdir


@pytest.mark.slow
def test_tiny_run_forgets_the_class_and_keeps_the_others(tiny_run):
  results, _ = tiny_run
  rows = {m["name"]: m for m in results["models"]}
  original, retrain, ieu = rows["Original"], rows["Retrain"], rows["IEU"]
  assert original["forget_rate"] >= 70.0 and original["retain_rate"] >= 70.0
  assert retrain["forget_rate"] <= 10.0  # never saw the class
  assert ieu["forget_rate"] <= original["forget_rate"] - 50.0
  assert ieu["retain_rate"] >= original["retain_rate"] - 15.0
  assert retrain["rcd"]["normalized"] == 1.0


@pytest.mark.slow
def test_tiny_run_writes_its_outputs(tiny_run):
  results, workdir = tiny_run
  for name in ("results.json", "results.md", "samples.png"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0
  with open(os.path.join(workdir, "results.json")) as f:
    assert json.load(f)["forget_class"] == results["forget_class"] == 1
  assert "| IEU |" in open(os.path.join(workdir, "results.md")).read()


@pytest.mark.slow
def test_search_chooses_the_candidate_closest_to_retrain(tiny_run):
  _, workdir = tiny_run  # its trained models are restored, not retrained
  config = _tiny_config()
  config.methods = "GA-plain"
  # A negligible learning rate leaves the original as it was: it keeps the class.
  config.search = ml_collections.ConfigDict(
      {"GA-plain": [dict(learning_rate=1e-12, epochs=1), {}]})
  out = generative.search_generative(config, workdir)
  ref, res = out["reference"], out["methods"]["GA-plain"]
  idle, ga = res["candidates"]
  assert idle["forget_rate"] >= 70.0 and ga["forget_rate"] < idle["forget_rate"]
  for c in (idle, ga):
    assert c["gap"] == pytest.approx(0.5 * (abs(c["forget_rate"] - ref["forget_rate"])
                                            + abs(c["retain_rate"] - ref["retain_rate"])))
  best = int(np.argmin([idle["gap"], ga["gap"]]))
  assert res["chosen_index"] == best
  assert res["chosen"] == dict(config.method["GA-plain"].to_dict(), **res["candidates"][best]["override"])
  with open(os.path.join(workdir, "search.json")) as f:
    assert json.load(f)["methods"]["GA-plain"]["chosen_index"] == best
  assert "**(chosen)**" in open(os.path.join(workdir, "search.md")).read()


def test_search_needs_candidates_for_every_method(tmp_path):
  config = _tiny_config()
  config.methods = "GA-plain,IEU"
  config.search = ml_collections.ConfigDict({"GA-plain": [{}]})
  with pytest.raises(ValueError, match=r"no candidates for \['IEU'\]"):
    generative.search_generative(config, str(tmp_path))


def _fake_results(config, rows):
  models = [{"name": name, "forget_rate": f, "retain_rate": r, "fd": fd, "runtime_s": None,
             "flags": flags, "rcd": {"steps_mean": steps, "censored_frac": 0.0,
                                     "normalized": norm,
                                     "worst_case_normalized": norm / 2}}
            for name, f, r, fd, steps, norm, flags in rows]
  return {"config": outputs.json_safe(config.to_dict()), "forget_class": 1, "models": models}


def test_run_seeds_reuses_finished_runs_and_aggregates_them(tmp_path):
  config = _tiny_config()
  per_seed = {
      3: [("Retrain", 0.0, 90.0, 8.0, 30.0, 1.0, []), ("IEU", 2.0, 70.0, 20.0, 20.0, 2 / 3, [])],
      5: [("Retrain", 4.0, 80.0, 6.0, 40.0, 1.0, []), ("IEU", 6.0, 40.0, 30.0, 50.0, 1.25, ["x"])],
  }
  for seed, rows in per_seed.items():
    cell = _tiny_config()
    cell.seed = seed
    os.makedirs(tmp_path / f"seed{seed}")
    with open(tmp_path / f"seed{seed}" / "results.json", "w") as f:
      json.dump(_fake_results(cell, rows), f)
  out = generative.run_seeds(config, str(tmp_path), [3, 5])  # nothing trains: both are reused
  ieu = out["models"]["IEU"]
  assert ieu["n"] == 2 and ieu["flagged"] == 1 and out["models"]["Retrain"]["flagged"] == 0
  for field, values in [("forget_rate", [2.0, 6.0]), ("retain_rate", [70.0, 40.0]),
                        ("fd", [20.0, 30.0]), ("rcd_steps_mean", [20.0, 50.0]),
                        ("rcd_normalized", [2 / 3, 1.25])]:
    assert ieu[field] == pytest.approx([np.mean(values), np.std(values)])
  assert "| IEU | 2 | 4.0 ± 2.0 | 55.0 ± 15.0 |" in (tmp_path / "summary.md").read_text()
  # The worst case over attackers, averaged over seeds like the rest: (1/3 + 0.625) / 2.
  assert ieu["rcd_worst_case_normalized"] == pytest.approx(
      [np.mean([1 / 3, 0.625]), np.std([1 / 3, 0.625])])
  assert "| 0.96 ± 0.29 | 0.48 ± 0.15 |" in (tmp_path / "summary.md").read_text()


def test_run_seeds_rejects_repeated_or_missing_seeds(tmp_path):
  for seeds in ([], [1, 1]):
    with pytest.raises(ValueError, match="each once"):
      generative.run_seeds(_tiny_config(), str(tmp_path), seeds)


# ----------------------------------------------------------------------------
# RCD attackers.


def _finite(x):
  return x is not None and np.isfinite(x)


@pytest.mark.slow
def test_tiny_run_reports_every_attacker(tiny_run):
  """Every row has each attacker's summary, normalised by Retrain's under the same
  attacker; the top level is the first attacker's; the worst case is the smallest."""
  results, workdir = tiny_run
  config = _tiny_config()
  attackers = list(config.rcd.attackers)
  assert attackers == ["adam", "sgd"]
  rows = {m["name"]: m for m in results["models"]}
  for name, m in rows.items():
    r = m["rcd"]
    assert list(r["by_attacker"]) == attackers, name
    first = r["by_attacker"][attackers[0]]
    assert {k: r[k] for k in first} == first, name
    defined = [s["normalized"] for s in r["by_attacker"].values() if _finite(s["normalized"])]
    assert r["worst_case_normalized"] == (min(defined) if defined else None), name
    if name != "Original":
      assert set(m["rcd_curves_by_attacker"]) == set(attackers)
      assert m["rcd_curves"] == m["rcd_curves_by_attacker"][attackers[0]]
  for a, s in rows["Retrain"]["rcd"]["by_attacker"].items():
    # 1 under every attacker, or undefined (None) when Retrain relearns at once.
    assert s["normalized"] == 1.0 if s["steps_mean"] > 0 else s["normalized"] is None, a
  for a, s in rows["Original"]["rcd"]["by_attacker"].items():
    assert s["steps_mean"] == 0.0, a
  # The names are the optimizers, whatever the order; both share everything else.
  protocols = results["rcd_protocols"]
  assert list(protocols) == attackers
  assert protocols["adam"]["optimizer"] == "adam" and protocols["sgd"]["optimizer"] == "sgd"
  assert protocols["adam"]["learning_rates"] == [config.rcd.learning_rates]
  assert protocols["sgd"]["learning_rates"] == [config.rcd.sgd_learning_rate]
  assert protocols["sgd"]["momentum"] == config.rcd.momentum
  shared = lambda p: {k: v for k, v in p.items()
                      if k not in ("optimizer", "learning_rates", "description")}
  assert shared(protocols["adam"]) == shared(protocols["sgd"])
  assert results["rcd_protocol"] == shared(protocols["adam"]) | {
      "optimizer": "adam", "learning_rates": protocols["adam"]["learning_rates"]}
  # results.md: every other attacker's steps, normalised in brackets.
  md = open(os.path.join(workdir, "results.md")).read()
  assert "| worst RCD norm. | sgd steps |" in md
  for name, m in rows.items():
    s = m["rcd"]["by_attacker"]["sgd"]
    assert f"{outputs.fmt_steps(s, 2)} ({outputs.fmt(s['normalized'], 2)})" in md, name


def test_attacker_protocols_adam_is_the_former_protocol_and_sgd_is_sgd():
  config = _tiny_config()
  config.rcd.attackers = ("sgd", "adam")
  protocols = generative.experiment.attacker_protocols(config.rcd, threshold=40.0)
  assert list(protocols) == ["sgd", "adam"]
  # adam: the protocol the generative RCD ran before it had attackers.
  former = ml_collections.ConfigDict(dict(config.rcd.to_dict(), optimizer="adam"))
  assert protocols["adam"] == ieu_jax.pipeline.relearn_protocol(former, 40.0)
  assert protocols["sgd"] == dataclasses.replace(
      protocols["adam"], optimizer="sgd", learning_rates=config.rcd.sgd_learning_rate)


@pytest.mark.parametrize("key,value,match", [
    ("attackers", ("adam", "sgd", "adam"), r"attackers=\('adam', 'sgd', 'adam'\)"),
    ("attackers", ("adam", "retain_only"), r"attackers=\('adam', 'retain_only'\)"),
    ("attackers", (), r"attackers=\(\)"),
    ("optimizer", "sgd", r"optimizer='sgd' is not read"),
    ("sgd_learning_rate", 0.0, r"sgd_learning_rate=0.0"),
])
def test_generative_rcd_config_is_checked(key, value, match):
  config = _tiny_config()
  config.rcd[key] = value
  with pytest.raises(ValueError, match=match):
    generative.experiment.validate_config(config)


def test_original_rcd_is_zero_steps_normalised_where_retrain_relearns_later():
  def summary(steps):
    return {"steps_mean": steps, "steps_std": 0.0, "censored_frac": 0.0,
            "normalized": 1.0 if steps else float("nan"), "median": steps, "lower_bound": False}
  # Retrain relearns at once under adam (the criterion says nothing there), later under sgd.
  retrain = {"by_attacker": {"adam": summary(0.0), "sgd": summary(30.0)}}
  r = generative.experiment._original_rcd(retrain)
  assert list(r["by_attacker"]) == ["adam", "sgd"]
  assert all(s["steps_mean"] == 0.0 for s in r["by_attacker"].values())
  assert np.isnan(r["by_attacker"]["adam"]["normalized"]) and np.isnan(r["normalized"])
  assert r["by_attacker"]["sgd"]["normalized"] == 0.0
  assert r["worst_case_normalized"] == 0.0  # the smallest defined one
  retrain["by_attacker"]["sgd"] = summary(0.0)
  assert np.isnan(generative.experiment._original_rcd(retrain)["worst_case_normalized"])


@pytest.mark.slow
def test_tiny_run_saves_the_unlearned_model_beside_the_trained_ones(tiny_run):
  """Every row points at its model: the trained DDPMs' checkpoints for Original and
  Retrain, and the unlearned one saved under ``checkpoints/unlearned``, which restores
  to the checksum recorded when it was saved."""
  from ieu_jax import checkpoints  # pylint: disable=g-import-not-at-top
  from ieu_jax.generative import experiment as gen_experiment  # pylint: disable=g-import-not-at-top

  results, workdir = tiny_run
  config = _tiny_config()
  rows = {m["name"]: m["checkpoint"] for m in results["models"]}
  assert rows == {n: gen_experiment.model_checkpoint(config, n)
                  for n in ("Original", "Retrain", "IEU")}
  assert rows["IEU"].startswith(os.path.join("checkpoints", "unlearned", "IEU-"))
  for path in rows.values():
    assert checkpoints.exists(os.path.join(workdir, path)), path
  record = json.load(open(os.path.join(workdir, rows["IEU"]) + ".json"))
  assert record["method"] == "IEU"
  assert record["hparams"]["learning_rate"] == config.method.IEU.learning_rate
  s = int(config.data.image_size)
  u_init, _ = generative.unet.build_unet(
      10, (s, s, 1), channels=tuple(config.unet.channels),
      num_res_blocks=int(config.unet.num_res_blocks), emb_dim=int(config.unet.emb_dim))
  like = jax.eval_shape(u_init, jax.random.key(0))
  ieu = checkpoints.restore_params(os.path.join(workdir, rows["IEU"]), like, record["checksum"])
  original = json.load(open(os.path.join(workdir, rows["Original"]) + ".json"))["checksum"]
  assert checkpoints.checksum(ieu) != original  # the unlearned weights, not the original's
