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
  # Against an independent set of Retrain copies, Retrain's row is not 1 by
  # construction, and the original is easier to tell from retraining than it.
  assert rows["Retrain"]["forgetting_quality"] < 1.0
  assert rows["Original"]["forgetting_quality"] < rows["Retrain"]["forgetting_quality"]
  # The Original copies remember their forget subsets: UA and MIA below Retrain's.
  assert rows["Original"]["UA"] < rows["Retrain"]["UA"]
  assert rows["Original"]["MIA"]["mean"] < rows["Retrain"]["MIA"]["mean"]


def test_challenge_score_is_f_times_the_accuracy_ratios_to_the_reference_copies(small):
  _, _, out = small
  ref = out["challenge_reference"]
  assert ref["diverged"] == 0 and 0 < ref["RA"] <= 100
  # Another set of copies: not the Retrain row's numbers.
  assert (ref["RA"], ref["TA"]) != (_rows(out)["Retrain"]["RA"], _rows(out)["Retrain"]["TA"])
  for m in out["methods"]:
    want = privacy.challenge_score(m["forgetting_quality"], m["RA"], ref["RA"], m["TA"], ref["TA"])
    assert m["challenge_score"] == pytest.approx(want)
    assert m["challenge_score"] == pytest.approx(
        m["forgetting_quality"] * m["RA"] / ref["RA"] * m["TA"] / ref["TA"])


def test_rcd_on_the_first_copies_normalised_by_each_retrain_copy(small):
  config, _, out = small
  rows = _rows(out)
  assert out["rcd_copies"] == config.ulira.rcd_copies == 2
  for m in out["methods"]:
    assert m["RCD"]["copies"] == 2 and len(m["rcd_per_copy"]) == 2
    steps = [c["steps"] for c in m["rcd_per_copy"]]
    assert m["RCD"]["steps"]["mean"] == pytest.approx(np.mean(steps))
  # Each copy's original meets its own threshold (its accuracy less the tolerance)
  # before any step; each Retrain copy is its own unit.
  assert all(c["steps"] == 0 for c in rows["Original"]["rcd_per_copy"])
  assert all(c["normalized"] == 1.0 for c in rows["Retrain"]["rcd_per_copy"])
  assert rows["Retrain"]["RCD"]["steps"]["mean"] > 0
  for m in out["methods"]:
    for c, r in zip(m["rcd_per_copy"], rows["Retrain"]["rcd_per_copy"]):
      assert c["normalized"] == pytest.approx(c["steps"] / r["steps"])


def test_the_rankings_are_those_of_the_rows(small):
  _, _, out = small
  again = ulira_run.rankings(out["methods"])
  assert again["order"] == out["rankings"]["order"]
  assert set(out["rankings"]["order"]["RCD"]) == {"FT", "GA", "IEU", "SalUn", "SCRUB"}


def test_the_results_page_gains_its_block_and_keeps_the_rest(small, tmp_path):
  _, workdir, out = small
  page = tmp_path / "results.md"
  page.write_text("# Results\n\nhand-written\n\n<!-- generated: start -->\nold\n"
                  "<!-- generated: end -->\n")
  ulira_run.write_results_doc(out, str(page), workdir)
  text = page.read_text()
  assert text.index("hand-written") < text.index("<!-- ulira: start -->") < text.index(
      "<!-- ulira: end -->") < text.index("<!-- generated: start -->")
  assert "<!-- generated: start -->\nold\n<!-- generated: end -->" in text
  assert all(f"| {m['name']} " in text for m in out["methods"])
  assert (tmp_path / "figures" / "results_ulira.png").stat().st_size > 0
  ulira_run.write_results_doc(out, str(page), workdir)  # a rewrite replaces its block
  assert page.read_text() == text


def test_a_rerun_restores_every_copy_and_gives_the_same_numbers(small):
  config, workdir, out = small
  again = ulira_run.run(config, workdir, command="test")
  assert all(m["restored"] for m in again["methods"])
  assert again["challenge_reference"]["restored"]
  assert not any(m["restored"] for m in out["methods"])
  for a, b in zip(out["methods"], again["methods"]):
    assert a["ulira_accuracy"] == b["ulira_accuracy"] and a["RA"] == b["RA"]
