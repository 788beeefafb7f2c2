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


# ----------------------------------------------------------------------------- matched utility

def _hand_frontier():
  """Two seeds of random10 (values chosen so every verdict is known by hand), one of
  random30 where IEU beats every baseline, one of class0 with FT only."""
  r10 = {
      0: {"IEU": [_at(2.0, 0.5, 1.5), _at(1.0, 2.0, 2.0), _at(0.5, 4.0), _diverged()],
          "FT": [_at(5.0, 0.2, 1.0), _at(3.0, 2.9, 1.2)],
          "RL": [_at(1.9, 0.9, 1.45)],
          "SCRUB": [_at(0.5, 0.1, 3.0)],
          "SalUn": [_at(1.0, 5.0, 2.0), _diverged()]},
      1: {"IEU": [_at(2.2, 0.8, 1.3), _at(1.2, 2.5), _at(0.1, 3.5, 9.0)],
          "FT": [_at(5.4, 0.0, 1.1), _at(3.2, 2.0)],
          "RL": [_at(2.1, 0.5, 1.35)],
          "SCRUB": [_at(0.7, 0.3, 3.2)],
          "SalUn": [_at(1.0, 0.5, 1.0)]},
  }
  runs = [_run("random10", seed, m) for seed, m in r10.items()][::-1]  # seed order restored
  runs.append(_run("random30", 0, {n: [_at(2.0, 0.5, 1.0)] for n in frontier.BASELINES}
                   | {"IEU": [_at(1.0, 0.5, 2.0)]}))
  runs.append(_run("class0", 0, {"IEU": [_at(1.0, 0.5, 2.0)], "FT": [_at(2.0, 0.5, 1.0)]}))
  return {"runs": runs, "config": {}, "grid": {}, "wall_time_s": 1.0}


def test_matched_utility_by_hand():
  m = frontier.matched_utility(_hand_frontier(), bounds=(1.0, 3.0))
  assert list(m) == ["random10", "random30", "class0"]
  b1, b3 = m["random10"][1.0], m["random10"][3.0]
  assert b1["seeds"] == [0, 1]
  ieu1, ieu3 = b1["methods"]["IEU"], b3["methods"]["IEU"]
  assert ieu1["gap"] == pytest.approx([2.0, 2.2]) and ieu1["rcd"] == pytest.approx([1.5, 1.3])
  assert (ieu1["gap_mean"], ieu1["gap_std"]) == pytest.approx((2.1, 0.1))
  assert (ieu1["rcd_mean"], ieu1["rcd_std"]) == pytest.approx((1.4, 0.1))
  # Bound 3: seed 1's best gap (1.2) has no RCD; its best RCD is the 1.3 setting's, and
  # the 9.0 setting (loss 3.5) is out of bounds.
  assert ieu3["gap"] == pytest.approx([1.0, 1.2]) and ieu3["rcd"] == pytest.approx([2.0, 1.3])
  assert (ieu3["rcd_mean"], ieu3["rcd_std"]) == pytest.approx((1.65, 0.35))
  ft3 = b3["methods"]["FT"]
  assert ft3["gap"] == pytest.approx([3.0, 3.2]) and ft3["rcd"] == pytest.approx([1.2, 1.1])
  # SalUn has nothing within either bound on seed 0: counted, and no mean.
  for b in (b1, b3):
    salun = b["methods"]["SalUn"]
    assert salun["gap"][0] is None and salun["seeds_without"] == 1 and salun["seeds_with"] == 1
    assert salun["gap_mean"] is None and salun["rcd_mean"] is None
    assert salun["rcd_seeds_without"] == 1
  assert b1["methods"]["SalUn"]["gap"][1] == pytest.approx(1.0)

  def verdicts(b, claim):
    return {k: v["verdict"] for k, v in b["claims"][claim]["versus"].items()}

  assert verdicts(b1, "1_smaller_gap") == {"FT": "supported", "RL": "within seed spread",
                                          "SCRUB": "not supported", "SalUn": "n/a"}
  assert verdicts(b1, "2_higher_worst_case_rcd") == {
      "FT": "supported", "RL": "within seed spread", "SCRUB": "not supported", "SalUn": "n/a"}
  assert verdicts(b3, "1_smaller_gap")["RL"] == "supported"  # 1.1 vs 2.0, spread 0.2
  assert verdicts(b3, "2_higher_worst_case_rcd")["RL"] == "within seed spread"  # .25 < .4
  v = b3["claims"]["2_higher_worst_case_rcd"]["versus"]["FT"]
  assert (v["difference"], v["spread"]) == pytest.approx((0.5, 0.4))
  assert b1["claims"]["1_smaller_gap"]["verdict"] == "not supported"
  assert b1["smallest_gap"] == ["SCRUB"] and b1["highest_worst_case_rcd"] == ["SCRUB"]
  r30 = m["random30"][1.0]
  assert r30["claims"]["1_smaller_gap"]["verdict"] == "supported"
  assert r30["claims"]["2_higher_worst_case_rcd"]["verdict"] == "supported"
  assert r30["smallest_gap"] == ["IEU"] and r30["highest_worst_case_rcd"] == ["IEU"]
  c0 = m["class0"][3.0]
  assert c0["claims"]["1_smaller_gap"]["verdict"] == "n/a"
  assert c0["claims"]["1_smaller_gap"]["versus"]["FT"]["verdict"] == "supported"
  assert c0["claims"]["1_smaller_gap"]["versus"]["RL"] == {"verdict": "n/a", "why": "not run"}


