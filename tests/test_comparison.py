"""The comparison: budget rule, aggregation and claims on known inputs."""

import math

import numpy as np
import pytest

from experiments.configs import fashion_mnist
from ieu_jax import comparison


def test_candidates_respect_the_budget_and_the_method():
  defaults = {"learning_rate": 0.1, "epochs": 5}
  grid = {"learning_rate": [0.01, 0.1], "epochs": [2, 5]}
  c = comparison.candidates(defaults, grid, budget=4)
  assert len(c) == 4 and {"learning_rate": 0.01, "epochs": 2} in c
  assert comparison.candidates(defaults, {}, budget=4) == [defaults]
  with pytest.raises(ValueError, match="over the budget of 3"):
    comparison.candidates(defaults, grid, budget=3)
  with pytest.raises(ValueError, match="momentum"):
    comparison.candidates(defaults, {"momentum": [0.9]}, budget=4)


def test_every_configured_grid_fits_the_budget():
  c = fashion_mnist.get_config("results")
  for name in c.search:
    assert comparison.candidates(c.method[name].to_dict(), c.search[name].to_dict(),
                               int(c.search_budget))


def _run(rows):
  return {"methods": [
      {"name": n, "UA": ua, "RA": 90.0, "TA": 80.0, "MIA": 10.0, "avg_gap": gap,
       "avg_gap_rcd": gap, "relearn_auc": auc, "runtime_s": 1.0,
       "rcd": {"steps_mean": steps, "censored_frac": cens, "normalized": steps / 10,
               "lower_bound": cens > 0}}
      for n, ua, gap, steps, auc, cens in rows]}


def test_aggregate_by_hand():
  runs = [_run([("Retrain", 10, 0, 10, 50, 0.0), ("IEU", 12, 2, 8, 60, 0.0)]),
          _run([("Retrain", 14, 0, 12, 40, 0.0), ("IEU", 16, 4, 100, 90, 1.0)])]
  agg = comparison.aggregate(runs)
  assert agg["Retrain"]["UA"] == (12.0, 2.0)
  assert agg["IEU"]["avg_gap"] == (3.0, 1.0)
  # The censored seed counts, at the budget (100): never dropped; its mean is a bound.
  assert agg["IEU"]["rcd_steps_mean"] == (54.0, 46.0)
  assert agg["IEU"]["rcd_lower_bound"] == 1 and agg["Retrain"]["rcd_lower_bound"] == 0
  assert agg["IEU"]["rcd_censored_frac"] == (0.5, 0.5)
  assert "| >= 54.0 ± 46.0 |" in comparison.scenario_table(agg)
  # The worst case over attackers is averaged like the rest (absent in old files: n/a).
  runs[0]["methods"][1]["rcd"]["worst_case_normalized"] = 0.2
  runs[1]["methods"][1]["rcd"]["worst_case_normalized"] = 0.4
  assert comparison.aggregate(runs)["IEU"]["rcd_worst_case_normalized"] == pytest.approx((0.3, 0.1))
  assert agg["IEU"]["n"] == 2 and agg["IEU"]["failed"] == 0
  # A method that diverged on every seed is a row that says so, and claims skip it.
  runs[0]["failed"] = runs[1]["failed"] = [{"name": "GA", "error": "NaN"}]
  agg = comparison.aggregate(runs)
  assert agg["GA"] == {"n": 0, "failed": 2}
  assert "| GA | 0 (2 diverged) |" in comparison.scenario_table(agg)
  runs[0]["methods"] = runs[1]["methods"] = [m for m in runs[0]["methods"] if m["name"] != "IEU"]
  runs[0]["failed"] = runs[1]["failed"] = [{"name": "IEU", "error": "NaN"}]
  c = comparison.claims(comparison.aggregate(runs))
  assert c["1_lower_avg_gap"] == {"supported": None, "why": "IEU diverged on every seed"}


