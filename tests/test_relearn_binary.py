"""ieu_jax.experiment.relearn_checkpoints (the experiments.relearn binary): RCD of a checkpoint against a reference, from a config."""

import json

import jax
import numpy as np
import pytest

from ieu_jax import experiment
from experiments.configs import fashion_mnist
from ieu_jax import checkpoints
from ieu_jax import models


def _config():
  c = fashion_mnist.get_config("small")
  c.data.name, c.data.max_train, c.data.max_test = "digits", None, None
  c.model.features, c.model.hidden = (4, 8), 16
  c.rcd.max_steps, c.rcd.num_trajectories, c.rcd.relearn_size = 20, 3, 48
  c.rcd.learning_rates, c.rcd.momentum, c.rcd.tolerance = 0.1, 0.9, 5.0
  c.rcd.guard_drop = None  # random weights: the test is about the normalisation
  return c


@pytest.mark.slow
def test_relearn_checkpoints_normalises_by_the_reference(tmp_path):
  config = _config()
  init_fn, _ = models.build_model("cnn", 10, (8, 8, 1), features=(4, 8), hidden=16)
  paths = {}
  for name, seed in (("a", 0), ("b", 1)):
    paths[name] = str(tmp_path / name)
    checkpoints.save_params(paths[name], init_fn(jax.random.key(seed)))
  with pytest.raises(ValueError, match="--original"):
    experiment.relearn_checkpoints(config, paths["a"], paths["b"])
  out = experiment.relearn_checkpoints(config, paths["a"], paths["b"], threshold=40.0)
  ck, ref = out["checkpoint"], out["reference"]
  assert out["threshold"] == 40.0 and len(ck["first_hit"]) == 3
  assert out["protocol"]["num_trajectories"] == 3
  assert min(ck["first_hit"]) > 0 and ck["censored_frac"] == 0.0  # relearns, not at once
  assert ck["steps_mean"] == pytest.approx(np.mean(ck["first_hit"]))
  hits = [h for h in ref["first_hit"] if h >= 0]
  assert hits and ref["censored_frac"] == pytest.approx(1 - len(hits) / 3)
  # The reference's restricted mean: a censored trajectory counts as the budget.
  budget = out["protocol"]["max_steps"]
  restricted = np.mean([h if h >= 0 else budget for h in ref["first_hit"]])
  assert ref["steps_mean"] == pytest.approx(restricted)
  assert out["normalized"] == pytest.approx(ck["steps_mean"] / restricted)
  # Against itself, a checkpoint's RCD is exactly 1 (same keys, same data orders).
  same = experiment.relearn_checkpoints(config, paths["b"], paths["b"], original=paths["a"])
  assert same["checkpoint"]["first_hit"] == same["reference"]["first_hit"]
  assert same["normalized"] == 1.0
  assert 0.0 < same["threshold"] < 100.0  # from the original's accuracy, minus tolerance
  json.dumps(out)  # serialisable as written by the binary


def test_missing_checkpoint_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="no checkpoint"):
    experiment.relearn_checkpoints(_config(), str(tmp_path / "x"), str(tmp_path / "y"),
                                    threshold=50.0)


def test_a_checkpoint_with_a_record_is_checked_against_its_checksum(tmp_path):
  """A checkpoint the pipeline saved (with ``<path>.json``) whose bytes no longer match
  its recorded checksum is refused by name; one without a record restores as saved."""
  from ieu_jax import pipeline  # pylint: disable=g-import-not-at-top

  init_fn, _ = models.build_model("cnn", 10, (8, 8, 1), features=(4, 8), hidden=16)
  good, other = str(tmp_path / "good"), str(tmp_path / "other")
  pipeline.save_model(good, init_fn(jax.random.key(0)), method="test")
  checkpoints.save_params(other, init_fn(jax.random.key(1)))  # no record
  assert pipeline.recorded_checksum(other) is None
  assert pipeline.recorded_checksum(good) == json.load(open(good + ".json"))["checksum"]
  out = experiment.relearn_checkpoints(_config(), good, other, threshold=40.0)
  assert out["checkpoint"]["path"] == good
  # The record says another checksum: the restore must refuse the checkpoint.
  record = json.load(open(good + ".json"))
  record["checksum"] = "0" * len(record["checksum"])
  json.dump(record, open(good + ".json", "w"))
  with pytest.raises(checkpoints.CorruptCheckpointError, match="good"):
    experiment.relearn_checkpoints(_config(), good, other, threshold=40.0)