def test_matched_utility_ties_and_overall_order():
  # A tie is within the spread even when the spread is 0; an n/a outranks "within".
  f = {"runs": [_run("s", 0, {"IEU": [_at(1.0, 0.0, 1.0)], "FT": [_at(1.0, 0.0, 1.0)],
                              "RL": [_at(2.0, 0.0, 0.5)], "SCRUB": [_at(2.0, 0.0, 0.5)],
                              "SalUn": [_at(2.0, 0.0, 0.5)]})]}
  b = frontier.matched_utility(f, bounds=(0.0,))["s"][0.0]
  assert b["claims"]["1_smaller_gap"]["versus"]["FT"]["verdict"] == "within seed spread"
  assert b["claims"]["1_smaller_gap"]["verdict"] == "within seed spread"
  assert b["smallest_gap"] == ["IEU", "FT"]
  del f["runs"][0]["methods"]["SalUn"]
  b = frontier.matched_utility(f, bounds=(0.0,))["s"][0.0]
  assert b["claims"]["1_smaller_gap"]["verdict"] == "n/a"
  del f["runs"][0]["methods"]["IEU"]
  b = frontier.matched_utility(f, bounds=(0.0,))["s"][0.0]
  assert b["claims"]["2_higher_worst_case_rcd"]["versus"]["FT"]["why"] == "IEU was not run"


def test_matched_utility_matches_brute_force():
  rng = np.random.default_rng(1)
  runs = []
  for scenario in ("a", "b"):
    for seed in range(3):
      methods = {}
      for name in ("IEU", "FT", "RL"):
        settings = []
        for _ in range(int(rng.integers(1, 6))):
          s = _setting(*rng.uniform([0, 90, 85, 10], [20, 100, 95, 30]),
                       rcd=float(rng.uniform(0, 3)) if rng.random() < 0.6 else None,
                       diverged=bool(rng.random() < 0.15))
          settings.append(s)
        methods[name] = settings
      runs.append(_run(scenario, seed, methods))
  bounds = (1.0, 3.0, 8.0)
  m = frontier.matched_utility({"runs": runs}, bounds)
  for scenario in ("a", "b"):
    for bound in bounds:
      for name in ("IEU", "FT", "RL"):
        gaps, rcds = [], []
        for run in runs:
          if run["scenario"] != scenario:
            continue
          best_gap, best_rcd = math.inf, -math.inf
          for s in run["methods"][name]:
            if s["diverged"]:
              continue
            loss = max(0, RETRAIN["RA"] - s["RA"]) + max(0, RETRAIN["TA"] - s["TA"])
            if loss > bound:
              continue
            best_gap = min(best_gap, abs(s["UA"] - RETRAIN["UA"]) + abs(s["MIA"] - RETRAIN["MIA"]))
            if s["rcd"] is not None:
              best_rcd = max(best_rcd, s["rcd"]["worst_case_normalized"])
          gaps.append(best_gap if best_gap < math.inf else None)
          rcds.append(best_rcd if best_rcd > -math.inf else None)
        got = m[scenario][bound]["methods"][name]
        assert got["gap"] == pytest.approx(gaps) and got["rcd"] == pytest.approx(rcds)
        assert got["seeds_without"] == gaps.count(None)
        if None in gaps:
          assert got["gap_mean"] is None
        else:
          assert got["gap_mean"] == pytest.approx(np.mean(gaps))
          assert got["gap_std"] == pytest.approx(np.std(gaps))


def test_matched_utility_names_bad_bounds():
  for bad in ((), (-1.0,), (math.nan,), ("1",)):
    with pytest.raises(ValueError, match="bound"):
      frontier.matched_utility(_hand_frontier(), bounds=bad)
