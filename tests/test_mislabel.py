"""The contaminated-data scenario end to end: ``forget.mode='mislabel'``, its success
measure recomputed from the saved models."""

import math
import os

import pytest

from experiments.configs import fashion_mnist
from ieu_jax import _metrics
from ieu_jax import data as data_lib
from ieu_jax import experiment


pytestmark = pytest.mark.skipif(
    not os.path.exists(os.path.join(data_lib.FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz")),
    reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)",
)


def _config():
  """``:small`` (an original that memorises its wrong labels), two methods, short RCD."""
  c = fashion_mnist.get_config("small")
  c.methods = "Retrain,FT"
  c.forget.mode, c.forget.fraction = "mislabel", 0.1
  c.rcd.max_steps, c.rcd.num_trajectories = 8, 2
  return c


@pytest.mark.slow
def test_mislabel_ta_gain_and_corrected_from_the_models(tmp_path):
  config = _config()
  results = experiment.run_experiment(config, str(tmp_path))
  assert results["scenario"] == "mislabel 10%"
  setup = experiment.prepare(config, str(tmp_path))  # restores the same two models
  fs = setup.forget_split
  assert (fs.forget.y != fs.forget_clean.y).all()  # every forget label is wrong
  true_acc = lambda p: _metrics.accuracy(setup.apply_fn, p, fs.forget_clean.x,
                                         fs.forget_clean.y)
  original = results["original"]
  assert original["mislabel"]["ta_gain"] == 0.0
  assert original["mislabel"]["corrected"] == pytest.approx(true_acc(setup.original))
  rows = {m["name"]: m for m in results["methods"]}
  assert rows["Retrain"]["mislabel"]["corrected"] == pytest.approx(true_acc(setup.retrained))
  for m in rows.values():
    assert m["mislabel"]["ta_gain"] == pytest.approx(m["TA"] - original["TA"])
    assert 0.0 <= m["mislabel"]["corrected"] <= 100.0
  # The retrained model never saw the wrong labels: it predicts the true label more often
  # than the original that memorised them.
  assert rows["Retrain"]["mislabel"]["corrected"] > original["mislabel"]["corrected"]
  md = open(tmp_path / "results.md").read()
  assert "| TA gain | corrected |" in md and "Contaminated data" in md
  assert not math.isnan(rows["FT"]["mislabel"]["corrected"])
