"""Unlearning a class from a class-conditional diffusion model, end to end.

What ``experiments.generative`` runs (:func:`run_generative`):

1. data: Fashion-MNIST (or any :func:`ieu_jax.data.load_dataset` source),
   optionally restricted to some classes, resized to ``image_size`` and scaled
   to ``[-1, 1]``;
2. classifier: a :class:`ieu_jax.models.SmallCNN` trained on the same images,
   used only to evaluate generated samples (its class predictions, and its
   penultimate layer as the feature space of the Frechet distance);
3. original: a class-conditional DDPM (:mod:`ieu_jax.unet`, epsilon loss with
   label dropout for classifier-free guidance) trained on every class;
4. retrain: the same DDPM trained without the forget class (the reference);
5. methods: each unlearns the forget class from the original weights
   (:data:`METHODS`: FT, GA, SalUn, IEU, same interface as
   :mod:`ieu_jax.methods`: ``unlearn(problem, hparams, key) -> params``);
6. evaluation per model: the share of samples generated for the forget class
   that the classifier assigns to it (lower is better), the same share for the
   retained classes (should stay high), the Frechet distance between generated
   and real retained-class images in classifier features, and generator RCD:
   relearning steps until the forget class's rate reaches a threshold,
   normalised by the retrained model's;
7. outputs: ``results.json``, ``results.md``, ``samples.png`` (a grid of
   samples per class for every model).

Trained models (classifier, original, retrain) are cached in
``workdir/checkpoints`` under a fingerprint of the configuration that made them.
:func:`prepare_generative` builds them and the evaluation machinery (a
:class:`GenSetup`); :func:`run_generative` and the hyperparameter search
:func:`search_generative` both start from it.

Generator RCD, precisely: the attacker fine-tunes the generator on ``m``
forget-class images with the training loss (their label, label dropout as in
training); every ``eval_every`` steps it generates ``eval_samples`` images of
the forget class (DDIM, guided, the same starting noise at every evaluation
and for every model) and the classifier's rate on them is compared with the
threshold ``threshold_fraction * (original's rate)``. Sampling dominates the
cost, so the criterion is tested every ``eval_every`` steps (not every step):
``T`` is resolved to that granularity, and a run that never reaches the
threshold within ``max_steps`` is censored.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import time
import warnings
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import scipy.linalg
from absl import logging

from ieu_jax import _io
from ieu_jax import _rcd
from ieu_jax import checkpoints
from ieu_jax import data as data_lib
from ieu_jax import diffusion
from ieu_jax import models
from ieu_jax import protocol as protocol_lib
from ieu_jax import training
from ieu_jax import unet as unet_lib
from ieu_jax.methods import base
from ieu_jax.methods import ieu as ieu_method
from ieu_jax.methods import retrain as retrain_lib

__all__ = [
    "GenProblem",
    "GenRelearnProtocol",
    "METHODS",
    "get_method",
    "prepare_images",
    "classifier_fns",
    "train_ddpm",
    "frechet_distance",
    "class_rates",
    "make_ddpm_step",
    "make_relearn_step",
    "relearn_generator",
    "warmup_cosine",
    "GenSetup",
    "prepare_generative",
    "run_generative",
    "search_generative",
    "run_seeds",
]

# Where each phase's randomness comes from: fold_in(key(seed), stream).
_KEY_CLASSIFIER, _KEY_ORIGINAL, _KEY_RETRAIN, _KEY_METHODS = 1, 2, 3, 4
_KEY_RCD, _KEY_SAMPLES = 5, 6
_KEY_SEARCH, _KEY_SEARCH_SAMPLES = 7, 8


# ----------------------------------------------------------------------------
# Data and the evaluation classifier.


def prepare_images(x: jax.Array, size: int) -> jax.Array:
  """Images in ``[0, 1]`` ``(N, H, W, C)`` -> ``(N, size, size, C)`` in ``[-1, 1]``."""
  if x.shape[1:3] != (size, size):
    x = jax.image.resize(x, (x.shape[0], size, size, x.shape[3]), "linear", antialias=True)
  return jnp.clip(2.0 * x - 1.0, -1.0, 1.0)


def classifier_fns(num_classes: int, image_shape, *, features=(16, 32), hidden=64):
  """``(init_fn, logits_fn, features_fn)`` of a :class:`ieu_jax.models.SmallCNN`.

  ``features_fn(params, x)`` is the penultimate layer (after its ReLU), read
  with Flax's ``capture_intermediates``, so the model itself is unchanged.
  """
  module = models.SmallCNN(num_classes=num_classes, features=tuple(features), hidden=hidden)

  def init_fn(key):
    return module.init(key, jnp.zeros((1, *image_shape), jnp.float32))["params"]

  def logits_fn(params, x):
    return module.apply({"params": params}, x)

  def features_fn(params, x):
    _, state = module.apply(
        {"params": params}, x,
        capture_intermediates=lambda mdl, method: mdl.name == "Dense_0",
        mutable=["intermediates"],
    )
    return jax.nn.relu(state["intermediates"]["Dense_0"]["__call__"][0])

  return init_fn, logits_fn, features_fn


# ----------------------------------------------------------------------------
# Training a DDPM.


def warmup_cosine(count, total, peak: float, warmup: int, floor: float = 0.05):
  """Learning rate at step ``count`` of ``total``: linear warmup, cosine decay to ``floor * peak``.

  ``total`` may be traced, so runs of different lengths share one compiled step.
  """
  count = jnp.asarray(count, jnp.float32)
  total = jnp.maximum(jnp.asarray(total, jnp.float32), warmup + 1.0)
  warm = peak * count / max(warmup, 1)
  frac = jnp.clip((count - warmup) / (total - warmup), 0.0, 1.0)
  cos = peak * (floor + (1.0 - floor) * 0.5 * (1.0 + jnp.cos(jnp.pi * frac)))
  return jnp.where(count < warmup, warm, cos)


def make_ddpm_step(
    eps_fn: diffusion.EpsFn,
    schedule: diffusion.Schedule,
    hparams: Mapping[str, Any],
    *,
    null_label: int,
    label_drop: float,
):
  """``(tx, step)`` for DDPM training; ``step`` as :func:`ieu_jax.training.make_indexed_step`.

  Adam on gradients clipped at norm 1, learning rate :func:`warmup_cosine`
  (``hparams``: ``learning_rate``, ``warmup_steps``). The run's length is the
  step's extra argument ``total`` (a scalar array), so the original and the
  retrained model train with the same compiled step.
  """
  tx = optax.chain(optax.clip_by_global_norm(1.0), optax.scale_by_adam())
  peak, warmup = float(hparams["learning_rate"]), int(hparams.get("warmup_steps", 100))

  def loss_and_update(params, opt_state, batch, key, total):
    x, y = batch
    loss, grads = jax.value_and_grad(
        lambda p: diffusion.diffusion_loss(
            eps_fn, p, schedule, x, y, key, label_drop=label_drop, null_label=null_label)
    )(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    lr = warmup_cosine(opt_state[1].count, total, peak, warmup)
    updates = jax.tree.map(lambda u: -lr * u, updates)
    return optax.apply_updates(params, updates), opt_state, loss

  inner = training.make_indexed_step(loss_and_update)

  def step(params, opt_state, x, y, idx, key, total):
    # Gather the batch outside the compiled step, so data sets of any size
    # (all classes, the retain set) share one compilation.
    return inner(params, opt_state, x[idx], y[idx], jnp.arange(idx.shape[0]), key, total)

  return tx, step


def train_ddpm(
    params,
    eps_fn: diffusion.EpsFn,
    schedule: diffusion.Schedule,
    data: data_lib.Dataset,
    hparams: Mapping[str, Any],
    key: jax.Array,
    *,
    null_label: int,
    label_drop: float,
    name: str = "ddpm",
    tx_and_step=None,
):
  """Trains ``params`` on ``data`` with the epsilon loss and label dropout.

  Args:
    params: initial parameters.
    eps_fn: the network.
    schedule: the noise schedule.
    data: training images in ``[-1, 1]`` and labels.
    hparams: ``learning_rate``, ``epochs``, ``batch_size``, optional ``warmup_steps``.
    key: data order, timesteps, noise and label dropout.
    null_label: the "no class" label.
    label_drop: probability of training a step's label as ``null_label``.
    name: for logs.
    tx_and_step: a :func:`make_ddpm_step` result to reuse (one compilation for
      several runs); built from the other arguments when None.

  Returns:
    The trained parameters.
  """
  epochs, batch_size = int(hparams["epochs"]), int(hparams["batch_size"])
  total = epochs * -(-len(data) // min(batch_size, len(data)))
  tx, step = tx_and_step or make_ddpm_step(
      eps_fn, schedule, hparams, null_label=null_label, label_drop=label_drop)
  params, _ = training.fit(
      params, tx.init(params), step, (data.x, data.y), epochs=epochs,
      batch_size=batch_size, key=key, name=name, aux=(jnp.asarray(total, jnp.float32),))
  return params


# ----------------------------------------------------------------------------
# Unlearning methods.


@dataclasses.dataclass(frozen=True)
class GenProblem:
  """Everything a generative unlearning method may use.

  Attributes:
    eps_fn: ``eps_fn(params, x_t, t, labels) -> eps``.
    schedule: the training noise schedule.
    original: the original generator's params.
    forget: the forget-class images (in ``[-1, 1]``) with their label.
    retain: the other training images.
    forget_class: the class to forget.
    retained_classes: the classes to keep (those present in ``retain``).
    null_label: the "no class" label of classifier-free guidance.
    label_drop: the label dropout of training.
  """

  eps_fn: diffusion.EpsFn
  schedule: diffusion.Schedule
  original: Any
  forget: data_lib.Dataset
  retain: data_lib.Dataset
  forget_class: int
  retained_classes: tuple[int, ...]
  null_label: int
  label_drop: float

  def forget_loss(self, params, x, y, key):
    """The diffusion loss of the forget class, conditioned on its label."""
    return diffusion.diffusion_loss(self.eps_fn, params, self.schedule, x, y, key)

  def retain_loss(self, params, x, y, key):
    """The training loss (with label dropout) on retain images."""
    return diffusion.diffusion_loss(
        self.eps_fn, params, self.schedule, x, y, key,
        label_drop=self.label_drop, null_label=self.null_label)


def _retain_grads(problem, params, key, retain_x, retain_y, batch_size):
  batch_key, loss_key = jax.random.split(key)
  x, y = training.sample_batch(batch_key, (retain_x, retain_y), batch_size)
  return jax.grad(problem.retain_loss)(params, x, y, loss_key)


def _ieu(problem: GenProblem, hparams, key):
  """IEU (and GA, its ascent-only setting) on the diffusion loss of the forget class."""
  retain_scale = float(base.hp(hparams, "retain_scale", 0.0))
  batch_size = int(base.hp(hparams, "batch_size", 64))
  noise_key, data_key = jax.random.split(key)
  tx = ieu_method.make_transform(hparams, noise_key)
  clip = float(base.hp(hparams, "clip_norm", 0.0))

  def loss_and_update(params, opt_state, batch, step_key, retain_x, retain_y):
    f_key, r_key = jax.random.split(step_key)
    loss, grads = jax.value_and_grad(problem.forget_loss)(params, *batch, f_key)
    extra = {}
    if retain_scale:
      extra["retain_grads"] = _retain_grads(problem, params, r_key, retain_x, retain_y, batch_size)
    if clip:
      grads = _clip(grads, clip)
      if extra:
        extra["retain_grads"] = _clip(extra["retain_grads"], clip)
    updates, opt_state = tx.update(grads, opt_state, params, **extra)
    return optax.apply_updates(params, updates), opt_state, loss

  return _fit(problem, hparams, tx, loss_and_update, data_key, problem.forget,
              aux=(problem.retain.x, problem.retain.y))


@jax.jit
def _tree_distance(a, b) -> jax.Array:
  """``||a - b||`` over whole pytrees, one compiled program (not one per leaf)."""
  return optax.tree.norm(jax.tree.map(lambda x, y: x - y, a, b))


def _clip(tree, max_norm):
  norm = optax.tree.norm(tree)
  return jax.tree.map(lambda g: g * jnp.minimum(1.0, max_norm / (norm + 1e-12)), tree)


def _fit(problem, hparams, tx, loss_and_update, key, data, aux=()):
  step = training.make_indexed_step(loss_and_update)
  params, _ = training.fit(
      problem.original, tx.init(problem.original), step, (data.x, data.y),
      epochs=int(base.hp(hparams, "epochs")), batch_size=int(base.hp(hparams, "batch_size", 64)),
      key=key, name=str(hparams.get("name", "unlearn")), aux=aux)
  return params


def _ft(problem: GenProblem, hparams, key):
  """FT: keep training on the retain set only (Adam), hoping the class fades."""
  tx = optax.adam(float(base.hp(hparams, "learning_rate")))

  def loss_and_update(params, opt_state, batch, step_key):
    loss, grads = jax.value_and_grad(problem.retain_loss)(params, *batch, step_key)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return _fit(problem, hparams, tx, loss_and_update, key, problem.retain)


def saliency_mask(problem: GenProblem, key, fraction: float, batch_size: int = 256):
  """SalUn's weight saliency: 1 on the top ``fraction`` of ``|grad forget loss|``, globally.

  The gradient is taken at the original weights on up to ``batch_size`` forget
  images (one draw of timesteps and noise from ``key``).
  """

  @jax.jit  # one program; op by op, the UNet's backward pass compiles each op
  def mask(params, x, y, key):
    grads = jax.grad(problem.forget_loss)(params, x, y, key)
    flat = jnp.concatenate([jnp.abs(g).ravel() for g in jax.tree.leaves(grads)])
    threshold = jnp.quantile(flat, 1.0 - fraction)
    return jax.tree.map(lambda g: (jnp.abs(g) >= threshold).astype(g.dtype), grads)

  return mask(problem.original, problem.forget.x[:batch_size], problem.forget.y[:batch_size], key)


def _salun(problem: GenProblem, hparams, key):
  """SalUn-style: on forget images, condition on the forget label but match the
  original model's output for another (random retained) label; plus the
  training loss on retain batches; gradients masked by weight saliency."""
  batch_size = int(base.hp(hparams, "batch_size", 64))
  retain_scale = float(base.hp(hparams, "retain_scale", 1.0))
  mask_key, data_key = jax.random.split(key)
  fraction = float(base.hp(hparams, "mask_fraction", 0.5))
  mask = saliency_mask(problem, mask_key, fraction) if fraction < 1.0 else None
  tx = optax.adam(float(base.hp(hparams, "learning_rate")))
  others = jnp.asarray(problem.retained_classes, jnp.int32)

  def loss_and_update(params, opt_state, batch, step_key, retain_x, retain_y, original, mask):
    x0, y = batch
    n_key, c_key, r_key = jax.random.split(step_key, 3)
    x_t, t, _ = diffusion.noisy_batch(problem.schedule, x0, n_key)
    other = others[jax.random.randint(c_key, y.shape, 0, others.shape[0])]
    target = jax.lax.stop_gradient(problem.eps_fn(original, x_t, t, other))

    def loss_fn(p):
      forget = diffusion.eps_loss(problem.eps_fn, p, x_t, t, y, target)
      retain = 0.0
      if retain_scale:
        rx, ry = training.sample_batch(r_key, (retain_x, retain_y), batch_size)
        retain = problem.retain_loss(p, rx, ry, jax.random.fold_in(r_key, 1))
      return forget + retain_scale * retain, forget

    (_, forget), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    if mask is not None:
      grads = jax.tree.map(lambda g, m: g * m, grads, mask)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, forget

  return _fit(problem, hparams, tx, loss_and_update, data_key, problem.forget,
              aux=(problem.retain.x, problem.retain.y, problem.original, mask))


METHODS: dict[str, Callable[[GenProblem, Mapping[str, Any], jax.Array], Any]] = {
    "FT": _ft,
    "GA": _ieu,  # IEU's ascent alone: configured with no decay, noise or retain term
    "SalUn": _salun,
    "IEU": _ieu,
}
"""Generative unlearning methods; Retrain is the cached reference, not listed."""


def get_method(name: str):
  """The generative method called ``name``; the error names the known ones."""
  if name not in METHODS:
    raise ValueError(f"unknown generative method {name!r}: known are {sorted(METHODS)}.")
  return METHODS[name]


# ----------------------------------------------------------------------------
# Metrics.


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


@dataclasses.dataclass(frozen=True)
class GenRelearnProtocol:
  """How the attacker relearns the forget class, and when it counts as relearned.

  Attributes:
    optimizer: ``"adam"`` or ``"sgd"``.
    learning_rate: the attacker's learning rate.
    batch_size: images per step (capped at the relearn set's size).
    max_steps: the budget ``T_max``.
    eval_every: generate and classify every this many steps.
    eval_samples: forget-class samples per evaluation.
    num_trajectories: ``K`` data orders.
    threshold: the forget-class rate (percent) that counts as relearned.
  """

  optimizer: str = "adam"
  learning_rate: float = 1e-3
  batch_size: int = 32
  max_steps: int = 200
  eval_every: int = 10
  eval_samples: int = 64
  num_trajectories: int = 2
  threshold: float = 50.0

  def __post_init__(self):
    if self.optimizer not in ("adam", "sgd"):
      raise ValueError(f"optimizer={self.optimizer!r}: expected 'adam' or 'sgd'.")
    if self.max_steps % self.eval_every:
      raise ValueError(f"max_steps={self.max_steps} is not a multiple of eval_every={self.eval_every}.")

  def make_optimizer(self):
    if self.optimizer == "adam":
      return optax.adam(self.learning_rate)
    return optax.sgd(self.learning_rate, momentum=0.9)


def make_relearn_step(problem: GenProblem, protocol: GenRelearnProtocol):
  """``(tx, step)``: ``step(params, opt_state, x, y, idx, key)`` is one jitted relearning step."""
  tx = protocol.make_optimizer()

  @jax.jit
  def step(params, opt_state, x, y, idx, key):
    loss, grads = jax.value_and_grad(problem.retain_loss)(params, x[idx], y[idx], key)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return tx, step


def relearn_generator(
    params,
    problem: GenProblem,
    relearn_data: tuple[jax.Array, jax.Array],
    protocol: GenRelearnProtocol,
    key: jax.Array,
    rate_fn: Callable[[Any], jax.Array],
    *,
    reference_params=None,
    relearn_step=None,
) -> _rcd.RelearnResult:
  """Relearns the forget class ``K`` times from ``params``; a :class:`RelearnResult`.

  Args:
    params: the generator to relearn from.
    problem: supplies the loss (the training loss, label dropout included).
    relearn_data: the attacker's ``(x, y)`` forget-class images.
    protocol: the :class:`GenRelearnProtocol`.
    key: trajectory ``k`` draws its data order and loss noise from
      ``fold_in(key, k)``.
    rate_fn: ``rate_fn(params) -> percent`` of forget-class samples classified
      as the forget class (fixed sampling noise inside, so it depends on the
      params only).
    reference_params: weights to measure ``||theta_t - reference||`` to.
    relearn_step: a :func:`make_relearn_step` result to reuse across models
      (one compilation); built when None.

  Returns:
    A :class:`ieu_jax.RelearnResult` whose ``accuracy`` is the forget-class rate
    and ``loss`` the mean relearning loss of the steps since the last
    evaluation, so :func:`ieu_jax.rcd_summary` applies unchanged.
  """
  x, y = relearn_data
  tx, step = relearn_step or make_relearn_step(problem, protocol)

  def distance(p):
    if reference_params is None:
      return math.nan
    return float(_tree_distance(p, reference_params))

  steps = np.arange(0, protocol.max_steps + 1, protocol.eval_every)
  first_rate, first_dist = float(rate_fn(params)), distance(params)
  rates, losses, dists = [], [], []
  for k in range(protocol.num_trajectories):
    tkey = jax.random.fold_in(key, k)
    order = _rcd.trajectory_batch_indices(tkey, x.shape[0], protocol.max_steps, protocol.batch_size)
    p, s = training.fresh_copy((params, tx.init(params)))
    r, l, d, window = [first_rate], [math.nan], [first_dist], []
    for i in range(protocol.max_steps):
      p, s, loss = step(p, s, x, y, order[i], jax.random.fold_in(tkey, i + 1))
      window.append(loss)
      if (i + 1) % protocol.eval_every == 0:
        r.append(float(rate_fn(p)))
        l.append(float(jnp.mean(jnp.stack(window))))
        d.append(distance(p))
        window = []
        if r[-1] >= protocol.threshold:
          break  # relearned: the rest of the curve is not needed
    pad = len(steps) - len(r)
    rates.append(r + [r[-1]] * pad)  # a finished run stays at its last value
    losses.append(l + [l[-1]] * pad)
    dists.append(d + [d[-1]] * pad)
  rates, losses, dists = map(np.asarray, (rates, losses, dists))
  hit = rates >= protocol.threshold
  censored = ~hit.any(axis=1)
  first = np.where(censored, -1, steps[np.argmax(hit, axis=1)])
  return _rcd.RelearnResult(
      first_hit=first.astype(np.int64), censored=censored,
      learning_rate=np.full(protocol.num_trajectories, protocol.learning_rate),
      steps=steps, accuracy=rates, loss=losses, distance=dists)


# ----------------------------------------------------------------------------
# The experiment.


def _fingerprint(config: ml_collections.ConfigDict, what: str, *parts: str) -> str:
  blob = {p: (config[p].to_dict() if hasattr(config[p], "to_dict") else config[p]) for p in parts}
  blob.update(seed=config.seed, what=what)
  return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _cached(workdir, name, fingerprint, like, train):
  """Restores ``workdir/checkpoints/name-fingerprint`` (time None) or trains and saves it."""
  path = os.path.join(workdir, "checkpoints", f"{name}-{fingerprint}")
  if checkpoints.exists(path):
    logging.info("phase %s: restoring %s", name, path)
    return checkpoints.restore_params(path, like), None  # no training time: restored
  logging.info("phase %s: training", name)
  start = time.perf_counter()
  params = jax.block_until_ready(train())
  elapsed = time.perf_counter() - start
  if jax.process_index() == 0:
    checkpoints.save_params(path, params)
  return params, elapsed


def _load(config):
  d = config.data
  splits = data_lib.load_dataset(
      d.name, data_dir=d.get("data_dir"), val_size=0, seed=int(config.seed),
      max_train=d.get("max_train"), max_test=d.get("max_test"))
  num_classes = splits.train.num_classes
  classes = tuple(int(c) for c in (d.get("classes") or range(num_classes)))

  def subset(ds):
    keep = np.flatnonzero(np.isin(np.asarray(ds.y), classes))
    ds = ds.take(keep)
    return data_lib.Dataset(x=prepare_images(ds.x, int(d.image_size)), y=ds.y,
                            num_classes=num_classes)

  return subset(splits.train), subset(splits.test), classes, num_classes


def _protocol(config, threshold) -> GenRelearnProtocol:
  r = config.rcd
  return GenRelearnProtocol(
      optimizer=r.optimizer, learning_rate=float(r.learning_rate), batch_size=int(r.batch_size),
      max_steps=int(r.max_steps), eval_every=int(r.eval_every),
      eval_samples=int(r.eval_samples), num_trajectories=int(r.num_trajectories),
      threshold=float(threshold))


def _markdown(results) -> str:
  c = results["forget_class"]
  lines = [
      f"# Generative unlearning: {results['config']['data']['name']}, forget class {c}"
      f" ({results['class_names'].get(str(c), c)})",
      "",
      "Forget rate: percent of samples generated for the forget class that the classifier"
      " assigns to it (lower is better). Retain rate: the same, averaged over the retained"
      " classes (higher is better). FD: Frechet distance between generated and real"
      " retained-class images in the classifier's penultimate features (lower is better)."
      f" RCD: relearning steps until the forget rate reaches {_io.fmt(results['rcd_threshold'])}%"
      f" (tested every {results['rcd_protocol']['eval_every']} steps; mean ± std over"
      " uncensored trajectories, censored share), normalised by Retrain's.",
      "",
      "| model | forget rate | retain rate | FD | RCD steps | censored | RCD norm. | time (s) | flags |",
      "|---|---|---|---|---|---|---|---|---|",
  ]
  for m in results["models"]:
    r = m["rcd"]
    lines.append(
        f"| {m['name']} | {_io.fmt(m['forget_rate'])} | {_io.fmt(m['retain_rate'])} | {_io.fmt(m['fd'], 2)}"
        f" | {_io.fmt(r['steps_mean'])} ± {_io.fmt(r['steps_std'])} | {_io.fmt(100 * r['censored_frac'], 0)}%"
        f" | {_io.fmt(r['normalized'], 2)}"
        f" | {'restored' if m['runtime_s'] is None else _io.fmt(m['runtime_s'])} | {', '.join(m['flags'])} |")
  lines += [
      "",
      f"Evaluation classifier: test accuracy {_io.fmt(results['classifier_test_accuracy'])}% on"
      f" {results['sizes']['test']} test images of the classes used. FD of real test vs real"
      f" train images (the noise floor at this sample size): {_io.fmt(results['fd_real_floor'], 2)}.",
      f"Samples: {results['eval']['samples_per_class']} per class, DDIM"
      f" {results['eval']['sample_steps']} steps, guidance {results['eval']['guidance_scale']}.",
      f"Wall time: {_io.fmt(results['wall_time_s'])} s on {results['devices']}.",
  ]
  return "\n".join(lines) + "\n"


def _plot_grid(path, grids: dict[str, np.ndarray], classes, forget_class) -> None:
  """One panel per model: a row of samples per class, the forget class marked."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  n = len(grids)
  fig, axes = plt.subplots(1, n, figsize=(2.2 * n + 0.5, 0.3 * len(classes) + 1.2), squeeze=False)
  for ax, (name, grid) in zip(axes[0], grids.items()):
    rows = [np.concatenate(list(row), axis=1) for row in grid]  # (C, k, H, W) -> rows
    image = np.concatenate(rows, axis=0)
    ax.imshow((image + 1.0) / 2.0, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    h = grid.shape[2]
    ax.set_yticks([h * (i + 0.5) for i in range(len(classes))])
    ax.set_yticklabels([f"{c}{' (forget)' if c == forget_class else ''}" for c in classes],
                       fontsize=7)
    ax.set_xticks([])
    ax.set_title(name, fontsize=9)
  fig.tight_layout()
  tmp = path + ".tmp.png"
  fig.savefig(tmp, dpi=120, bbox_inches="tight")
  plt.close(fig)
  os.replace(tmp, path)


FASHION_MNIST_CLASSES = ("T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Boot")


@dataclasses.dataclass(frozen=True)
class GenSetup:
  """The trained models and the evaluation machinery every generative run shares.

  Attributes:
    config: the experiment config.
    root: the run's root key.
    train: training images of the classes used (``[-1, 1]``).
    test: test images of the classes used.
    classes: the classes used.
    split: the class forget split of ``train``.
    problem: the :class:`GenProblem` handed to the methods.
    retrained: the retrained reference generator.
    classifier: the evaluation classifier's params.
    classifier_test_accuracy: its test accuracy (percent).
    fd_floor: FD between real test and real train images (same sample size).
    training_time_s: seconds to train the classifier and both DDPMs (None: restored).
    generate: ``generate(params, labels, key)`` -> guided DDIM samples.
    predict: ``predict(classifier, x)`` -> class predictions.
    evaluate: ``evaluate(params, key)`` -> (metrics row, sample grid).
    sample_key: the key of the reported evaluation's sampling noise.
  """

  config: ml_collections.ConfigDict
  root: jax.Array
  train: data_lib.Dataset
  test: data_lib.Dataset
  classes: tuple[int, ...]
  split: data_lib.ForgetSplit
  problem: GenProblem
  retrained: Any
  classifier: Any
  classifier_test_accuracy: float
  fd_floor: float
  training_time_s: dict[str, float | None]
  generate: Callable[..., jax.Array]
  predict: Callable[..., jax.Array]
  evaluate: Callable[..., tuple[dict[str, Any], np.ndarray]]
  sample_key: jax.Array

  @property
  def original(self):
    return self.problem.original


def _method_names(config) -> list[str]:
  names = [n.strip() for n in str(config.methods).split(",") if n.strip() and n.strip() != "Retrain"]
  for n in names:
    get_method(n)
    if n not in config.method:
      raise ValueError(f"method {n!r} has no hyperparameters in config.method.")
  return names


def prepare_generative(config: ml_collections.ConfigDict, workdir: str) -> GenSetup:
  """Loads the data and trains (or restores from ``workdir``) the classifier and both DDPMs."""
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
  root = jax.random.key(int(config.seed))

  # --- data
  train, test, classes, num_classes = _load(config)
  forget_class = int(config.forget_class)
  if forget_class not in classes:
    raise ValueError(f"forget_class={forget_class} is not among the classes used {classes}.")
  retained = tuple(c for c in classes if c != forget_class)
  fs = data_lib.select_forget(train, mode="class", forget_class=forget_class, seed=int(config.seed))
  image_shape = tuple(train.x.shape[1:])
  null_label = num_classes
  logging.info("data: %d train (%d forget), %d test, classes %s, images %s",
               len(train), len(fs.forget), len(test), classes, image_shape)

  # --- classifier
  c_init, c_logits, c_features = classifier_fns(
      num_classes, image_shape, features=tuple(config.classifier.features),
      hidden=int(config.classifier.hidden))
  c_key = jax.random.fold_in(root, _KEY_CLASSIFIER)
  c_hparams = config.classifier.to_dict()
  classifier, t_classifier = _cached(
      workdir, "classifier", _fingerprint(config, "classifier", "data", "classifier"),
      jax.eval_shape(c_init, c_key),
      lambda: retrain_lib.train_model(c_init, c_logits, train, c_hparams, c_key, "classifier"))
  predict = jax.jit(lambda p, x: jnp.argmax(c_logits(p, x), -1))
  features = jax.jit(c_features)
  test_acc = float(100.0 * np.mean(np.asarray(predict(classifier, test.x)) == np.asarray(test.y)))
  logging.info("classifier: test accuracy %.2f%%", test_acc)

  # --- generators
  u_init, eps_fn = unet_lib.build_unet(
      num_classes, image_shape, channels=tuple(config.unet.channels),
      num_res_blocks=int(config.unet.num_res_blocks), emb_dim=int(config.unet.emb_dim))
  dc = config.diffusion
  schedule = diffusion.linear_schedule(
      int(dc.num_steps), float(dc.beta_start), float(dc.beta_end))
  label_drop = float(dc.label_drop)
  like = jax.eval_shape(u_init, root)
  init_jit = jax.jit(u_init)  # one program; op by op, Flax's init compiles every op
  parts = ("data", "unet", "diffusion", "train")

  tx_and_step = []  # built on first use: nothing to compile when both are cached

  def train_gen(data, stream, name):
    key = jax.random.fold_in(root, stream)
    init_key, fit_key = jax.random.split(key)

    def fn():
      if not tx_and_step:
        tx_and_step.extend(make_ddpm_step(eps_fn, schedule, config.train.to_dict(),
                                          null_label=null_label, label_drop=label_drop))
      return train_ddpm(init_jit(init_key), eps_fn, schedule, data, config.train.to_dict(),
                        fit_key, null_label=null_label, label_drop=label_drop, name=name,
                        tx_and_step=tuple(tx_and_step))
    return fn

  original, t_orig = _cached(workdir, "ddpm-original", _fingerprint(config, "original", *parts),
                             like, train_gen(train, _KEY_ORIGINAL, "ddpm-original"))
  retrained, t_retrain = _cached(
      workdir, "ddpm-retrain", _fingerprint(config, f"retrain-{forget_class}", *parts),
      like, train_gen(fs.retain, _KEY_RETRAIN, "ddpm-retrain"))

  problem = GenProblem(
      eps_fn=eps_fn, schedule=schedule, original=original, forget=fs.forget, retain=fs.retain,
      forget_class=forget_class, retained_classes=retained, null_label=null_label,
      label_drop=label_drop)

  # --- evaluation machinery: fixed sampling noise for every model
  ev = config.eval
  sample_kw = dict(num_steps=int(ev.sample_steps), guidance_scale=float(ev.guidance_scale),
                   null_label=null_label, clip_x0=1.0)
  sample_key = jax.random.fold_in(root, _KEY_SAMPLES)
  per_class = int(ev.samples_per_class)
  eval_labels = jnp.repeat(jnp.asarray(classes, jnp.int32), per_class)
  sampler = jax.jit(lambda p, k, y: diffusion.ddim_sample(
      eps_fn, p, schedule, k, y, image_shape, **sample_kw))
  chunk = int(ev.batch_size)

  def generate(params, labels, key):
    out = []
    for i, start in enumerate(range(0, labels.shape[0], chunk)):
      y = labels[start:start + chunk]
      pad = chunk - y.shape[0]
      y_full = jnp.concatenate([y, jnp.full((pad,), y[0], y.dtype)]) if pad else y
      out.append(sampler(params, jax.random.fold_in(key, i), y_full)[:y.shape[0]])
    return jnp.concatenate(out)

  real_mask = np.isin(np.asarray(test.y), retained)
  real_feats = np.asarray(features(classifier, test.x[np.flatnonzero(real_mask)]))
  train_mask = np.flatnonzero(np.isin(np.asarray(train.y), retained))[: real_feats.shape[0]]
  fd_floor = frechet_distance(real_feats, np.asarray(features(classifier, train.x[train_mask])))

  def evaluate(params, key=sample_key):
    samples = generate(params, eval_labels, key)
    pred = np.asarray(predict(classifier, samples))
    rates = class_rates(pred, np.asarray(eval_labels), classes)
    keep = np.flatnonzero(np.isin(np.asarray(eval_labels), retained))
    fd = frechet_distance(np.asarray(features(classifier, samples[keep])), real_feats)
    grid = np.asarray(samples).reshape(len(classes), per_class, *image_shape)[
        :, : int(ev.grid_per_class), ..., 0]
    return {"forget_rate": rates[forget_class],
            "retain_rate": float(np.mean([rates[c] for c in retained])),
            "class_rates": rates, "fd": fd}, grid


  return GenSetup(
      config=config, root=root, train=train, test=test, classes=classes, split=fs,
      problem=problem, retrained=retrained, classifier=classifier,
      classifier_test_accuracy=test_acc, fd_floor=fd_floor,
      training_time_s={"classifier": t_classifier, "original": t_orig, "retrain": t_retrain},
      generate=generate, predict=predict, evaluate=evaluate, sample_key=sample_key)


def run_generative(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs the generative unlearning experiment and writes its outputs to ``workdir``.

  Args:
    config: see ``experiments/configs/ddpm_fashion_mnist.py``.
    workdir: output directory (created if needed); only process 0 writes.

  Returns:
    The results dictionary, also written to ``workdir/results.json``.
  """
  wall_start = time.perf_counter()
  writer = jax.process_index() == 0
  names = _method_names(config)
  setup = prepare_generative(config, workdir)
  root, classes, fs, problem = setup.root, setup.classes, setup.split, setup.problem
  original, retrained, forget_class = setup.original, setup.retrained, problem.forget_class
  generate, evaluate, predict = setup.generate, setup.evaluate, setup.predict
  classifier, ev = setup.classifier, config.eval
  t_orig, t_retrain = setup.training_time_s["original"], setup.training_time_s["retrain"]
  sample_key = setup.sample_key

  r = config.rcd
  rcd_labels = jnp.full((int(r.eval_samples),), forget_class, jnp.int32)
  rcd_noise_key = jax.random.fold_in(sample_key, 1)

  def forget_rate(params):
    samples = generate(params, rcd_labels, rcd_noise_key)
    return 100.0 * np.mean(np.asarray(predict(classifier, samples)) == forget_class)

  m = min(int(r.relearn_size), len(fs.forget))
  relearn_idx = np.sort(np.random.default_rng([int(config.seed), 17]).choice(
      len(fs.forget), m, replace=False))
  relearn_set = fs.forget.take(relearn_idx)
  orig_forget_rate = float(forget_rate(original))
  threshold = float(r.threshold_fraction) * orig_forget_rate
  protocol = _protocol(config, threshold)
  rcd_key = jax.random.fold_in(root, _KEY_RCD)
  relearn_step = make_relearn_step(problem, protocol)

  # --- models
  rows, grids, reference = [], {}, None
  model_list = [("Original", None), ("Retrain", None)] + [(n, n) for n in names]
  for i, (name, method) in enumerate(model_list):
    logging.info("phase model: %s (%d/%d)", name, i + 1, len(model_list))
    if method is None:
      params = original if name == "Original" else retrained
      runtime = t_orig if name == "Original" else t_retrain
    else:
      hparams = dict(config.method[name].to_dict(), name=name)
      start = time.perf_counter()
      params = jax.block_until_ready(get_method(method)(
          problem, hparams, jax.random.fold_in(jax.random.fold_in(root, _KEY_METHODS), i)))
      runtime = time.perf_counter() - start
    row, grid = evaluate(params)
    grids[name] = grid
    start = time.perf_counter()
    if name == "Original":
      summary = _rcd.RCDSummary(0.0, 0.0, 0.0, math.nan)  # meets the criterion by definition
      curve = None
    else:
      curve = relearn_generator(params, problem, (relearn_set.x, relearn_set.y), protocol,
                                rcd_key, forget_rate, reference_params=original,
                                relearn_step=relearn_step)
      if name == "Retrain":
        reference = curve
      summary = _rcd.rcd_summary(curve, reference)
    logging.info("%s: RCD in %.1fs: %s", name, time.perf_counter() - start, summary)
    row.update(name=name, runtime_s=runtime, rcd=summary._asdict(),
               rcd_curves=None if curve is None else curve.accuracy)
    rows.append(row)
    logging.info("%s: forget %.1f%%, retain %.1f%%, FD %.2f", name, row["forget_rate"],
                 row["retain_rate"], row["fd"])

  retrain_row = rows[1]
  ref_steps = retrain_row["rcd"]["steps_mean"]
  if math.isfinite(ref_steps) and ref_steps > 0:
    rows[0]["rcd"]["normalized"] = 0.0  # the original relearns in 0 steps
  for row in rows:
    flags = []
    if row["retain_rate"] < retrain_row["retain_rate"] - float(ev.collapse_margin):
      flags.append("retain rate far below Retrain's")
    if row["rcd"]["censored_frac"] > 0:
      flags.append("censored relearning")
    row["flags"] = flags

  results = {
      "config": config.to_dict(),
      "forget_class": forget_class,
      "classes": list(classes),
      "class_names": ({str(c): FASHION_MNIST_CLASSES[c] for c in classes}
                      if config.data.name == "fashion_mnist" else {}),
      "sizes": {"train": len(setup.train), "forget": len(fs.forget), "retain": len(fs.retain),
                "test": len(setup.test), "relearn": m},
      "classifier_test_accuracy": setup.classifier_test_accuracy,
      "fd_real_floor": setup.fd_floor,
      "training_time_s": setup.training_time_s,
      "rcd_threshold": threshold,
      "rcd_protocol": dataclasses.asdict(protocol),
      "eval": {"samples_per_class": int(ev.samples_per_class), "sample_steps": int(ev.sample_steps),
               "guidance_scale": float(ev.guidance_scale)},
      "models": rows,
      "devices": f"{jax.device_count()} {jax.default_backend()} device(s)",
  }
  results["wall_time_s"] = time.perf_counter() - wall_start
  results = _io.json_safe(results)
  if writer:
    _io.write_atomic(os.path.join(workdir, "results.json"), json.dumps(results, indent=2))
    _io.write_atomic(os.path.join(workdir, "results.md"), _markdown(results))
    _plot_grid(os.path.join(workdir, "samples.png"), grids, classes, forget_class)
    logging.info("wrote results.json, results.md, samples.png to %s", workdir)
  return results


def _gap(row, reference) -> float:
  """Mean absolute difference of the forget and retain rates from the reference's."""
  return 0.5 * (abs(row["forget_rate"] - reference["forget_rate"])
                + abs(row["retain_rate"] - reference["retain_rate"]))


def search_generative(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Chooses each method's hyperparameters from ``config.search``; writes ``search.json``/``.md``.

  ``config.search[name]`` is a list of overrides of ``config.method[name]``.
  Every candidate unlearns from the original (its key from a stream of its
  own), and is scored by its gap to Retrain: the mean absolute difference of
  the forget and the retain rates. The rates are measured on samples drawn
  from a different noise than the one :func:`run_generative` reports on, so
  the reported numbers are not those the choice was made on. RCD plays no part
  in the choice. A candidate that diverges is recorded and skipped.

  Returns:
    ``{"reference": Retrain's row, "methods": {name: {"candidates": [...],
    "chosen": hparams}}}``, also written to ``workdir/search.json``.
  """
  wall_start = time.perf_counter()
  names = _method_names(config)
  missing = [n for n in names if n not in config.get("search", {})]
  if missing:
    raise ValueError(f"config.search has no candidates for {missing}.")
  setup = prepare_generative(config, workdir)
  key = jax.random.fold_in(setup.root, _KEY_SEARCH_SAMPLES)
  reference, _ = setup.evaluate(setup.retrained, key)
  logging.info("search: Retrain forget %.1f%%, retain %.1f%%", reference["forget_rate"],
               reference["retain_rate"])
  out = {"reference": {k: reference[k] for k in ("forget_rate", "retain_rate", "fd")},
         "methods": {}}
  for m, name in enumerate(names):
    candidates = []
    for j, override in enumerate(config.search[name]):
      override = dict(override.to_dict() if hasattr(override, "to_dict") else override)
      hparams = dict(config.method[name].to_dict(), **override, name=f"{name}#{j}")
      method_key = jax.random.fold_in(jax.random.fold_in(setup.root, _KEY_SEARCH), 1000 * m + j)
      start = time.perf_counter()
      try:
        params = jax.block_until_ready(get_method(name)(setup.problem, hparams, method_key))
      except training.NonFiniteError as e:
        logging.warning("search: %s candidate %d diverged: %s", name, j, e)
        candidates.append({"override": override, "failed": str(e)})
        continue
      row, _ = setup.evaluate(params, key)
      entry = {"override": override, "forget_rate": row["forget_rate"],
               "retain_rate": row["retain_rate"], "fd": row["fd"], "gap": _gap(row, reference),
               "runtime_s": time.perf_counter() - start}
      logging.info("search: %s %s -> forget %.1f%%, retain %.1f%%, gap %.2f", name, override,
                   entry["forget_rate"], entry["retain_rate"], entry["gap"])
      candidates.append(entry)
    scored = [c for c in candidates if "gap" in c]
    best = min(scored, key=lambda c: c["gap"]) if scored else None
    out["methods"][name] = {
        "candidates": candidates,
        "chosen_index": None if best is None else candidates.index(best),
        "chosen": None if best is None else dict(config.method[name].to_dict(), **best["override"]),
    }
  out["wall_time_s"] = time.perf_counter() - wall_start
  out = _io.json_safe(out)
  if jax.process_index() == 0:
    _io.write_atomic(os.path.join(workdir, "search.json"), json.dumps(out, indent=2))
    _io.write_atomic(os.path.join(workdir, "search.md"), _search_markdown(out))
    logging.info("wrote search.json, search.md to %s", workdir)
  return out


def _search_markdown(out) -> str:
  ref = out["reference"]
  lines = [
      "# Generative hyperparameter search",
      "",
      f"Score: the gap to Retrain (forget rate {_io.fmt(ref['forget_rate'])}%, retain rate"
      f" {_io.fmt(ref['retain_rate'])}%), the mean absolute difference of the two rates,"
      " on samples drawn from the search's own noise. The chosen candidate is marked.",
      "",
      "| method | override | forget rate | retain rate | FD | gap | time (s) |",
      "|---|---|---|---|---|---|---|",
  ]
  for name, res in out["methods"].items():
    for i, c in enumerate(res["candidates"]):
      mark = " **(chosen)**" if i == res["chosen_index"] else ""
      if "failed" in c:
        lines.append(f"| {name} | {c['override']} | diverged | | | | |")
        continue
      lines.append(
          f"| {name} | {c['override']}{mark} | {_io.fmt(c['forget_rate'])} |"
          f" {_io.fmt(c['retain_rate'])} | {_io.fmt(c['fd'], 2)} | {_io.fmt(c['gap'], 2)} |"
          f" {_io.fmt(c['runtime_s'])} |")
  return "\n".join(lines) + "\n"


_SEED_FIELDS = ("forget_rate", "retain_rate", "fd", "runtime_s")


def run_seeds(config: ml_collections.ConfigDict, workdir: str, seeds) -> dict[str, Any]:
  """:func:`run_generative` once per seed, then mean ± std over the seeds.

  Seed ``s`` runs in ``workdir/seed<s>`` with ``config.seed = s`` (so its
  models, data order and sampling noise are its own); a finished run of
  exactly that config is reused. Writes ``workdir/summary.json`` and
  ``workdir/summary.md``.

  Returns:
    ``{"seeds": [...], "models": {name: {"n", field: (mean, std), ...,
    "flagged": seeds with a flag}}}``.
  """
  seeds = [int(s) for s in seeds]
  if not seeds or len(set(seeds)) != len(seeds):
    raise ValueError(f"seeds={seeds}: give at least one seed, each once.")
  runs = []
  for seed in seeds:
    cell = copy.deepcopy(config)
    with cell.unlocked():
      cell.seed = seed
    run_dir = os.path.join(workdir, f"seed{seed}")
    done = protocol_lib.finished_run(run_dir, cell)
    if done is not None:
      logging.info("seeds: reusing %s/results.json", run_dir)
    runs.append(done if done is not None else run_generative(cell, run_dir))
  agg = protocol_lib.aggregate(runs, fields=_SEED_FIELDS, rows="models")
  for name, row in agg.items():
    row["flagged"] = sum(
        1 for run in runs for m in run["models"] if m["name"] == name and m["flags"])
  out = _io.json_safe({"seeds": seeds, "forget_class": runs[0]["forget_class"], "models": agg})
  if jax.process_index() == 0:
    _io.write_atomic(os.path.join(workdir, "summary.json"), json.dumps(out, indent=2))
    _io.write_atomic(os.path.join(workdir, "summary.md"), _seeds_markdown(out))
  return out


def _seeds_markdown(out) -> str:
  def ms(pair, digits=1):
    mean, std = pair
    return f"{_io.fmt(mean, digits)} ± {_io.fmt(std, digits)}"

  lines = [
      f"# Generative unlearning over seeds {out['seeds']}, forget class {out['forget_class']}",
      "",
      "Mean ± std over seeds (each seed trains its own models). RCD norm.: relearning steps"
      " normalised by the same seed's Retrain. Flagged: seeds whose retain rate fell far"
      " below Retrain's.",
      "",
      "| model | seeds | forget rate | retain rate | FD | RCD steps | RCD norm. | flagged |",
      "|---|---|---|---|---|---|---|---|",
  ]
  for name, row in out["models"].items():
    lines.append(
        f"| {name} | {row['n']} | {ms(row['forget_rate'])} | {ms(row['retain_rate'])} |"
        f" {ms(row['fd'], 2)} | {ms(row['rcd_steps_mean'])} | {ms(row['rcd_normalized'], 2)} |"
        f" {row['flagged']} |")
  return "\n".join(lines) + "\n"
