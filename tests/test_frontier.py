"""The frontier analysis: coordinates, Pareto sets, matched utility and the report,
checked against hand-computed examples and brute-force recomputations."""

import itertools
import json
import math

import numpy as np
import pytest

from ieu_jax import frontier
from ieu_jax import outputs

RETRAIN = {"UA": 10.0, "RA": 95.0, "TA": 90.0, "MIA": 20.0}


def _setting(ua, ra, ta, mia, rcd=None, diverged=False):
  return {"hparams": {}, "steps": 10, "diverged": diverged,
          "UA": None if diverged else ua, "RA": None if diverged else ra,
          "TA": None if diverged else ta, "MIA": None if diverged else mia,
          "avg_gap": None if diverged else 0.0,
          "rcd": None if rcd is None else {"worst_case_normalized": rcd, "steps_mean": 5.0,
                                           "censored_frac": 0.0, "by_attacker": {}}}


def _at(gap, loss, rcd=None, diverged=False):
  """A setting at (gap, loss) against RETRAIN: gap through UA, loss through RA."""
  return _setting(RETRAIN["UA"] + gap, RETRAIN["RA"] - loss, RETRAIN["TA"], RETRAIN["MIA"],
                  rcd=rcd, diverged=diverged)


def _diverged():
  return _at(0.0, 0.0, diverged=True)


# ----------------------------------------------------------------------------- coordinates

def test_gap_and_loss_by_hand():
  s = {"UA": 13.0, "RA": 96.0, "TA": 87.5, "MIA": 18.0}
  # |13 - 10| + |18 - 20| = 5; RA above Retrain's costs nothing, TA 2.5 below.
  assert frontier.forgetting_gap(s, RETRAIN) == pytest.approx(5.0)
  assert frontier.utility_loss(s, RETRAIN) == pytest.approx(2.5)
  s2 = {"UA": 7.0, "RA": 94.0, "TA": 91.0, "MIA": 25.0}
  assert frontier.forgetting_gap(s2, RETRAIN) == pytest.approx(3.0 + 5.0)
  assert frontier.utility_loss(s2, RETRAIN) == pytest.approx(1.0)


def test_gap_and_loss_name_bad_metrics():
  with pytest.raises(ValueError, match="MIA=None"):
    frontier.forgetting_gap({"UA": 1.0, "MIA": None}, RETRAIN)
  with pytest.raises(ValueError, match="no 'TA'"):
    frontier.utility_loss({"RA": 1.0}, RETRAIN)
  with pytest.raises(ValueError, match="RA=nan"):
    frontier.utility_loss({"RA": 1.0, "TA": 1.0}, dict(RETRAIN, RA=math.nan))


# ----------------------------------------------------------------------------- Pareto

def _brute_pareto(gaps, losses):
  """Every ordered pair (j, i), one at a time: does j beat i?"""
  n = len(gaps)
  valid = [math.isfinite(g) and math.isfinite(l) for g, l in zip(gaps, losses)]
  beaten = [False] * n
  for j, i in itertools.product(range(n), repeat=2):
    if (j != i and valid[j] and gaps[j] <= gaps[i] and losses[j] <= losses[i]
        and (gaps[j] < gaps[i] or losses[j] < losses[i])):
      beaten[i] = True
  return [valid[i] and not beaten[i] for i in range(n)]


def test_pareto_by_hand():
  gaps = [1.0, 2.0, 2.0, 3.0, 1.0, math.nan, 0.5]
  losses = [3.0, 1.0, 1.0, 0.5, 4.0, 0.0, math.nan]
  # 0: beaten by none (1 is worse in gap); 1, 2: duplicates, both Pareto; 3: lowest
  # loss; 4: beaten by 0 (same gap, more loss); 5, 6: NaN, never Pareto, beat none.
  assert frontier.pareto_flags(gaps, losses).tolist() == [True, True, True, True, False,
                                                          False, False]
  assert frontier.pareto_flags([], []).tolist() == []


def test_pareto_matches_brute_force_on_random_sets():
  rng = np.random.default_rng(0)
  for trial in range(300):
    n = int(rng.integers(1, 12))
    # Few distinct values, so ties in one or both coordinates are common.
    gaps = rng.integers(0, 4, n).astype(float)
    losses = rng.integers(0, 4, n).astype(float)
    if trial % 2:
      gaps[rng.random(n) < 0.2] = math.nan
      losses[rng.random(n) < 0.2] = math.nan
    got = frontier.pareto_flags(gaps, losses)
    assert got.dtype == bool
    assert got.tolist() == _brute_pareto(gaps.tolist(), losses.tolist()), (gaps, losses)


def test_pareto_rejects_mismatched_shapes():
  with pytest.raises(ValueError, match=r"shape \(2,\).*shape \(3,\)"):
    frontier.pareto_flags([1.0, 2.0], [1.0, 2.0, 3.0])


# ----------------------------------------------------------------------------- annotate

def _run(scenario, seed, methods, retrain=RETRAIN):
  return {"scenario": scenario, "seed": seed, "retrain": dict(retrain), "methods": methods}


def test_annotate_by_hand_and_leaves_its_input_alone():
  f = {"runs": [_run("random10", 0, {
      "IEU": [_at(1.0, 2.0), _at(2.0, 1.0), _at(2.0, 2.0), _diverged()],
      "FT": [_at(0.5, 5.0)]})], "config": {"x": 1}}
  before = json.dumps(f)
  a = frontier.annotate(f)
  assert json.dumps(f) == before
  ieu = a["runs"][0]["methods"]["IEU"]
  assert [s["forgetting_gap"] for s in ieu][:3] == pytest.approx([1.0, 2.0, 2.0])
  assert ieu[3]["forgetting_gap"] is None
  assert [s["utility_loss"] for s in ieu][:3] == pytest.approx([2.0, 1.0, 2.0])
  assert ieu[3]["utility_loss"] is None
  # (2, 2) is beaten by both others; FT's single setting is Pareto within FT.
  assert [s["pareto"] for s in ieu] == [True, True, False, False]
  assert a["runs"][0]["methods"]["FT"][0]["pareto"] is True
  assert a["runs"][0]["pareto_size"] == {"IEU": 2, "FT": 1}
  assert a["runs"][0]["diverged_settings"] == {"IEU": 1, "FT": 0}
  assert a["config"] == {"x": 1}


def test_annotate_names_bad_input():
  bad = _at(1.0, 1.0)
  bad["UA"] = None
  with pytest.raises(ValueError, match=r"random10 seed 3 FT\[1\].*UA=None"):
    frontier.annotate({"runs": [_run("random10", 3, {"FT": [_at(1, 1), bad]})]})
  with pytest.raises(ValueError, match="'random10' seed 0 appears twice"):
    frontier.annotate({"runs": [_run("random10", 0, {}), _run("random10", 0, {})]})
  with pytest.raises(ValueError, match="no 'retrain'"):
    frontier.annotate({"runs": [{"scenario": "a", "seed": 0, "methods": {}}]})
  with pytest.raises(ValueError, match="no list 'runs'"):
    frontier.annotate({"grid": {}})
