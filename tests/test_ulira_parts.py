"""The pieces of ``ieu_jax.ulira_run`` checked by hand: scores, forgetting quality, names."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from experiments.configs import fashion_mnist
from ieu_jax import data as data_lib
from ieu_jax import ulira_run


def _apply(params, x):
  return x @ params["w"]


def test_scores_and_accuracy_match_a_float64_recomputation_across_padded_chunks():
  rng = np.random.default_rng(0)
  w = rng.normal(size=(2, 4, 3))  # 2 copies, 4 features, 3 classes
  x, y = rng.normal(size=(7, 4)), rng.integers(0, 3, 7)
  data = data_lib.Dataset(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32), 3)
  scores, correct = ulira_run.scores_and_accuracy(_apply, {"w": jnp.asarray(w, jnp.float32)},
                                                  data, chunk=3)  # chunks 3, 3, 1 (+2 padding)
  assert scores.shape == correct.shape == (2, 7)
  for m in range(2):
    z = x.astype(np.float32).astype(np.float64) @ w[m].astype(np.float32).astype(np.float64)
    for i in range(7):
      others = np.delete(z[i], y[i])
      assert scores[m, i] == pytest.approx(z[i, y[i]] - logsumexp(others), abs=1e-4)
      assert correct[m, i] == (np.argmax(z[i]) == y[i])


def test_forgetting_quality_by_hand():
  # Example 0: forgotten by copies 0, 1 with identical outputs on both sides: epsilon 0,
  # score 1. Example 1: one copy only: skipped and counted. Example 2: nobody: not counted.
  # Example 3: copies 1, 2, the sides separated by a threshold: epsilon inf, score
  # 2 / 2^13 (the last bin).
  forgotten = np.array([[1, 0, 0, 0], [1, 0, 0, 1], [0, 1, 0, 1]], bool)
  unlearned = np.array([[0.5, 0, 0, 0], [0.7, 0, 0, 10.0], [0, 3.0, 0, 11.0]])
  retrained = np.array([[0.5, 0, 0, 0], [0.7, 0, 0, 0.0], [0, 9.0, 0, 1.0]])
  f, skipped, eps = ulira_run._forgetting_quality(unlearned, retrained, forgotten, 1e-5)
  assert skipped == 1
  np.testing.assert_array_equal(eps, [0.0, np.inf])
  assert f == (1.0 + 2.0 / 2**13) / 2
  with pytest.raises(ValueError, match="no example was forgotten by two copies"):
    ulira_run._forgetting_quality(unlearned, retrained, forgotten & (np.arange(3) == 0)[:, None],
                                  1e-5)


@pytest.mark.parametrize("methods, message", [
    ("FT,Retrain", "Retrain is always a row"),
    ("FT,FT", "names a method twice"),
    ("RL,Unknown", "unknown method 'Unknown'"),
])
def test_bad_method_lists_are_refused(methods, message):
  config = fashion_mnist.get_config("small")
  config.ulira.methods = methods
  with pytest.raises(ValueError, match=message):
    ulira_run.method_names(config)


def test_the_configs_shadow_settings():
  default, small = fashion_mnist.get_config(), fashion_mnist.get_config("small")
  assert default.ulira.num_shadows == 64 and default.ulira.population == 4000
  assert default.ulira.forget_size * 4 == default.ulira.population // 2  # a quarter of a half
  assert default.ulira.rcd_copies == 4 and small.ulira.rcd_copies == 2
  assert ulira_run.method_names(default) == ["FT", "GA", "IEU", "SalUn", "SCRUB"]
  assert small.ulira.num_shadows == 16 and small.ulira.population == 400


def test_the_population_is_the_head_of_the_training_split_made_even():
  train = data_lib.Dataset(jnp.arange(9.0)[:, None], jnp.arange(9) % 2, 2)
  assert len(ulira_run._population(train, None)) == 8
  head = ulira_run._population(train, 5)
  assert len(head) == 4 and np.asarray(head.x)[:, 0].tolist() == [0, 1, 2, 3]
  for bad in (1, 10):
    with pytest.raises(ValueError, match=f"population={bad}: the training split has 9"):
      ulira_run._population(train, bad)


def _linear_rows():
  from ieu_jax import privacy  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(1)
  n, num = 40, 6
  y = rng.integers(0, 3, n)
  x = rng.normal(size=(n, 4)) + np.eye(3, 4)[y]
  pop = data_lib.Dataset(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32), 3)
  test = data_lib.Dataset(pop.x[:10], pop.y[:10], 3)
  trained, forgotten = privacy.inclusion(0, num, n, 10)
  w = rng.normal(size=(num, 4, 3))
  w[2] = np.nan  # copy 2 diverged
  ref = rng.normal(size=(num, 4, 3))
  ref[4] = np.nan  # Retrain's copy 4 too
  return pop, test, trained, forgotten, w, ref


def test_rows_leave_diverged_copies_out_and_pair_the_rest_by_copy():
  from ieu_jax import privacy  # pylint: disable=g-import-not-at-top
  pop, test, trained, forgotten, w, ref = _linear_rows()
  setup = (pop, test, _apply, 1000)
  row = ulira_run._row("M", {"w": jnp.asarray(w, jnp.float32)}, trained, forgotten, setup, 0)
  reference = ulira_run._row("Retrain", {"w": jnp.asarray(ref, jnp.float32)}, trained,
                             forgotten, setup, 0)
  assert row["diverged"] == 1 and reference["diverged"] == 1
  # UA and MIA-efficacy copy by copy, from float64 softmax probabilities of the logits.
  from scipy.special import softmax  # pylint: disable=g-import-not-at-top
  from ieu_jax import _metrics  # pylint: disable=g-import-not-at-top
  prob = lambda m, d: softmax(np.asarray(_apply({"w": jnp.asarray(w[m], jnp.float32)}, d.x),
                                         np.float64), -1)[np.arange(len(d)), np.asarray(d.y)]
  mias, uas = [], []
  for m in np.flatnonzero(np.arange(6) != 2):
    p_pop, p_test = prob(m, pop), prob(m, test)
    keep = trained[m] & ~forgotten[m]
    mias.append(_metrics.mia_efficacy(p_pop[keep], p_test, p_pop[forgotten[m]],
                                      max_per_class=1000, seed=0))
    logits = np.asarray(_apply({"w": jnp.asarray(w[m], jnp.float32)}, pop.x))
    uas.append(100 - 100 * np.mean((logits.argmax(-1) == np.asarray(pop.y))[forgotten[m]]))
  assert row["mia_per_copy"] == pytest.approx(mias)
  assert row["MIA"]["mean"] == pytest.approx(np.mean(mias))
  assert row["MIA"]["std"] == pytest.approx(np.std(mias, ddof=1))
  assert row["UA"] == pytest.approx(np.mean(uas))
  ok = np.arange(6) != 2
  scores, _ = ulira_run.scores_and_accuracy(_apply, {"w": jnp.asarray(w[ok], jnp.float32)}, pop)
  want = privacy.ulira(scores, trained[ok], forgotten[ok], seed=0)
  assert row["ulira_accuracy"]["mean"] == pytest.approx(want.mean, nan_ok=True)
  ulira_run._add_challenge(row, reference, forgotten, 1e-5)
  # By hand: copies finite on both sides (all but 2 and 4), example by example.
  both = (np.arange(6) != 2) & (np.arange(6) != 4)
  s_m, _ = ulira_run.scores_and_accuracy(_apply, {"w": jnp.asarray(w[both], jnp.float32)}, pop)
  s_r, _ = ulira_run.scores_and_accuracy(_apply, {"w": jnp.asarray(ref[both], jnp.float32)}, pop)
  f = forgotten[both]
  eps = [privacy.per_example_epsilon(s_m[f[:, i], i], s_r[f[:, i], i], 1e-5)
         for i in range(40) if f[:, i].sum() >= 2]
  assert eps and row["forgetting_quality"] == pytest.approx(
      float(np.mean(privacy.epsilon_score(np.asarray(eps)))))
  assert row["examples_skipped"] == int((f.sum(0) == 1).sum())
  # The accuracy ratios over the same copies as F: 0, 1, 3, 5.
  def accuracies(weights):
    ras, tas = [], []
    for m in np.flatnonzero(both):
      wm = {"w": jnp.asarray(weights[m], jnp.float32)}
      hit = np.asarray(_apply(wm, pop.x)).argmax(-1) == np.asarray(pop.y)
      keep = trained[m] & ~forgotten[m]
      ras.append(100 * hit[keep].mean())
      tas.append(100 * np.mean(np.asarray(_apply(wm, test.x)).argmax(-1) == np.asarray(test.y)))
    return np.mean(ras), np.mean(tas)
  (ra_m, ta_m), (ra_r, ta_r) = accuracies(w), accuracies(ref)
  assert row["challenge_score"] == pytest.approx(
      row["forgetting_quality"] * ra_m / ra_r * ta_m / ta_r)
  assert row["RA"] != pytest.approx(ra_m)  # the row's own RA is over its 5 usable copies


def test_a_row_whose_every_copy_diverged_has_no_metric():
  pop, test, trained, forgotten, w, ref = _linear_rows()
  setup = (pop, test, _apply, 1000)
  row = ulira_run._row("M", {"w": jnp.full((6, 4, 3), jnp.nan)}, trained, forgotten, setup, 0)
  reference = ulira_run._row("Retrain", {"w": jnp.asarray(ref, jnp.float32)}, trained,
                             forgotten, setup, 0)
  ulira_run._add_challenge(row, reference, forgotten, 1e-5)
  assert row["diverged"] == 6 and np.isnan(row["ulira_accuracy"]["mean"])
  assert np.isnan(row["forgetting_quality"]) and np.isnan(row["challenge_score"])


@pytest.mark.parametrize("seed", range(6))
def test_kendall_tau_is_scipys_tau_b_with_ties(seed):
  from scipy import stats  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  a, b = rng.integers(0, 4, 9).astype(float), rng.integers(0, 4, 9).astype(float)
  assert ulira_run.kendall_tau(a, b) == pytest.approx(stats.kendalltau(a, b).statistic)
  assert ulira_run.kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0
  assert np.isnan(ulira_run.kendall_tau([1, 1, 1], [1, 2, 3]))
  with pytest.raises(ValueError, match=r"shapes \(3,\) and \(2,\)"):
    ulira_run.kendall_tau([1, 2, 3], [1, 2])


def _ranked_rows():
  def row(name, ulira, challenge, mia, steps):
    return {"name": name, "ulira_accuracy": {"mean": ulira}, "challenge_score": challenge,
            "MIA": {"mean": mia}, "RCD": {"steps": {"mean": steps}}}
  return [row("Original", 70.0, 0.1, 5.0, 0.0), row("Retrain", 50.0, 0.6, 30.0, 20.0),
          row("A", 51.0, 0.5, 29.0, 19.0),    # nearest Retrain on every measure
          row("B", 47.0, 0.4, 36.0, 12.0),    # below chance: 3 from 50
          row("C", 60.0, 0.45, None, 40.0),   # no MIA (a diverged row's JSON null)
          row("D", 65.0, 0.05, 10.0, 1.0)]


def test_rankings_by_hand():
  r = ulira_run.rankings(_ranked_rows())
  assert r["order"]["U-LiRA"] == ["A", "B", "C", "D"]  # |acc - 50|: 1, 3, 10, 15
  assert r["order"]["challenge score"] == ["A", "C", "B", "D"]  # higher is better
  assert r["order"]["MIA-efficacy"] == ["A", "B", "D", "C"]  # |MIA - 30|: 1, 6, 20; C last
  assert r["unranked"]["MIA-efficacy"] == ["C"]
  # RCD: 100 |ln((T + 1) / 21)|: A 4.9, B 49.6, C 66.9, D 236.
  assert r["order"]["RCD"] == ["A", "B", "C", "D"]
  assert r["values"]["RCD"]["B"] == pytest.approx(100 * abs(np.log(13 / 21)))
  assert r["tau"]["U-LiRA vs RCD"] == 1.0
  # Over A, B, D (C has no MIA): the same order.
  assert r["tau"]["U-LiRA vs MIA-efficacy"] == 1.0
  # A, C, B, D against A, B, C, D: one discordant pair of six.
  assert r["tau"]["U-LiRA vs challenge score"] == pytest.approx(4 / 6)
  assert not r["agree"]
  assert "Original" not in r["order"]["U-LiRA"] and "Retrain" not in r["order"]["RCD"]
  text = ulira_run._rankings_text(r)
  assert "* MIA-efficacy: A > B > D (no value, last: C)" in text
  assert r["tau"]["challenge score vs RCD"] == pytest.approx(4 / 6)
  assert r["tau"]["challenge score vs MIA-efficacy"] == 1.0  # over A, B, D
  assert "2 of the 6 comparable pairs" in text


def test_rankings_agree_and_ties_print_as_ties():
  rows = _ranked_rows()[:4]  # Original, Retrain, A, B
  rows.append({"name": "E", "ulira_accuracy": {"mean": 53.0}, "challenge_score": 0.3,
               "MIA": {"mean": 36.0}, "RCD": {"steps": {"mean": 12.0}}})
  r = ulira_run.rankings(rows)
  assert r["agree"] is False  # B and E tie on U-LiRA (3 from 50 each), MIA and RCD
  text = ulira_run._rankings_text(r)
  assert "* MIA-efficacy: A > B = E" in text and "* U-LiRA: A > B = E" in text
  rows[-1]["MIA"]["mean"], rows[-1]["RCD"]["steps"]["mean"] = 37.0, 11.0
  rows[-1]["challenge_score"], rows[-1]["ulira_accuracy"]["mean"] = 0.35, 54.0
  assert ulira_run.rankings(rows)["agree"] is True


def test_copies_whose_outputs_overflow_are_left_out_and_counted():
  pop, test, trained, forgotten, w, _ = _linear_rows()
  w[3] = 1e38  # finite weights, logits that overflow
  setup = (pop, test, _apply, 1000)
  scores, correct = ulira_run.scores_and_accuracy(_apply, {"w": jnp.asarray(w, jnp.float32)},
                                                  pop)
  assert np.isnan(scores[3]).all() and not correct[3].any()
  assert np.isnan(scores[2]).all() and np.isfinite(scores[[0, 1, 4, 5]]).all()
  row = ulira_run._row("M", {"w": jnp.asarray(w, jnp.float32)}, trained, forgotten, setup, 0)
  assert row["diverged"] == 2 and row["_ok"].tolist() == [True, True, False, False, True, True]
  assert len(row["mia_per_copy"]) == 4 and len(row["ulira_per_target"]) == 4
  # The same row without copies 2 and 3 at all: the same numbers.
  keep = np.array([0, 1, 4, 5])
  alone = ulira_run._row("M", {"w": jnp.asarray(w[keep], jnp.float32)}, trained[keep],
                         forgotten[keep], setup, 0)
  assert row["RA"] == alone["RA"] and row["MIA"] == alone["MIA"]
  np.testing.assert_array_equal(row["ulira_per_target"], alone["ulira_per_target"])


def test_a_row_with_one_usable_copy_has_utility_but_no_attack():
  pop, test, trained, forgotten, w, ref = _linear_rows()
  w[[0, 1, 3, 4, 5]] = np.nan  # only copy 2 is usable
  w[2] = ref[2]
  setup = (pop, test, _apply, 1000)
  row = ulira_run._row("M", {"w": jnp.asarray(w, jnp.float32)}, trained, forgotten, setup, 0)
  assert row["diverged"] == 5 and np.isfinite(row["RA"]) and len(row["mia_per_copy"]) == 1
  assert np.isnan(row["ulira_accuracy"]["mean"])
  reference = ulira_run._row("R", {"w": jnp.asarray(np.where(np.isnan(ref), 0.0, ref),
                                                    jnp.float32)}, trained, forgotten, setup, 0)
  ulira_run._add_challenge(row, reference, forgotten, 1e-5)  # one copy: no pair, no raise
  assert np.isnan(row["forgetting_quality"]) and np.isnan(row["challenge_score"])


def test_rankings_with_nothing_comparable_say_so():
  rows = _ranked_rows()[:3]  # Original, Retrain, A: one method
  r = ulira_run.rankings(rows)
  assert all(np.isnan(t) for t in r["tau"].values()) and not r["agree"]
  assert "nothing to compare" in ulira_run._rankings_text(r)
  rows = _ranked_rows()
  for row in rows[2:]:
    row["MIA"]["mean"] = None if row["name"] != "A" else row["MIA"]["mean"]
  text = ulira_run._rankings_text(ulira_run.rankings(rows))
  assert "3 pair(s) not comparable" in text and "of the 3 comparable pairs" in text


def test_a_config_without_twice_forgotten_examples_is_refused_before_training(tmp_path):
  config = fashion_mnist.get_config("small")
  config.ulira.num_shadows, config.ulira.forget_size = 2, 1
  with pytest.raises(ValueError, match=r"no example is forgotten by two of the 2 copies"
                                       r" \(forget_size=1 of halves of 200\)"):
    ulira_run.run(config, str(tmp_path))
  assert not (tmp_path / "checkpoints").exists()