def test_rank_correlation_and_claims_on_constructed_aggregates():
  # RCD steps and relearning AUC in exactly reversed order: rho = -1.
  rows = [("Retrain", 10, 0, 40, 20, 0), ("FT", 1, 8, 0, 95, 0), ("RL", 5, 6, 5, 80, 0),
          ("SCRUB", 3, 7, 2, 90, 0), ("SalUn", 6, 5, 10, 70, 0), ("IEU", 9, 1, 30, 30, 0),
          ("Noisy", 9, 1.5, 25, 35, 0), ("GA+Noisy", 9, 2.5, 20, 40, 0)]
  agg = comparison.aggregate([_run(rows)])
  rho, p, n = comparison.rank_correlation(agg)
  assert rho == pytest.approx(-1.0) and n == 8 and p < 0.01
  c = comparison.claims(agg)
  assert c["1_lower_avg_gap"]["supported"] and c["2_higher_rcd"]["supported"]
  assert c["3_rcd_tracks_relearning"]["supported"]
  assert c["4_noisy_tradeoff"]["supported"] and c["4_noisy_tradeoff"]["avg_gap_rank"] == 2
  assert c["5_ga_noisy_no_better"]["supported"]
  # Make one baseline beat IEU, and GA+Noisy beat Noisy: the claims must say no.
  rows[3] = ("SCRUB", 3, 0.5, 50, 10, 0)
  rows[7] = ("GA+Noisy", 9, 0.2, 20, 40, 0)
  c = comparison.claims(comparison.aggregate([_run(rows)]))
  assert c["1_lower_avg_gap"]["supported"] is False
  assert c["1_lower_avg_gap"]["versus"]["SCRUB"]["ieu_better"] is False
  assert c["2_higher_rcd"]["supported"] is False
  assert c["5_ga_noisy_no_better"]["supported"] is False
  doc = comparison.results_document({"random10": agg}, command="python -m experiments.compare")
  assert "| IEU | 1 |" in doc and "python -m experiments.compare" in doc
  # The verdicts at a glance: the first scenario supports claim 1, the second does not;
  # a claim neither checks (2b: no worst case in these rows) has no row.
  worse = comparison.aggregate([_run(rows)])
  doc = comparison.results_document({"random10": agg, "random30": worse}, command="x")
  assert ("| IEU has a lower Avg. Gap than FT, RL, SCRUB and SalUn | supported |"
          " **not supported** |") in doc
  assert "| GA+Noisy does not improve on Noisy | supported | **not supported** |" in doc
  assert "worst-case normalised RCD (over the attackers) than those baselines |" not in doc


def test_scenario_config():
  c = comparison.scenario_config(fashion_mnist.get_config("small"), "class0", 2)
  assert c.seed == 2 and c.forget.mode == "class" and c.forget.forget_class == 0
  with pytest.raises(ValueError, match="'random99'"):
    comparison.scenario_config(c, "random99", 0)
  assert math.isnan(comparison.rank_correlation({})[0])
  assert np.isfinite(comparison.scenario_config(c, "random30", 1).forget.fraction)


def test_censored_methods_are_never_ranked_faster():
  """Claims 2 and 3 by hand with censoring (budget T = 100).

  IEU: every trajectory censored on both seeds (restricted mean 100, the slowest
  possible); FT relearns at 5, RL at 20 with a quarter censored (restricted mean
  0.75 * 20 + 0.25 * 100 = 35). IEU must beat both on RCD; the rank correlation
  keeps IEU in (it used to be dropped as undefined).
  """
  rows = [("Retrain", 10, 0, 40, 60, 0.0), ("FT", 1, 8, 5, 95, 0.0),
          ("RL", 5, 6, 35, 70, 0.25), ("IEU", 9, 1, 100, 10, 1.0)]
  agg = comparison.aggregate([_run(rows), _run(rows)])
  c = comparison.claims(agg)["2_higher_rcd"]
  assert c["supported"] is True
  assert c["versus"]["FT"] == {"baseline": 5.0, "ieu": 100.0, "ieu_better": True, "clear": True}
  assert c["versus"]["RL"]["baseline"] == 35.0 and c["versus"]["RL"]["ieu_better"]
  rho, _, n = comparison.rank_correlation(agg)
  assert n == 4 and rho == pytest.approx(-1.0)  # steps 5 < 35 < 40 < 100, AUC reversed
  # The other way round: a baseline censored everywhere beats a partly censored IEU.
  rows[2] = ("RL", 5, 6, 100, 70, 1.0)
  rows[3] = ("IEU", 9, 1, 60, 30, 0.5)
  c = comparison.claims(comparison.aggregate([_run(rows)]))["2_higher_rcd"]
  assert c["supported"] is False and c["versus"]["RL"]["ieu_better"] is False


def test_the_worst_case_claim_is_made_when_every_row_has_it():
  rows = [("Retrain", 10, 0, 40, 60, 0.0), ("FT", 1, 8, 5, 95, 0.0), ("IEU", 9, 1, 30, 10, 0.0)]
  runs = [_run(rows)]
  assert "2b_higher_worst_case_rcd" not in comparison.claims(comparison.aggregate(runs))
  worst = {"Retrain": 1.0, "FT": 0.02, "IEU": 0.5}
  for m in runs[0]["methods"]:
    m["rcd"]["worst_case_normalized"] = worst[m["name"]]
  c = comparison.claims(comparison.aggregate(runs))["2b_higher_worst_case_rcd"]
  assert c["supported"] is True and c["versus"]["FT"]["baseline"] == 0.02
  runs[0]["methods"][2]["rcd"]["worst_case_normalized"] = 0.01  # IEU revived faster than FT
  c = comparison.claims(comparison.aggregate(runs))["2b_higher_worst_case_rcd"]
  assert c["supported"] is False


