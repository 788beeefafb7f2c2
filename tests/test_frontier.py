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
      1: {"IEU": [_at(2.2, 0.8, 1.3), _at(1.2, 2.5), _at(0.1, 3.5, 9.0), _at(3.0, 3.0, 1.0)],
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
  # random10 within 3 points: SCRUB still beats IEU on the gap, whatever SalUn did.
  assert b3["claims"]["1_smaller_gap"]["without"] == []
  c0 = m["class0"][3.0]
  assert c0["claims"]["1_smaller_gap"]["verdict"] == "n/a"
  assert c0["claims"]["1_smaller_gap"]["versus"]["FT"]["verdict"] == "supported"
  assert c0["claims"]["1_smaller_gap"]["versus"]["RL"] == {"verdict": "n/a", "why": "not run"}


def test_a_baseline_that_cannot_keep_its_utility_is_named_not_a_veto():
  # SalUn has no setting within the bound on seed 1: IEU is judged against the other
  # three, and SalUn is named. A baseline not run, or IEU without a value, stays n/a.
  def runs(salun_seed1):
    good = {n: [_at(3.0, 0.5, 1.0)] for n in frontier.BASELINES} | {"IEU": [_at(1.0, 0.5, 2.0)]}
    second = dict(good, SalUn=salun_seed1)
    return {"runs": [_run("s", 0, good), _run("s", 1, second)]}
  m = frontier.matched_utility(runs([_at(0.1, 9.0, 5.0)]), bounds=(1.0,))["s"][1.0]
  claim = m["claims"]["1_smaller_gap"]
  assert claim["versus"]["SalUn"]["verdict"] == "n/a" and claim["versus"]["SalUn"]["unmatched"]
  assert claim["verdict"] == "supported" and claim["without"] == ["SalUn"]
  md = frontier.frontier_markdown(runs([_at(0.1, 9.0, 5.0)]), bounds=(1.0,))
  assert f"| {frontier.CLAIMS['1_smaller_gap']} | supported (without SalUn) |" in md
  # Every baseline unmatched: nothing left to judge by.
  f = runs([])
  for run in f["runs"][1:]:
    for n in frontier.BASELINES:
      run["methods"][n] = [_at(0.1, 9.0, 5.0)]
  assert frontier.matched_utility(f, bounds=(1.0,))["s"][1.0]["claims"]["1_smaller_gap"][
      "verdict"] == "n/a"
  # A baseline that clearly wins still refutes the claim, whoever is unmatched.
  f = runs([_at(0.1, 9.0, 5.0)])
  for run in f["runs"]:
    run["methods"]["FT"] = [_at(0.2, 0.5, 9.0)]
  claim = frontier.matched_utility(f, bounds=(1.0,))["s"][1.0]["claims"]["1_smaller_gap"]
  assert claim["verdict"] == "not supported" and claim["without"] == []
  # SalUn keeps its utility on seed 1 but has no RCD there (not computed): that is no
  # loss of utility, so the RCD claim stays n/a while the gap claim is judged.
  f = runs([_at(0.1, 0.5)])
  m = frontier.matched_utility(f, bounds=(1.0,))["s"][1.0]
  assert m["claims"]["2_higher_worst_case_rcd"]["verdict"] == "n/a"
  assert not m["claims"]["2_higher_worst_case_rcd"]["versus"]["SalUn"].get("unmatched")
  # SalUn's gaps 3.0 and 0.1 (1.55 +- 1.45) against IEU's 1.0 +- 0: within the spread.
  assert m["claims"]["1_smaller_gap"]["verdict"] == "within seed spread"
  assert m["claims"]["1_smaller_gap"]["without"] == []
  # IEU itself without a value on seed 1: n/a.
  f = runs([_at(3.0, 0.5, 1.0)])
  f["runs"][1]["methods"]["IEU"] = [_at(0.1, 9.0, 5.0)]
  claim = frontier.matched_utility(f, bounds=(1.0,))["s"][1.0]["claims"]["1_smaller_gap"]
  assert claim["verdict"] == "n/a" and claim["without"] == []


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


def test_matched_utility_counts_a_seed_that_did_not_run_a_method():
  f = {"runs": [_run("s", 0, {"IEU": [_at(1.0, 0.0, 1.0)], "FT": [_at(2.0, 0.0)]}),
                _run("s", 1, {"IEU": [_at(3.0, 0.0, 2.0)]})]}
  m = frontier.matched_utility(f, bounds=(1.0,))["s"][1.0]
  assert m["methods"]["FT"]["gap"] == [2.0, None] and m["methods"]["FT"]["seeds_without"] == 1
  assert m["methods"]["FT"]["rcd"] == [None, None] and m["methods"]["FT"]["rcd_seeds_with"] == 0
  assert m["methods"]["FT"]["gap_mean"] is None
  assert (m["methods"]["IEU"]["gap_mean"], m["methods"]["IEU"]["gap_std"]) == (2.0, 1.0)
  assert (m["methods"]["IEU"]["rcd_mean"], m["methods"]["IEU"]["rcd_std"]) == (1.5, 0.5)
  v = m["claims"]["1_smaller_gap"]["versus"]["FT"]
  assert v == {"verdict": "n/a", "why": "FT: no value on some seed"}
  assert m["smallest_gap"] == ["IEU"] and m["highest_worst_case_rcd"] == ["IEU"]
  bad = _at(1.0, 0.0)
  bad["rcd"] = {"worst_case_normalized": "high"}
  with pytest.raises(ValueError, match="worst_case_normalized='high'"):
    frontier.matched_utility({"runs": [_run("s", 0, {"IEU": [bad]})]})


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


def test_matched_utility_bound_has_float_slack():
  retrain = dict(RETRAIN, RA=90.2, TA=90.0)
  s = _setting(11.0, 90.1, 87.1, 20.0, rcd=1.0)  # loses 0.1 + 2.9 points, in floats
  assert frontier.utility_loss(s, retrain) > 3.0
  m = frontier.matched_utility({"runs": [_run("s", 0, {"IEU": [s]}, retrain)]},
                               bounds=(3.0, 2.99))
  assert m["s"][3.0]["methods"]["IEU"]["gap"] == pytest.approx([1.0])
  assert m["s"][2.99]["methods"]["IEU"]["gap"] == [None]


# ----------------------------------------------------------------------------- report

def test_frontier_markdown_by_hand():
  md = frontier.frontier_markdown(_hand_frontier())
  claim1, claim2 = frontier.CLAIMS.values()
  b1 = md[md.index("## Verdicts at utility loss <= 1.00"):md.index("## Verdicts at utility loss <= 3.00")]
  assert f"| {claim1} | not supported | supported | n/a |" in b1
  assert f"| {claim2} | not supported | supported | n/a |" in b1
  assert ("random10, claim 1: FT supported (IEU 2.10 vs 5.20, difference -3.10, spread 0.30);"
          " RL within seed spread (IEU 2.10 vs 2.00, difference 0.10, spread 0.20); SCRUB not"
          " supported (IEU 2.10 vs 0.60, difference 1.50, spread 0.20); SalUn n/a (SalUn: no"
          " value on some seed).") in b1
  assert "- random10: smallest mean gap: SCRUB; highest mean worst-case RCD: SCRUB." in b1
  r10 = md[md.index("## random10"):md.index("## random30")]
  t1 = r10[r10.index("### Utility loss <= 1.00"):r10.index("### Utility loss <= 3.00")]
  t3 = r10[r10.index("### Utility loss <= 3.00"):]
  assert "| IEU | 2/2 | 2.10 ± 0.10 | 1.40 ± 0.10 | 2/2 | 3, 3 | 1/4, 0/4 |" in t1
  assert "| SalUn | 1/2 | n/a | n/a | 1/2 | 1, 1 | 1/2, 0/1 |" in t1
  assert "| IEU | 2/2 | 1.10 ± 0.10 | 1.65 ± 0.35 | 2/2 | 3, 3 | 1/4, 0/4 |" in t3
  assert "| FT | 2/2 | 3.10 ± 0.10 | 1.15 ± 0.05 | 2/2 | 2, 2 | 0/2, 0/2 |" in t3
  assert "Seeds 0, 1 (per-seed columns in this order)." in r10
  # Each bound's verdict table has that bound's verdicts: IEU loses within 1 point of
  # utility loss and wins within 3.
  f = {"runs": [_run("s", 0, {n: [_at(2.0, 0.5, 1.0)] for n in frontier.BASELINES}
                     | {"IEU": [_at(5.0, 0.5, 0.5), _at(0.5, 2.5, 3.0)]})]}
  md = frontier.frontier_markdown(f)
  at1 = md[md.index("## Verdicts at utility loss <= 1.00"):md.index("## Verdicts at utility loss <= 3.00")]
  at3 = md[md.index("## Verdicts at utility loss <= 3.00"):md.index("## s\n")]
  assert f"| {claim1} | not supported |" in at1 and f"| {claim2} | not supported |" in at1
  assert f"| {claim1} | supported |" in at3 and f"| {claim2} | supported |" in at3


def test_plot_frontier_draws_the_computed_points(tmp_path, monkeypatch):
  drawn_figures = []
  save = outputs.save_figure

  def spy(fig, path, **kwargs):
    artists = {a.get_gid(): a for ax in fig.axes for a in ax.collections + ax.lines if a.get_gid()}
    drawn_figures.append((len(fig.axes), {
        gid: (np.asarray(a.get_offsets()) if hasattr(a, "get_offsets")
              else np.stack([a.get_xdata(), a.get_ydata()], 1), a)
        for gid, a in artists.items()}))
    return save(fig, path, **kwargs)

  monkeypatch.setattr(outputs, "save_figure", spy)
  f = _hand_frontier()
  path = tmp_path / "frontier_random10.png"
  got = frontier.plot_frontier(f, "random10", str(path), seed=1)
  with open(path, "rb") as fh:
    assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
  assert got["seed"] == 1
  n_axes, artists = drawn_figures[0]
  assert n_axes == 2  # the panel and its colourbar
  assert artists["Retrain"][0].tolist() == [[0.0, 0.0]]
  run = next(r for r in f["runs"] if r["scenario"] == "random10" and r["seed"] == 1)
  for name, settings in run["methods"].items():
    ok = [s for s in settings if not s["diverged"]]
    want = {(round(max(0, RETRAIN["RA"] - s["RA"]) + max(0, RETRAIN["TA"] - s["TA"]), 9),
             round(abs(s["UA"] - RETRAIN["UA"]) + abs(s["MIA"] - RETRAIN["MIA"]), 9),
             None if s["rcd"] is None else s["rcd"]["worst_case_normalized"]) for s in ok}
    points = set()
    if f"{name}:rcd" in artists:
      xy, coll = artists[f"{name}:rcd"]
      points |= {(round(x, 9), round(y, 9), c) for (x, y), c in zip(xy, coll.get_array())}
    if f"{name}:no-rcd" in artists:
      points |= {(round(x, 9), round(y, 9), None) for x, y in artists[f"{name}:no-rcd"][0]}
    assert points == want, name
    # The step curve joins exactly the brute-force Pareto points, by loss.
    coords = [(x, y) for x, y, _ in want]
    flags = _brute_pareto([y for _, y in coords], [x for x, _ in coords])
    pareto = sorted(c for c, p in zip(coords, flags) if p)
    line = artists[f"{name}:pareto"][0]
    assert np.round(line, 9).tolist() == [list(p) for p in pareto], name
  assert "IEU:no-rcd" in artists and "IEU:rcd" in artists  # seed 1: one IEU setting lacks RCD
  assert len(artists["IEU:pareto"][0]) == 3 < len(got["methods"]["IEU"]["loss"])  # one beaten
  with pytest.raises(ValueError, match="no seed 7"):
    frontier.plot_frontier(f, "random10", str(path), seed=7)
  with pytest.raises(ValueError, match="unknown scenario 'random99'"):
    frontier.plot_frontier(f, "random99", str(path))


def test_the_validation_plane_reads_va_and_mia_val():
  retrain = {"UA": 10.0, "RA": 99.0, "TA": 85.0, "MIA": 20.0, "VA": 80.0, "MIA_val": 30.0}
  s = {"UA": 12.0, "RA": 98.0, "TA": 84.0, "MIA": 25.0, "VA": 77.0, "MIA_val": 31.0}
  assert frontier.forgetting_gap(s, retrain, "val") == pytest.approx(2.0 + 1.0)
  assert frontier.utility_loss(s, retrain, "val") == pytest.approx(1.0 + 3.0)
  assert frontier.forgetting_gap(s, retrain) == pytest.approx(2.0 + 5.0)
  assert frontier.utility_loss(s, retrain) == pytest.approx(1.0 + 1.0)
  with pytest.raises(ValueError, match="selection='train'"):
    frontier.forgetting_gap(s, retrain, "train")


def test_the_report_names_the_split_it_reads():
  f = _hand_frontier()
  md = frontier.frontier_markdown(f)
  assert "on the test split" in md and "max(0, TA_Retrain - TA)" in md
  f["selection"] = "val"
  for run in f["runs"]:
    for row in [run["retrain"]] + [x for xs in run["methods"].values() for x in xs]:
      row.update(VA=row["TA"], MIA_val=row["MIA"])
  md = frontier.frontier_markdown(f)
  assert "on the validation split" in md and "max(0, VA_Retrain - VA)" in md
  assert "|MIA_val - MIA_val_Retrain|" in md and "TA_Retrain" not in md


def test_the_plot_names_the_split_it_reads(tmp_path, monkeypatch):
  labels = []
  save = outputs.save_figure

  def spy(fig, path, **kwargs):
    labels.append((fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel()))
    return save(fig, path, **kwargs)

  monkeypatch.setattr(outputs, "save_figure", spy)
  f = _hand_frontier()
  frontier.plot_frontier(f, "random10", str(tmp_path / "t.png"), seed=0)
  f["selection"] = "val"
  for run in f["runs"]:
    for row in [run["retrain"]] + [x for xs in run["methods"].values() for x in xs]:
      row.update(VA=row["TA"], MIA_val=row["MIA"])
  frontier.plot_frontier(f, "random10", str(tmp_path / "v.png"), seed=0)
  assert "RA and TA" in labels[0][0] and "|MIA - MIA_R|" in labels[0][1]
  assert "RA and VA" in labels[1][0] and "|MIA_val - MIA_val_R|" in labels[1][1]
