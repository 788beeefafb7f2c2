"""experiments.ulira end to end on ``:small``: outputs, chance for Retrain, a rerun restores."""

import json
import os

import numpy as np
import pytest

from experiments.configs import fashion_mnist
from ieu_jax import privacy
from ieu_jax import ulira_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small(tmp_path_factory):
  config = fashion_mnist.get_config("small")
  workdir = str(tmp_path_factory.mktemp("ulira"))
  return config, workdir, ulira_run.run(config, workdir, command="test")


def _rows(out):
  return {m["name"]: m for m in out["methods"]}


def test_writes_its_three_outputs_with_every_row(small):
  config, workdir, out = small
  for name in ("ulira.json", "ulira.md", "ulira.png"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0
  with open(os.path.join(workdir, "ulira.json")) as f:
    saved = json.load(f)
  assert saved["N"] == config.ulira.num_shadows == 16 and saved["population"] == 400
  assert saved["wall_time_s"] > 0
  assert [m["name"] for m in saved["methods"]] == ["Original", "Retrain", "FT", "GA", "IEU",
                                                    "SalUn", "SCRUB"]
  for m in saved["methods"]:
    assert set(m["ulira_accuracy"]) == {"mean", "std"}
    assert 0 <= m["forgetting_quality"] <= 1 and m["challenge_score"] >= 0
    per_target = np.asarray(m["ulira_per_target"], float)
    ok = per_target[np.isfinite(per_target)]
    assert m["ulira_accuracy"]["mean"] == pytest.approx(ok.mean())
    assert m["ulira_accuracy"]["std"] == pytest.approx(ok.std(ddof=1))
  with open(os.path.join(workdir, "ulira.md")) as f:
    md = f.read()
  assert all(f"| {m['name']} " in md for m in saved["methods"])


def test_retrain_sits_at_chance_and_the_original_loses(small):
  _, _, out = small
  rows = _rows(out)
  retrain, original = rows["Retrain"]["ulira_accuracy"], rows["Original"]["ulira_accuracy"]
  assert abs(retrain["mean"] - 50) <= retrain["std"], retrain
  assert original["mean"] > 50 + 2 * original["std"] / np.sqrt(16), original
  assert original["mean"] > retrain["mean"] + retrain["std"]
  # Against itself the Retrain row's ratios are 1: its score is its forgetting quality.
  assert rows["Retrain"]["challenge_score"] == pytest.approx(rows["Retrain"]["forgetting_quality"])
  # Retrain's outputs against themselves: every per-example epsilon is 0, F = 1.
  assert rows["Retrain"]["forgetting_quality"] == 1.0
  assert rows["Original"]["forgetting_quality"] < 1.0


def test_challenge_score_is_f_times_the_accuracy_ratios(small):
  _, _, out = small
  rows = _rows(out)
  ref = rows["Retrain"]
  for m in out["methods"]:
    want = privacy.challenge_score(m["forgetting_quality"], m["RA"], ref["RA"], m["TA"], ref["TA"])
    assert m["challenge_score"] == pytest.approx(want)
    assert m["challenge_score"] == pytest.approx(
        m["forgetting_quality"] * m["RA"] / ref["RA"] * m["TA"] / ref["TA"])


def test_a_rerun_restores_every_copy_and_gives_the_same_numbers(small):
  config, workdir, out = small
  again = ulira_run.run(config, workdir, command="test")
  assert all(m["restored"] for m in again["methods"])
  assert not any(m["restored"] for m in out["methods"])
  for a, b in zip(out["methods"], again["methods"]):
    assert a["ulira_accuracy"] == b["ulira_accuracy"] and a["RA"] == b["RA"]
