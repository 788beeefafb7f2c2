"""The skeleton both pipelines share: the checkpoint cache, names, the attacker, flags."""

import json
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from ieu_jax import experiment
from ieu_jax import pipeline


def _config(**train):
  c = ml_collections.ConfigDict()
  c.seed = 3
  c.data = ml_collections.ConfigDict({"name": "digits"})
  c.train = ml_collections.ConfigDict(dict({"epochs": 1}, **train))
  c.eval = ml_collections.ConfigDict({"batch_size": 100})
  return c


def test_fingerprint_covers_the_named_sections_the_seed_and_the_name():
  c = _config()
  base = pipeline.fingerprint(c, "original", ("data", "train"))
  assert base == pipeline.fingerprint(_config(), "original", ("data", "train"))
  assert base != pipeline.fingerprint(_config(epochs=2), "original", ("data", "train"))
  assert base != pipeline.fingerprint(c, "retrain", ("data", "train"))
  c.eval.batch_size = 7  # not a section the model depends on
  assert base == pipeline.fingerprint(c, "original", ("data", "train"))


def test_cached_train_saves_on_process_zero_only_and_restores_everywhere(tmp_path, monkeypatch):
  calls = []

  def train():
    calls.append(1)
    return {"w": jnp.arange(3.0)}

  like = jax.eval_shape(train)
  calls.clear()
  workdir = str(tmp_path)
  monkeypatch.setattr(jax, "process_index", lambda: 1)
  other = pipeline.cached_train(workdir, "m", "abc", like, train)
  assert not other.restored and calls == [1]
  assert not os.path.exists(tmp_path / "checkpoints")  # process 1 wrote nothing
  monkeypatch.setattr(jax, "process_index", lambda: 0)
  first = pipeline.cached_train(workdir, "m", "abc", like, train)
  assert not first.restored and calls == [1, 1]
  with open(tmp_path / "checkpoints" / "m-abc.json") as f:
    assert json.load(f)["training_time_s"] == pytest.approx(first.seconds)
  for index in (0, 1):  # every process restores
    monkeypatch.setattr(jax, "process_index", lambda i=index: i)
    again = pipeline.cached_train(workdir, "m", "abc", like, train)
    assert again.restored and again.seconds == pytest.approx(first.seconds) and calls == [1, 1]
    np.testing.assert_array_equal(again.params["w"], [0.0, 1.0, 2.0])


def test_classifier_models_are_saved_by_process_zero_only(tmp_path, monkeypatch):
  """The classifier pipeline's cache (once saving on every process) is the skeleton's."""
  init_fn = lambda key: {"w": jnp.zeros((64, 10))}
  apply_fn = lambda p, x: x.reshape(x.shape[0], -1) @ p["w"]
  data = type("D", (), {"x": jnp.zeros((8, 8, 8, 1)), "y": jnp.zeros(8, jnp.int32),
                        "__len__": lambda self: 8})()
  config = _config(optimizer="adam", learning_rate=0.1, batch_size=4)
  config.forget = ml_collections.ConfigDict({"mode": "random"})
  config.model = ml_collections.ConfigDict({"name": "linear"})
  monkeypatch.setattr(jax, "process_index", lambda: 1)
  experiment._train_or_restore(str(tmp_path), config, "original", init_fn, apply_fn, data,
                               jax.random.key(0))
  assert not os.path.exists(tmp_path / "checkpoints")


def test_method_names():
  c = ml_collections.ConfigDict({"methods": "IEU, FT", "method": {"IEU": {}, "FT": {}}})
  assert pipeline.method_names(c, ["FT", "IEU"], always=("Retrain",)) == ["Retrain", "IEU", "FT"]
  c.methods = "IEU,Retrain"
  assert pipeline.method_names(c, ["FT", "IEU"], always=("Retrain",)) == ["Retrain", "IEU"]
  for methods, match in (("IEU,XX", r"unknown method 'XX': known methods are \['FT', 'IEU'\]"),
                         ("IEU,IEU", "names a method twice"), ("GA", "unknown method 'GA'")):
    c.methods = methods
    with pytest.raises(ValueError, match=match):
      pipeline.method_names(c, ["FT", "IEU"])
  c.methods, c.method = "FT", {"IEU": {}}
  with pytest.raises(ValueError, match="'FT' has no hyperparameters"):
    pipeline.method_names(c, ["FT", "IEU"])


