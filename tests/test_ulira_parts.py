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
  # Example 3: copies 1, 2, the sides separated by a threshold: epsilon inf, score 0.
  forgotten = np.array([[1, 0, 0, 0], [1, 0, 0, 1], [0, 1, 0, 1]], bool)
  unlearned = np.array([[0.5, 0, 0, 0], [0.7, 0, 0, 10.0], [0, 3.0, 0, 11.0]])
  retrained = np.array([[0.5, 0, 0, 0], [0.7, 0, 0, 0.0], [0, 9.0, 0, 1.0]])
  f, skipped, eps = ulira_run._forgetting_quality(unlearned, retrained, forgotten, 1e-5)
  assert skipped == 1
  np.testing.assert_array_equal(eps, [0.0, np.inf])
  assert f == 0.5
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
  assert default.ulira.num_shadows == 64 and default.ulira.population is None
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
  setup = (pop, test, _apply)
  row = ulira_run._row("M", {"w": jnp.asarray(w, jnp.float32)}, trained, forgotten, setup, 0)
  reference = ulira_run._row("Retrain", {"w": jnp.asarray(ref, jnp.float32)}, trained,
                             forgotten, setup, 0)
  assert row["diverged"] == 1 and reference["diverged"] == 1
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


def test_a_row_whose_every_copy_diverged_has_no_metric():
  pop, test, trained, forgotten, w, ref = _linear_rows()
  setup = (pop, test, _apply)
  row = ulira_run._row("M", {"w": jnp.full((6, 4, 3), jnp.nan)}, trained, forgotten, setup, 0)
  reference = ulira_run._row("Retrain", {"w": jnp.asarray(ref, jnp.float32)}, trained,
                             forgotten, setup, 0)
  ulira_run._add_challenge(row, reference, forgotten, 1e-5)
  assert row["diverged"] == 6 and np.isnan(row["ulira_accuracy"]["mean"])
  assert np.isnan(row["forgetting_quality"]) and np.isnan(row["challenge_score"])
