"""The standard unlearning metrics: UA, RA, TA, MIA-efficacy and Avg. Gap.

Accuracies are computed on the device in fixed-size chunks (one compilation per
chunk shape); the membership-inference attack runs on the host with
scikit-learn's RBF support-vector classifier.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ieu_jax._steps import ApplyFn

__all__ = [
    "predict",
    "accuracy",
    "true_class_confidence",
    "mia_efficacy",
    "avg_gap",
]


def _check_batch_size(batch_size) -> None:
  if (isinstance(batch_size, (bool, np.bool_)) or not isinstance(batch_size, (int, np.integer))
      or batch_size < 1):
    raise ValueError(f"batch_size={batch_size!r} must be a positive integer.")


def predict(
    apply_fn: ApplyFn, params, inputs: jax.Array, *, batch_size: int = 1024
) -> jax.Array:
  """Logits of ``apply_fn`` on ``inputs``, computed in chunks of ``batch_size``.

  The last chunk is padded to the chunk size, so a whole evaluation compiles once.

  Raises:
    ValueError: for empty ``inputs`` or a ``batch_size`` that is not a positive
      integer.
  """
  _check_batch_size(batch_size)
  n = inputs.shape[0]
  if n == 0:
    raise ValueError(f"inputs is empty (shape {inputs.shape}): nothing to predict.")
  size = min(batch_size, n)
  chunks = []
  fn = jax.jit(apply_fn)
  for start in range(0, n, size):
    chunk = inputs[start : start + size]
    pad = size - chunk.shape[0]
    if pad:
      chunk = jnp.concatenate([chunk, jnp.zeros((pad,) + chunk.shape[1:], chunk.dtype)])
    chunks.append(fn(params, chunk)[: size - pad])
  return jnp.concatenate(chunks)


def _labelled_logits(apply_fn, params, inputs, labels, batch_size) -> jax.Array:
  """The logits of ``inputs``, once ``labels`` are known to be classes of them.

  Raises:
    ValueError: for empty inputs, labels that are not one integer class per
      input, or a label outside ``[0, number of classes)``.
  """
  host = np.asarray(labels)
  if host.ndim != 1 or not np.issubdtype(host.dtype, np.integer):
    raise ValueError(
        f"labels must be a 1-D array of integer classes; got shape {host.shape} and"
        f" dtype {host.dtype}."
    )
  if inputs.shape[0] != host.shape[0]:
    raise ValueError(
        f"inputs and labels differ in length: {inputs.shape[0]} vs {host.shape[0]}."
    )
  if inputs.shape[0] == 0:
    raise ValueError(f"inputs is empty (shape {inputs.shape}): nothing to evaluate.")
  logits = predict(apply_fn, params, inputs, batch_size=batch_size)
  num_classes = logits.shape[-1]
  bad = (host < 0) | (host >= num_classes)
  if bad.any():
    i = int(np.argmax(bad))
    raise ValueError(
        f"labels[{i}]={int(host[i])} is not a class of the {num_classes} logits:"
        f" labels must be in [0, {num_classes})."
    )
  return logits


def accuracy(
    apply_fn: ApplyFn, params, inputs: jax.Array, labels: jax.Array, *, batch_size: int = 1024
) -> float:
  """Top-1 accuracy in percent.

  Raises:
    ValueError: for empty inputs, labels that are not one integer class per
      input, a label outside ``[0, number of classes)``, or a bad ``batch_size``.
  """
  logits = _labelled_logits(apply_fn, params, inputs, labels, batch_size)
  return _accuracy(logits, labels)


def _accuracy(logits: jax.Array, labels: jax.Array) -> float:
  return float(100.0 * jnp.mean(jnp.argmax(logits, -1) == labels))


def _confidence(logits: jax.Array, labels: jax.Array) -> np.ndarray:
  probs = jax.nn.softmax(logits.astype(jnp.float32), -1)
  return np.asarray(jnp.take_along_axis(probs, labels[:, None], -1)[:, 0])


def accuracy_and_confidence(
    apply_fn: ApplyFn, params, inputs: jax.Array, labels: jax.Array, *, batch_size: int = 1024
) -> tuple[float, np.ndarray]:
  """:func:`accuracy` and :func:`true_class_confidence` from one pass over ``inputs``.

  Raises:
    ValueError: as :func:`accuracy`.
  """
  logits = _labelled_logits(apply_fn, params, inputs, labels, batch_size)
  return _accuracy(logits, labels), _confidence(logits, labels)


def true_class_confidence(
    apply_fn: ApplyFn, params, inputs: jax.Array, labels: jax.Array, *, batch_size: int = 1024
) -> np.ndarray:
  """Softmax probability of the true class, one per example (host array).

  Raises:
    ValueError: as :func:`accuracy`.
  """
  logits = _labelled_logits(apply_fn, params, inputs, labels, batch_size)
  return _confidence(logits, labels)


def mia_efficacy(
    retain_conf: np.ndarray,
    test_conf: np.ndarray,
    forget_conf: np.ndarray,
    *,
    max_per_class: int = 5000,
    seed: int = 0,
) -> float:
  """MIA-efficacy in percent: the share of forget examples an attack calls non-members.

  The attack is an RBF support-vector classifier trained on a per-example feature
  (here the true-class confidence) of retain examples (members, label 1) against
  test examples (non-members, label 0), with equally many of each (at most
  ``max_per_class``, drawn with ``seed``). Higher means the forget set looks less
  like training data. Never read it alone: a collapsed model scores arbitrarily.

  Args:
    retain_conf: features of members, shape ``(n_r,)`` or ``(n_r, k)``.
    test_conf: features of non-members, same trailing shape.
    forget_conf: features of the forget examples to score.
    max_per_class: cap on the training examples taken from each side.
    seed: seed of the subsampling.

  Returns:
    A percentage in [0, 100].

  Raises:
    ValueError: for an empty or non-finite feature array, feature widths that
      differ, or a ``max_per_class`` that is not a positive integer.
  """
  from sklearn.svm import SVC  # pylint: disable=g-import-not-at-top

  if (isinstance(max_per_class, (bool, np.bool_))
      or not isinstance(max_per_class, (int, np.integer)) or max_per_class < 1):
    raise ValueError(f"max_per_class={max_per_class!r} must be a positive integer.")

  def as_features(a, name):
    a = np.asarray(a, np.float64)
    if a.ndim == 1:
      a = a[:, None]
    if a.ndim != 2 or a.shape[0] == 0:
      raise ValueError(f"{name} must be a non-empty (n,) or (n, k) array; got shape {a.shape}.")
    if not np.all(np.isfinite(a)):
      raise ValueError(f"{name} holds non-finite values.")
    return a

  retain = as_features(retain_conf, "retain_conf")
  test = as_features(test_conf, "test_conf")
  forget = as_features(forget_conf, "forget_conf")
  if not retain.shape[1] == test.shape[1] == forget.shape[1]:
    raise ValueError(
        "feature widths differ: retain, test, forget have"
        f" {retain.shape[1]}, {test.shape[1]}, {forget.shape[1]}."
    )
  rng = np.random.default_rng(seed)
  n = min(len(retain), len(test), max_per_class)
  members = retain[rng.choice(len(retain), n, replace=False)]
  non_members = test[rng.choice(len(test), n, replace=False)]
  features = np.concatenate([members, non_members])
  labels = np.concatenate([np.ones(n), np.zeros(n)])
  attack = SVC(C=3.0, gamma="auto", kernel="rbf")
  attack.fit(features, labels)
  return float(100.0 * np.mean(attack.predict(forget) == 0))


_GAP_KEYS = ("UA", "RA", "TA", "MIA")


def avg_gap(
    row: Mapping[str, float],
    reference: Mapping[str, float],
    keys: Sequence[str] = _GAP_KEYS,
) -> float:
  """Mean absolute difference between ``row`` and ``reference`` over ``keys``.

  With the default keys this is the paper's Avg. Gap against Retrain.

  Raises:
    KeyError: naming a key that either row lacks, and the row that lacks it.
    ValueError: when ``keys`` is empty.
  """
  keys = [keys] if isinstance(keys, str) else list(keys)
  if not keys:
    raise ValueError("keys=[] is empty: avg_gap averages over at least one key.")
  for name, mapping in (("row", row), ("reference", reference)):
    missing = [k for k in keys if k not in mapping]
    if missing:
      raise KeyError(f"avg_gap: {name} lacks the key(s) {missing}; it has {list(mapping)}.")
  return float(np.mean([abs(float(row[k]) - float(reference[k])) for k in keys]))