def test_the_mislabel_measure_is_aggregated_and_shown_only_where_present():
  runs = [_run([("Retrain", 10, 0, 10, 50, 0.0), ("IEU", 12, 2, 8, 60, 0.0)]),
          _run([("Retrain", 14, 0, 12, 40, 0.0), ("IEU", 16, 4, 9, 90, 0.0)])]
  assert "corrected" not in comparison.scenario_table(comparison.aggregate(runs))
  for run, gains in zip(runs, ((2.0, -1.0), (4.0, 3.0))):
    for m, gain in zip(run["methods"], gains):
      m["mislabel"] = {"ta_gain": gain, "corrected": 50.0 + gain}
  agg = comparison.aggregate(runs)
  assert agg["Retrain"]["mislabel.ta_gain"] == (3.0, 1.0)
  assert agg["IEU"]["mislabel.corrected"] == (51.0, 2.0)
  table = comparison.scenario_table(agg)
  assert "| TA gain | corrected |" in table
  assert "| 1.00 ± 2.00 | 51.00 ± 2.00 |" in table  # IEU: gains -1 and 3
  assert comparison.SCENARIOS["mislabel10"] == {"mode": "mislabel", "fraction": 0.1}


def test_the_setting_is_read_from_the_runs():
  def cell(seed, gap, acc, wall):
    return {"config": {"seed": seed}, "memorization_gap": gap, "wall_time_s": wall,
            "original": {"train_accuracy": acc}, "rcd_criterion": "recovered",
            "sizes": {"train": 1980, "relearn": 128, "guard": 220},
            "rcd_attackers": {"sgd": {}, "adam": {}},
            "rcd_protocol": {"num_trajectories": 4, "batch_size": 32, "max_steps": 100,
                             "guard_drop": 5.0, "optimizer": "sgd", "learning_rates": [0.01],
                             "momentum": 0.9}}
  runs = {"random10": [cell(0, 10.0, 98.0, 60.0), cell(1, 14.0, 99.5, 120.0)],
          "class0": [cell(0, 99.0, 99.0, 180.0)]}
  text = comparison.setting_paragraph(runs)
  assert "random10 12.0, class0 99.0" in text  # mean gaps over seeds
  assert "train accuracy 98.00-99.50%" in text
  assert "criterion `recovered`" in text and "220 held-out examples" in text
  assert "attackers sgd, adam" in text and "Seeds 0, 1." in text
  assert "summed wall time as they recorded it: 6 min" in text  # (60 + 120 + 180) s
  assert comparison.setting_paragraph({}) == ""


def test_two_pages_keep_their_own_figures(tmp_path):
  import os  # pylint: disable=g-import-not-at-top

  run = dict(_run([("Retrain", 10, 0, 10, 50, 0.0), ("IEU", 12, 2, 8, 60, 0.0)]),
             config={"seed": 0}, memorization_gap=10.0, original={"train_accuracy": 99.0},
             sizes={"train": 100, "relearn": 8},
             rcd_protocol={"num_trajectories": 2, "batch_size": 4, "max_steps": 10,
                           "optimizer": "sgd", "learning_rates": [0.1], "momentum": 0.0})
  runs = {"class0": [run]}
  for page, content in (("results", b"main"), ("results_clip", b"clip")):
    workdir = tmp_path / page
    os.makedirs(workdir / "class0" / "seed0")
    (workdir / "class0" / "seed0" / "relearning.png").write_bytes(content)
    comparison.write_report(runs, str(workdir), results_doc=str(tmp_path / f"{page}.md"))
  for page, content in (("results", b"main"), ("results_clip", b"clip")):
    assert (tmp_path / "figures" / f"{page}_relearning_class0.png").read_bytes() == content
    assert f"(figures/{page}_relearning_class0.png)" in (tmp_path / f"{page}.md").read_text()


def test_splice_replaces_only_its_own_block_and_keeps_the_prose():
  page = ("intro\n<!-- generated: start -->\nold table\n<!-- generated: end -->\noutro\n")
  once = comparison.splice(page, "new table\n")
  assert once == "intro\n<!-- generated: start -->\nnew table\n<!-- generated: end -->\noutro\n"
  # A second block arrives before the first, and each is replaced on its own after.
  both = comparison.splice(once, "frontier v1\n", name="frontier",
                           before="<!-- generated: start -->")
  assert both.index("frontier v1") < both.index("new table") and both.startswith("intro\n")
  again = comparison.splice(both, "frontier v2\n", name="frontier")
  assert "frontier v1" not in again and "frontier v2" in again and "new table" in again
  assert again.endswith("outro\n") and again.count("<!-- frontier: start -->") == 1
  assert comparison.splice(again, "t3\n") == again.replace("new table", "t3")
  # No page yet: the block is the page; a page without the block keeps its text.
  assert comparison.splice(None, "x\n", name="frontier") == (
      "<!-- frontier: start -->\nx\n<!-- frontier: end -->\n")
  assert comparison.splice("prose", "x\n").startswith("prose\n<!-- generated: start -->")
