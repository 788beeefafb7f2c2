"""Judging a generator: class rates, Frechet distance, and relearning (generator RCD).

A generator is judged by an evaluation classifier: the share of samples generated
for a class that it assigns to that class (:func:`class_rates`), and the Frechet
distance between generated and real images in its penultimate features
(:func:`frechet_distance`).

Generator RCD runs on the one RCD engine (:func:`ieu_jax.relearn`) with the task
of :func:`relearning_task`: the attacker fine-tunes the generator on ``m``
forget-class images with the training loss (their label, label dropout as in
training; the loss's noise from the step's key), and every ``eval_every`` steps
the criterion tests the forget-class rate of ``num_samples`` samples (guided DDIM
from a fixed noise, the same at every evaluation and for every model) against the
threshold. So it gains what the engine does: sharding across devices, the
formulations, early stopping.
"""

from __future__ import annotations

import warnings
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from ieu_jax.generative.methods import GenProblem

__all__ = ["class_rates", "frechet_distance", "make_generate", "relearning_task"]


def make_generate(sample: Callable[..., jax.Array], chunk: int):
  """``generate(params, labels, key)``: ``sample(params, key_i, labels_i)`` in chunks.

  Chunk ``i`` holds ``chunk`` labels (the last padded with its first label; the
  padding's samples are dropped) and draws its noise from ``fold_in(key, i)``,
  so a sample depends on its position, not on how many are drawn after it.
  Traceable: inside ``jax.jit`` it is part of one program.
  """

  def generate(params, labels, key):
    out = []
    for i, start in enumerate(range(0, labels.shape[0], chunk)):
      y = labels[start:start + chunk]
      pad = chunk - y.shape[0]
      y_full = jnp.concatenate([y, jnp.full((pad,), y[0], y.dtype)]) if pad else y
      out.append(sample(params, jax.random.fold_in(key, i), y_full)[:y.shape[0]])
    return jnp.concatenate(out)

  return generate


def relearning_task(problem: GenProblem, generate, logits_fn, num_samples: int):
  """``(objective, evaluation)`` of relearning the forget class, for :func:`ieu_jax.relearn`.

  Args:
    problem: supplies the training loss (label dropout included).
    generate: ``generate(params, labels, key)`` (:func:`make_generate`).
    logits_fn: the evaluation classifier, ``logits_fn(classifier_params, x)``.
    num_samples: forget-class samples per evaluation.

  Returns:
    ``objective(params, (x, y), key)``, the training loss, and
    ``evaluation(params, (classifier_params, noise_key_data))``: the percent of
    the samples the classifier assigns to the forget class, and NaN for the loss
    (only the ``"accuracy"`` criterion applies).
  """
  labels = jnp.full((num_samples,), problem.forget_class, jnp.int32)

  def objective(params, batch, key):
    return problem.retain_loss(params, *batch, key)

  def evaluation(params, eval_data):
    classifier, key_data = eval_data
    samples = generate(params, labels, jax.random.wrap_key_data(key_data))
    predicted = jnp.argmax(logits_fn(classifier, samples), -1)
    return 100.0 * jnp.mean(predicted == problem.forget_class), jnp.array(jnp.nan, jnp.float32)

  return objective, evaluation


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
  """Frechet distance between Gaussians fitted to feature sets ``a`` and ``b`` (float64).

  ``||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^{1/2})``, the square root by
  ``scipy.linalg.sqrtm``, its (round-off) imaginary part dropped. With fewer
  samples than feature dimensions the covariances are singular (the square root
  still exists; scipy's warning about it is silenced) and the estimate is
  biased upwards: compare distances only at equal sample sizes.
  """
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
    raise ValueError(f"need two (N, D) feature sets with N >= 2; got {a.shape}, {b.shape}.")
  mu_a, mu_b = a.mean(0), b.mean(0)
  cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
    covmean = scipy.linalg.sqrtm(cov_a @ cov_b)
    if not np.all(np.isfinite(covmean)):
      eps = 1e-6 * np.eye(a.shape[1])
      covmean = scipy.linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
  covmean = np.real(covmean)
  value = np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2.0 * covmean)
  return float(max(value, 0.0))


def class_rates(predicted: np.ndarray, labels: np.ndarray, classes) -> dict[int, float]:
  """Per class ``c``: percent of the samples generated for ``c`` that are predicted ``c``."""
  predicted, labels = np.asarray(predicted), np.asarray(labels)
  return {int(c): float(100.0 * np.mean(predicted[labels == c] == c)) for c in classes}
