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
