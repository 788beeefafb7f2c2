"""End to end: the experiment binary's library function on the small config."""

import json
import math
import os

import pytest

from experiments.configs import fashion_mnist
from ieu_jax import data as data_lib
from ieu_jax import experiment

pytestmark = pytest.mark.skipif(
    not os.path.exists(os.path.join(data_lib.FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz")),
    reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)",
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("fmnist_small"))
  config = fashion_mnist.get_config("small")
  results = experiment.run_experiment(config, workdir)
  return config, workdir, results


@pytest.mark.slow
def test_outputs_and_schema(run):
  _, workdir, results = run
  for name in ("results.json", "results.md", "relearning.png"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0
  on_disk = json.load(open(os.path.join(workdir, "results.json")))
  assert on_disk == results
  assert on_disk["config"]["methods"] == "Retrain,FT,GA-plain,IEU"
  names = [m["name"] for m in on_disk["methods"]]
  assert names == ["Retrain", "FT", "GA-plain", "IEU"]
  for m in on_disk["methods"]:
    for key in ("UA", "RA", "TA", "MIA", "avg_gap"):
      assert 0.0 <= m[key] <= 100.0, (m["name"], key, m[key])
    rcd = m["rcd"]
    assert set(rcd) >= {"steps_mean", "steps_std", "censored_frac", "normalized"}
    assert 0.0 <= rcd["censored_frac"] <= 1.0
    if rcd["censored_frac"] < 1.0:
      assert 0 <= rcd["steps_mean"] <= on_disk["rcd_protocol"]["max_steps"]
    assert m["runtime_s"] >= 0.0
  md = open(os.path.join(workdir, "results.md")).read()
  for name in names:
    assert f"| {name} |" in md
  with open(os.path.join(workdir, "relearning.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_retrain_is_the_reference_and_the_original_memorised(run):
  _, _, results = run
  retrain = results["methods"][0]
  assert retrain["avg_gap"] == 0.0
  assert retrain["rcd"]["normalized"] == 1.0
  original = results["original"]
  # The original model memorised its training set, so forgetting is measurable.
  assert original["train_accuracy"] >= 97.0
  assert results["memorization_gap"] >= 5.0


@pytest.mark.slow
def test_every_row_has_every_attacker_and_the_worst_case_is_their_minimum(run):
  config, workdir, results = run
  attackers = list(config.rcd.attackers)
  assert attackers == ["sgd", "adam", "retain_only"]
  assert list(results["rcd_attackers"]) == attackers
  assert results["rcd_attackers"]["adam"]["optimizer"] == "adam"
  for m in results["methods"]:
    by = m["rcd"]["by_attacker"]
    assert list(by) == attackers, m["name"]
    assert m["rcd"]["steps_mean"] == by["sgd"]["steps_mean"]  # the first attacker's, as before
    finite = [by[a]["normalized"] for a in attackers if by[a]["normalized"] is not None]
    assert m["rcd"]["worst_case_normalized"] == min(finite)
    # Each attacker's normalisation is by Retrain's steps under the same attacker.
    retrain = results["methods"][0]["rcd"]["by_attacker"]
    for a in attackers:
      assert by[a]["normalized"] == pytest.approx(by[a]["steps_mean"] / retrain[a]["steps_mean"])
  for a in attackers:
    assert results["methods"][0]["rcd"]["by_attacker"][a]["normalized"] == 1.0
  md = open(os.path.join(workdir, "results.md")).read()
  assert "| worst RCD norm. | adam steps | retain_only steps |" in md


@pytest.mark.slow
def test_ieu_and_ga_lower_forget_accuracy(run):
  _, _, results = run
  original_forget_acc = 100.0 - results["original"]["UA"]
  by_name = {m["name"]: m for m in results["methods"]}
  for name in ("GA-plain", "IEU"):
    forget_acc = 100.0 - by_name[name]["UA"]
    assert forget_acc < original_forget_acc - 2.0, (name, forget_acc, original_forget_acc)


@pytest.mark.slow
def test_rerun_reuses_checkpoints(run, tmp_path):
  config, workdir, results = run
  config = fashion_mnist.get_config("small")
  config.methods = "Retrain"
  again = experiment.run_experiment(config, workdir)
  assert again["restored_from_checkpoint"] == {"original": True, "retrain": True}
  assert results["restored_from_checkpoint"] == {"original": False, "retrain": False}
  assert again["training_time_s"] == results["training_time_s"]  # recorded, not re-measured
  assert again["original"] == results["original"]
  assert again["methods"][0]["RA"] == results["methods"][0]["RA"]


def test_unknown_method_is_named():
  config = fashion_mnist.get_config("small")
  config.methods = "Retrain,Magic"
  with pytest.raises(ValueError, match="'Magic'"):
    experiment.method_names(config)


def test_rcd_gap():
  assert experiment.rcd_gap(9.0, 9.0) == 0.0
  # Symmetric in over- and under-forgetting: 2x and 0.5x (in T + 1) cost the same.
  assert experiment.rcd_gap(19.0, 9.0) == pytest.approx(experiment.rcd_gap(4.0, 9.0))
  assert experiment.rcd_gap(0.0, 9.0) == pytest.approx(100 * math.log(10))
  assert math.isnan(experiment.rcd_gap(float("nan"), 9.0))


@pytest.mark.slow
def test_the_recovered_criterion_end_to_end(run, tmp_path):
  """``rcd.criterion='recovered'`` on the same models: each order's threshold is halfway
  between the original's and Retrain's accuracy on its held-out forget examples
  (recomputed here from the saved models), disjoint from the attacker's."""
  import shutil  # pylint: disable=g-import-not-at-top

  import numpy as np  # pylint: disable=g-import-not-at-top

  from ieu_jax import _metrics  # pylint: disable=g-import-not-at-top

  _, workdir, first = run
  shutil.copytree(os.path.join(workdir, "checkpoints"), str(tmp_path / "checkpoints"))
  config = fashion_mnist.get_config("small")
  config.methods = "Retrain,GA"
  config.rcd.criterion = "recovered"
  setup = experiment.prepare(config, str(tmp_path))
  fs = setup.forget_split
  for name, attack in setup.attacks.items():
    train, held = attack.draws.train, attack.draws.eval
    if name != "retain_only":
      for t, h in zip(train, held):
        assert not set(t) & set(h)
    assert held.shape[1] == min(config.rcd.heldout_size, len(fs.forget) - train.shape[1])
  draws = setup.attacks["sgd"].draws
  for k, h in enumerate(draws.eval):
    acc = lambda p: _metrics.accuracy(setup.apply_fn, p, fs.forget.x[h], fs.forget.y[h])
    expected = (acc(setup.original) + acc(setup.retrained)) / 2
    assert draws.threshold[k] == pytest.approx(expected, abs=1e-4)
  # retain_only trains on retain examples, each order its own, judged on the forget set.
  retain_only = setup.attacks["retain_only"]
  assert retain_only.relearn_data[0].shape == fs.retain.x.shape
  assert len({tuple(t) for t in retain_only.draws.train}) == config.rcd.num_trajectories
  results = experiment.run_experiment(config, str(tmp_path))
  assert results["rcd_criterion"] == "recovered"
  assert results["rcd_thresholds"] == pytest.approx(np.asarray(draws.threshold).tolist())
  assert results["restored_from_checkpoint"] == {"original": True, "retrain": True}
  for m in results["methods"]:
    assert list(m["rcd"]["by_attacker"]) == ["sgd", "adam", "retain_only"]
  # Under its own criterion Retrain's trajectories differ from the relearned run's.
  assert (results["methods"][0]["rcd"]["by_attacker"]
          != first["methods"][0]["rcd"]["by_attacker"])
  md = open(tmp_path / "results.md").read()
  assert "until recovered (accuracy on forget examples the attacker does not hold" in md


def _tree_equal(a, b):
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  return (jax.tree.structure(a) == jax.tree.structure(b) and len(la) == len(lb)
          and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb)))


@pytest.mark.slow
def test_every_unlearned_model_is_saved_and_restores_to_the_methods_params(run):
  """Each method's checkpoint, keyed like its row, restores (checksum checked) to the
  params the method produces with its key, and evaluates to the row's numbers;
  Retrain's row points at the retrained model, saved once."""
  import jax  # pylint: disable=g-import-not-at-top

  from ieu_jax import checkpoints  # pylint: disable=g-import-not-at-top
  from ieu_jax import methods as methods_lib  # pylint: disable=g-import-not-at-top

  config, workdir, results = run
  by_name = {m["name"]: m for m in results["methods"]}
  retrain = by_name["Retrain"]["checkpoint"]
  assert retrain == experiment.unlearned_checkpoint(config, "Retrain")
  assert retrain.startswith(os.path.join("checkpoints", "retrain-"))
  unlearned = [n for n in by_name if n != "Retrain"]
  assert len(unlearned) == 3
  saved = sorted(os.listdir(os.path.join(workdir, "checkpoints", "unlearned")))
  assert [s for s in saved if not s.endswith(".json")] == sorted(
      os.path.basename(by_name[n]["checkpoint"]) for n in unlearned)
  setup = experiment.prepare(config, workdir)
  like = jax.eval_shape(setup.init_fn, jax.random.key(0))
  for name in unlearned:
    path = os.path.join(workdir, by_name[name]["checkpoint"])
    assert by_name[name]["checkpoint"] == experiment.unlearned_checkpoint(config, name)
    record = json.load(open(path + ".json"))
    assert record["method"] == name and record["hparams"] == by_name[name]["hparams"]
    params = checkpoints.restore_params(path, like, record["checksum"])
    row = setup.evaluate(params)
    for key in ("UA", "RA", "TA", "MIA"):
      assert row[key] == by_name[name][key], (name, key)
    if name == "IEU":  # the method again, with its own key: the very same params
      again, _ = setup.unlearn(name, methods_lib.hparams(name, config.method[name]))
      assert _tree_equal(params, again)


@pytest.mark.slow
def test_relearn_on_a_saved_checkpoint_gives_the_rows_rcd(run):
  """``experiments.relearn`` on a saved unlearned model (against the saved retrained
  one, thresholds from the saved original) reproduces the row's first-attacker RCD:
  the same draws and keys."""
  config, workdir, results = run
  by_name = {m["name"]: m for m in results["methods"]}
  (original,) = [os.path.join(workdir, "checkpoints", d)
                 for d in os.listdir(os.path.join(workdir, "checkpoints"))
                 if d.startswith("original-") and not d.endswith(".json")]
  out = experiment.relearn_checkpoints(
      config, os.path.join(workdir, by_name["IEU"]["checkpoint"]),
      os.path.join(workdir, by_name["Retrain"]["checkpoint"]), original=original)
  first = results["methods"][0]["rcd"]["by_attacker"]
  assert list(first)[0] == "sgd"
  for key in ("steps_mean", "steps_std", "censored_frac"):
    assert out["checkpoint"][key] == by_name["IEU"]["rcd"]["by_attacker"]["sgd"][key], key
    assert out["reference"][key] == by_name["Retrain"]["rcd"]["by_attacker"]["sgd"][key], key
  assert out["normalized"] == by_name["IEU"]["rcd"]["normalized"]


def test_one_original_serves_every_random_and_class_scenario_of_a_seed():
  from ieu_jax import comparison
  base = fashion_mnist.get_config("small")
  key = lambda scenario, what, seed=0: experiment._model_key(
      comparison.scenario_config(base, scenario, seed), what)
  assert key("random10", "original") == key("random50", "original") == key("class0", "original")
  # What the original trains on changes with mislabelled data, and with the seed.
  assert key("mislabel10", "original") != key("random10", "original")
  assert key("random10", "original", seed=1) != key("random10", "original")
  # Retrain trains on the retain set: every forget set has its own.
  assert len({key(s, "retrain") for s in ("random10", "random50", "class0", "mislabel10")}) == 4


def test_a_model_whose_outputs_overflow_is_refused_by_name():
  import jax.numpy as jnp
  import numpy as np
  from ieu_jax import training
  config = fashion_mnist.get_config("small")
  rng = np.random.default_rng(0)
  ds = lambda n: data_lib.Dataset(jnp.asarray(rng.normal(size=(n, 3)), jnp.float32),
                                  jnp.asarray(rng.integers(0, 2, n), jnp.int32), 2)
  idx = np.arange(10)
  splits = data_lib.Splits(train=ds(20), val=ds(10), test=ds(10), train_indices=np.arange(20),
                           val_indices=idx, test_indices=idx)
  fs = data_lib.select_forget(splits.train, mode="random", fraction=0.25, seed=0)
  finite = lambda w, x: x[:, :2] * w
  overflow = lambda w, x: jnp.where(x[:, :1] > 0, jnp.inf, 0.0) * jnp.ones((1, 2)) * w
  row = experiment._evaluate(finite, 1.0, splits, fs, config, holdout="both")
  assert set(row) == {"UA", "RA", "TA", "MIA", "VA", "MIA_val"}
  with pytest.raises(training.NonFiniteError, match="outputs on the forget set are not finite"):
    experiment._evaluate(overflow, 1.0, splits, fs, config)
