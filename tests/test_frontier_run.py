"""experiments.frontier end to end on ``:small``: outputs, Pareto sets, and the numbers
of a swept setting against the pipeline's single run of it."""

import itertools
import json
import math
import os

import numpy as np
import pytest

from experiments.configs import fashion_mnist
from ieu_jax import comparison
from ieu_jax import experiment
from ieu_jax import frontier as frontier_lib
from ieu_jax import frontier_run
from ieu_jax import methods

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("frontier"))
  config = fashion_mnist.get_config("small")
  out = frontier_run.run(config, workdir, command="test")
  return config, workdir, out


def test_writes_its_three_outputs(small):
  config, workdir, out = small
  assert os.path.exists(os.path.join(workdir, "frontier.md"))
  for scenario in config.frontier.scenarios:
    assert os.path.getsize(os.path.join(workdir, f"frontier_{scenario}.png")) > 0
  with open(os.path.join(workdir, "frontier.json")) as f:
    saved = json.load(f)
  assert saved["selection"] == "val"
  assert [(r["scenario"], r["seed"]) for r in saved["runs"]] == [("random10", 0), ("class0", 0)]
  names = config.frontier.methods.split(",")
  for run in saved["runs"]:
    assert set(run["retrain"]) >= {"UA", "RA", "TA", "MIA", "VA", "MIA_val"}
    assert list(run["methods"]) == names
    counts = {len(s) for s in run["methods"].values()}
    assert counts == {len(config.frontier.budgets) * 2}  # 2 values per method's grid
    for name, settings in run["methods"].items():
      assert sorted({s["steps"] for s in settings}) == sorted(config.frontier.budgets)
      for s in settings:
        assert s["hparams"]["steps"] == s["steps"]
        if not s["diverged"]:
          assert all(0 <= s[k] <= 100 for k in ("UA", "RA", "TA", "MIA", "VA", "MIA_val"))


def _brute_force_pareto(points):
  """Index i is Pareto iff no j is <= on both coordinates and < on one (NaN: never)."""
  out = []
  for i, p in enumerate(points):
    if any(math.isnan(v) for v in p):
      out.append(False)
      continue
    beaten = any(all(a <= b for a, b in zip(q, p)) and any(a < b for a, b in zip(q, p))
                 for j, q in enumerate(points) if j != i and not any(math.isnan(v) for v in q))
    out.append(not beaten)
  return out


def test_pareto_sets_and_rcd_match_a_brute_force_recomputation(small):
  _, workdir, _ = small
  with open(os.path.join(workdir, "frontier.json")) as f:
    saved = json.load(f)
  checked = 0
  for run in saved["runs"]:
    r = run["retrain"]
    for name, settings in run["methods"].items():
      points = []
      for s in settings:
        if s["diverged"]:
          points.append((math.nan, math.nan))
          continue
        # In the validation plane: VA and MIA_val stand for TA and MIA.
        gap = abs(s["UA"] - r["UA"]) + abs(s["MIA_val"] - r["MIA_val"])
        loss = max(0.0, r["RA"] - s["RA"]) + max(0.0, r["VA"] - s["VA"])
        points.append((gap, loss))
        assert s["forgetting_gap"] == pytest.approx(gap) and s["utility_loss"] == pytest.approx(loss)
      want = _brute_force_pareto(points)
      assert [s["pareto"] for s in settings] == want, (run["scenario"], name)
      # config.frontier.rcd = 'pareto': RCD exactly for the Pareto settings within the
      # utility bound.
      bound = saved["config"]["frontier"]["rcd_max_loss"]
      assert [s["rcd"] is not None for s in settings] == [
          w and p[1] <= bound for w, p in zip(want, points)], (run["scenario"], name)
      checked += 1
  assert checked == 12


def test_a_swept_setting_has_the_numbers_of_the_pipelines_single_run(small):
  config, workdir, out = small
  run = out["runs"][0]
  cell = comparison.scenario_config(config, run["scenario"], run["seed"])
  setup = experiment.prepare(cell, os.path.join(workdir, run["scenario"], f"seed{run['seed']}"))
  assert setup.restored == {"original": True, "retrain": True}
  for name in ("IEU", "SCRUB"):
    swept = run["methods"][name][-1]  # the longest budget, the last grid value
    params, _ = setup.unlearn(name, swept["hparams"])
    single = setup.evaluate(params, holdout="both")
    # Accuracies count examples: the vmapped step may round differently, so allow
    # one example of the smallest set to flip.
    step = 100.0 / min(run["sizes"]["forget"], run["sizes"]["val"])
    for k in ("UA", "RA", "TA", "VA", "MIA", "MIA_val"):
      assert single[k] == pytest.approx(swept[k], abs=step + 1e-6), (name, k)


def test_a_rerun_recomputes_only_what_is_missing(small):
  config, workdir, out = small
  cell_dir = os.path.join(workdir, "random10", "seed0", "frontier")
  files = sorted(os.listdir(cell_dir))
  assert len(files) == len(config.frontier.methods.split(","))
  stamps = {f: os.path.getmtime(os.path.join(cell_dir, f)) for f in files}
  gone = next(f for f in files if f.startswith("GA-"))
  os.remove(os.path.join(cell_dir, gone))
  again = frontier_run.run(config, workdir, scenarios=["random10"], command="test")
  assert sorted(os.listdir(cell_dir)) == files
  for f in files:
    if f != gone:
      assert os.path.getmtime(os.path.join(cell_dir, f)) == stamps[f], f
  assert again["runs"][0]["methods"]["GA"] == out["runs"][0]["methods"]["GA"]


def test_bad_frontiers_are_refused_before_any_work(tmp_path):
  config = fashion_mnist.get_config("small")
  config.frontier.grids.GA = dict(learning_rate=[1e-3])
  with pytest.raises(ValueError, match="as many settings as every other"):
    frontier_run.run(config, str(tmp_path))
  config = fashion_mnist.get_config("small")
  config.frontier.methods = "FT,Retrain"
  with pytest.raises(ValueError, match="Retrain has no program"):
    frontier_run.run(config, str(tmp_path))
  config = fashion_mnist.get_config("small")
  config.frontier.budgets = (10, 0)
  with pytest.raises(ValueError, match=r"budgets=\(10, 0\)"):
    frontier_run.run(config, str(tmp_path))
  config = fashion_mnist.get_config("small")
  config.frontier.grids.FT = dict(learning_rat=[1e-3, 1e-2])
  with pytest.raises(ValueError, match="learning_rat"):
    frontier_run.run(config, str(tmp_path))
  config = fashion_mnist.get_config("small")
  config.frontier.rcd = "some"
  with pytest.raises(ValueError, match="rcd='some'"):
    frontier_run.run(config, str(tmp_path))
  config = fashion_mnist.get_config("small")
  config.frontier.bounds = (1.0, 5.0)
  with pytest.raises(ValueError, match=r"rcd_max_loss=3.0 is below the claims' largest bound"
                                       r" \(config.frontier.bounds=\(1.0, 5.0\)\)"):
    frontier_run.run(config, str(tmp_path))
  config.frontier.bounds = (1.0, -2.0)
  with pytest.raises(ValueError, match="bound -2.0 is not a finite number"):
    frontier_run.run(config, str(tmp_path))
  assert not os.listdir(tmp_path)  # nothing written