def test_attacker_subset_is_the_documented_draw():
  idx = pipeline.attacker_subset(100, 10, seed=4)
  want = np.sort(np.random.default_rng([4, pipeline.ATTACKER_STREAM]).choice(100, 10, replace=False))
  np.testing.assert_array_equal(idx, want)
  assert list(pipeline.attacker_subset(5, 10, seed=4)) == [0, 1, 2, 3, 4]  # capped
  assert not np.array_equal(idx, pipeline.attacker_subset(100, 10, seed=5))


def test_result_flags():
  ref = {"RA": 90.0, "rcd": {"censored_frac": 0.0}}
  row = {"RA": 60.0, "rcd": {"censored_frac": 0.25}}
  assert pipeline.result_flags(row, ref, utility="RA", margin=20, what="retain accuracy") == [
      "retain accuracy far below Retrain's", "censored relearning"]
  assert pipeline.result_flags(ref, ref, utility="RA", margin=20, what="x") == []
  zero = {"RA": 90.0, "rcd": {"censored_frac": 0.0, "steps_mean": 0.0}}
  assert pipeline.result_flags(ref, zero, utility="RA", margin=20, what="x") == [
      "RCD not normalised: Retrain meets the criterion before relearning"]
  assert math.isnan(pipeline.aggregate([{"methods": [{"name": "a", "UA": None, "rcd": {}}]}],
                                       fields=("UA",))["a"]["UA"][0])


def test_batch_caps_are_logged_and_recorded(caplog):
  caps = pipeline.batch_caps({"train.batch_size": (100_000, 990), "rcd.batch_size": (32, 64)})
  assert caps == [{"what": "train.batch_size", "batch_size": 100_000, "examples": 990,
                   "used": 990}]


def test_method_keys_depend_on_the_name_and_index_only():
  root = jax.random.key(0)
  key = lambda *a: jax.random.key_data(pipeline.method_key(root, 3, *a)).tolist()
  assert key("IEU") == key("IEU") != key("GA")
  assert key("IEU", 1) != key("IEU", 0)
  assert key("IEU") != jax.random.key_data(pipeline.method_key(root, 4, "IEU")).tolist()


def test_finished_run_is_the_same_config_whatever_its_strict_checkpoints(tmp_path):
  c = _config()
  c.strict_checkpoints = False
  with open(tmp_path / "results.json", "w") as f:
    json.dump({"config": c.to_dict(), "value": 1}, f)
  assert pipeline.finished_run(str(tmp_path), c)["value"] == 1
  c.strict_checkpoints = True
  assert pipeline.finished_run(str(tmp_path), c)["value"] == 1
  older = _config()  # a run from before the key
  assert pipeline.finished_run(str(tmp_path), older)["value"] == 1
  c.seed = 4
  assert pipeline.finished_run(str(tmp_path), c) is None


def test_finished_run_is_the_same_config_whatever_its_save_unlearned(tmp_path):
  c = _config()
  c.save_unlearned = False
  with open(tmp_path / "results.json", "w") as f:
    json.dump({"config": c.to_dict(), "value": 1}, f)
  c.save_unlearned = True
  assert pipeline.finished_run(str(tmp_path), c)["value"] == 1
  assert pipeline.finished_run(str(tmp_path), _config())["value"] == 1  # from before the key
  c.seed = 4
  assert pipeline.finished_run(str(tmp_path), c) is None


def test_finished_run_survives_keys_that_arrived_at_their_defaults(tmp_path):
  from experiments.configs import fashion_mnist
  before = fashion_mnist.get_config("small").to_dict()
  for section, key in (("data", "normalize"), ("model", "dtype"), ("model", "norm")):
    before[section].pop(key, None)  # a run made before these keys existed
  del before["frontier"]
  with open(tmp_path / "results.json", "w") as f:
    json.dump({"config": before, "value": 1}, f)
  now = fashion_mnist.get_config("small")
  assert pipeline.finished_run(str(tmp_path), now)["value"] == 1
  now.model.dtype, now.data.normalize = "float32", "none"  # the defaults, spelt out
  now.frontier.budgets = (1, 2)  # operational for a run of experiments.unlearn
  assert pipeline.finished_run(str(tmp_path), now)["value"] == 1
  for section, key, value in (("data", "normalize", "per_channel"), ("model", "dtype", "bfloat16"),
                              ("model", "norm", "batch")):
    changed = fashion_mnist.get_config("small")
    changed[section][key] = value
    assert pipeline.finished_run(str(tmp_path), changed) is None, key
