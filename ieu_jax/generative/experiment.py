"""Unlearning a class from a class-conditional diffusion model, end to end.

What ``experiments.generative`` runs (:func:`run_generative`), on the skeleton of
:mod:`ieu_jax.pipeline` (cached models, outputs, method names, attacker subset,
flags) and the one RCD engine:

1. data: Fashion-MNIST (or any :func:`ieu_jax.data.load_dataset` source),
   optionally restricted to some classes, resized to ``image_size`` and scaled
   to ``[-1, 1]``;
2. classifier: a :class:`ieu_jax.models.SmallCNN` trained on the same images,
   used only to evaluate generated samples (its class predictions, and its
   penultimate layer as the feature space of the Frechet distance);
3. original: a class-conditional DDPM (:mod:`ieu_jax.generative.unet`, epsilon
   loss with label dropout for classifier-free guidance) trained on every class;
4. retrain: the same DDPM trained without the forget class (the reference);
5. methods: each unlearns the forget class from the original weights
   (:data:`ieu_jax.generative.methods.METHODS`);
6. evaluation per model: the share of samples generated for the forget class
   that the classifier assigns to it (lower is better), the same share for the
   retained classes (should stay high), the Frechet distance between generated
   and real retained-class images in classifier features, and generator RCD
   (:mod:`ieu_jax.generative.evaluation`), normalised by the retrained model's;
7. outputs: ``results.json``, ``results.md``, ``samples.png`` (a grid of
   samples per class for every model).

Trained models (classifier, original, retrain) are cached in
``workdir/checkpoints`` under a fingerprint of the configuration that made them.
:func:`prepare_generative` builds them and the evaluation machinery (a
:class:`GenSetup`); :func:`run_generative` and the hyperparameter search
:func:`search_generative` both start from it.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from ieu_jax import _rcd
from ieu_jax import attackers as attackers_lib
from ieu_jax import data as data_lib
from ieu_jax import outputs
from ieu_jax import pipeline
from ieu_jax import sections as sections_lib
from ieu_jax import training
from ieu_jax.generative import diffusion
from ieu_jax.generative import evaluation
from ieu_jax.generative import methods as methods_lib
from ieu_jax.generative import report
from ieu_jax.generative import sections as gen_sections
from ieu_jax.generative import unet as unet_lib
from ieu_jax.generative.ddpm import classifier_fns, make_ddpm_step, prepare_images, train_ddpm
from ieu_jax.methods import retrain as retrain_lib

__all__ = ["FASHION_MNIST_CLASSES", "GenSetup", "model_checkpoint", "prepare_generative",
           "run_generative", "run_seeds", "search_generative"]

# Where each phase's randomness comes from: fold_in(key(seed), stream).
_KEY_CLASSIFIER, _KEY_ORIGINAL, _KEY_RETRAIN, _KEY_METHODS = 1, 2, 3, 4
_KEY_RCD, _KEY_SAMPLES = 5, 6
_KEY_SEARCH, _KEY_SEARCH_SAMPLES = 7, 8

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
    problem: the :class:`ieu_jax.generative.methods.GenProblem` of the methods.
    retrained: the retrained reference generator.
    classifier: the evaluation classifier's params.
    classifier_logits: ``classifier_logits(classifier, x)``.
    classifier_test_accuracy: its test accuracy (percent).
    fd_floor: FD between real test and real train images (same sample size).
    training_time_s: seconds to train the classifier and both DDPMs.
    restored: which of them came from the cache.
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
  problem: methods_lib.GenProblem
  retrained: Any
  classifier: Any
  classifier_logits: Callable[..., jax.Array]
  classifier_test_accuracy: float
  fd_floor: float
  training_time_s: dict[str, float]
  restored: dict[str, bool]
  generate: Callable[..., jax.Array]
  predict: Callable[..., jax.Array]
  evaluate: Callable[..., tuple[dict[str, Any], np.ndarray]]
  sample_key: jax.Array

  @property
  def original(self):
    return self.problem.original

  def unlearn(self, name: str, values: Any, key: jax.Array):
    """Runs method ``name`` with hyperparameters ``values``; returns ``(params, seconds)``."""
    hp = methods_lib.hparams(name, values)
    start = time.perf_counter()
    params = jax.block_until_ready(
        methods_lib.get_method(name).unlearn(self.problem, hp, key, name=name))
    return params, time.perf_counter() - start


def _method_names(config) -> list[str]:
  """The configured methods (Original and Retrain are always evaluated)."""
  return pipeline.method_names(config, methods_lib.METHODS, always=("Retrain",))[1:]


def validate_config(config: ml_collections.ConfigDict) -> list[str]:
  """Checks the whole config before any work; returns the methods to run.

  Raises:
    ValueError, TypeError: naming the section, the key and the bad value.
  """
  sections_lib.check_run_keys(config)
  forget_class = config.get("forget_class")
  if isinstance(forget_class, bool) or not isinstance(forget_class, int) or forget_class < 0:
    raise ValueError(f"config.forget_class={forget_class!r} must be an integer >= 0.")
  sections = sections_lib.validate_sections(config, gen_sections.GENERATIVE_SECTIONS)
  attacker_protocols(sections["rcd"], threshold=50.0)  # the protocols' own checks
  names = _method_names(config)
  for name in names:
    methods_lib.hparams(name, config.method[name])
  return names


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


def prepare_generative(config: ml_collections.ConfigDict, workdir: str) -> GenSetup:
  """Checks the config, loads the data, trains (or restores) the classifier and both DDPMs."""
  validate_config(config)
  return _prepare_generative(config, workdir)


def _prepare_generative(config: ml_collections.ConfigDict, workdir: str) -> GenSetup:
  """:func:`prepare_generative` of a config already checked."""
  if outputs.is_writer():
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
  strict = bool(config.get("strict_checkpoints", False))  # a corrupt checkpoint raises
  classifier = pipeline.cached_train(
      workdir, "classifier", pipeline.fingerprint(config, "classifier", ("data", "classifier")),
      jax.eval_shape(c_init, c_key),
      lambda: retrain_lib.train_model(c_init, c_logits, train, c_hparams, c_key, "classifier"),
      strict=strict)
  predict = jax.jit(lambda p, x: jnp.argmax(c_logits(p, x), -1))
  features = jax.jit(c_features)
  test_acc = float(100.0 * np.mean(
      np.asarray(predict(classifier.params, test.x)) == np.asarray(test.y)))
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

  original = pipeline.cached_train(
      workdir, "ddpm-original", _ddpm_key(config, "original"), like,
      train_gen(train, _KEY_ORIGINAL, "ddpm-original"), strict=strict)
  retrained = pipeline.cached_train(
      workdir, "ddpm-retrain", _ddpm_key(config, "retrain"),
      like, train_gen(fs.retain, _KEY_RETRAIN, "ddpm-retrain"), strict=strict)

  problem = methods_lib.GenProblem(
      eps_fn=eps_fn, schedule=schedule, original=original.params, forget=fs.forget,
      retain=fs.retain, forget_class=forget_class, retained_classes=retained,
      null_label=null_label, label_drop=label_drop)

  # --- evaluation machinery: fixed sampling noise for every model
  ev = config.eval
  sample_key = jax.random.fold_in(root, _KEY_SAMPLES)
  per_class = int(ev.samples_per_class)
  eval_labels = jnp.repeat(jnp.asarray(classes, jnp.int32), per_class)
  sampler = jax.jit(lambda p, k, y: diffusion.ddim_sample(
      eps_fn, p, schedule, k, y, image_shape, num_steps=int(ev.sample_steps),
      guidance_scale=float(ev.guidance_scale), null_label=null_label, clip_x0=1.0))
  generate = evaluation.make_generate(sampler, int(ev.batch_size))

  real_mask = np.isin(np.asarray(test.y), retained)
  real_feats = np.asarray(features(classifier.params, test.x[np.flatnonzero(real_mask)]))
  train_mask = np.flatnonzero(np.isin(np.asarray(train.y), retained))[: real_feats.shape[0]]
  fd_floor = evaluation.frechet_distance(
      real_feats, np.asarray(features(classifier.params, train.x[train_mask])))

  def evaluate(params, key=sample_key):
    samples = generate(params, eval_labels, key)
    pred = np.asarray(predict(classifier.params, samples))
    rates = evaluation.class_rates(pred, np.asarray(eval_labels), classes)
    keep = np.flatnonzero(np.isin(np.asarray(eval_labels), retained))
    fd = evaluation.frechet_distance(
        np.asarray(features(classifier.params, samples[keep])), real_feats)
    grid = np.asarray(samples).reshape(len(classes), per_class, *image_shape)[
        :, : int(ev.grid_per_class), ..., 0]
    return {"forget_rate": rates[forget_class],
            "retain_rate": float(np.mean([rates[c] for c in retained])),
            "class_rates": rates, "fd": fd}, grid

  models = {"classifier": classifier, "original": original, "retrain": retrained}
  return GenSetup(
      config=config, root=root, train=train, test=test, classes=classes, split=fs,
      problem=problem, retrained=retrained.params, classifier=classifier.params,
      classifier_logits=c_logits, classifier_test_accuracy=test_acc, fd_floor=fd_floor,
      training_time_s={k: m.seconds for k, m in models.items()},
      restored={k: m.restored for k, m in models.items()},
      generate=generate, predict=predict, evaluate=evaluate, sample_key=sample_key)


def attacker_protocols(rcd, threshold: float) -> dict[str, _rcd.RelearnProtocol]:
  """Every attacker's protocol, in the order of ``rcd.attackers``
  (:data:`ieu_jax.generative.sections.ATTACKERS`).

  ``rcd`` is ``config.rcd`` (a ConfigDict, checked here) or its
  :class:`~ieu_jax.generative.sections.RCDHParams`. The attackers share every
  setting but the optimizer: ``adam`` is Adam at ``learning_rates`` (the protocol
  the generative RCD ran before it had attackers), ``sgd`` is SGD with
  ``momentum`` at ``sgd_learning_rate``.
  """
  if not isinstance(rcd, gen_sections.RCDHParams):
    rcd = gen_sections.RCDHParams.from_config(rcd, method="config.rcd")
  base = pipeline.relearn_protocol(
      ml_collections.ConfigDict(dict(rcd.to_dict(), optimizer="adam")), threshold)
  out = {}
  for name in rcd.attackers:
    if name == "adam":
      out[name] = base
    else:  # sgd
      out[name] = dataclasses.replace(base, optimizer="sgd",
                                      learning_rates=float(rcd.sgd_learning_rate))
  return out


def _relearning(config, setup: GenSetup):
  """``(relearn(params) -> {attacker: RelearnResult}, threshold, {attacker: protocol},
  m)``: generator RCD under every attacker of ``config.rcd.attackers``.

  Every attacker relearns from the same ``m`` images with the same key and the
  same criterion (its threshold and its fixed sampling noise).
  """
  r = config.rcd
  fs = setup.split
  relearn_set = fs.forget.take(
      pipeline.attacker_subset(len(fs.forget), int(r.relearn_size), int(config.seed)))
  objective, rate = evaluation.relearning_task(
      setup.problem, setup.generate, setup.classifier_logits, int(r.eval_samples))
  noise = jax.random.key_data(jax.random.fold_in(setup.sample_key, 1))
  eval_data = (setup.classifier, noise)
  threshold = float(r.threshold_fraction) * float(jax.jit(rate)(setup.original, eval_data)[0])
  protocols = attacker_protocols(r, threshold)
  key = jax.random.fold_in(setup.root, _KEY_RCD)

  def relearn(params):
    return {name: _rcd.relearn(params, None, (relearn_set.x, relearn_set.y), protocol, key,
                               eval_data=eval_data, reference_params=setup.original,
                               objective=objective, evaluation=rate)
            for name, protocol in protocols.items()}

  return relearn, threshold, protocols, len(relearn_set)


def _original_rcd(retrain_rcd: dict[str, Any]) -> dict[str, Any]:
  """The Original row's ``rcd``, shaped as :func:`ieu_jax.attackers.rcd_by_attacker`'s.

  The original meets the criterion by definition: 0 steps under every attacker of
  Retrain's ``by_attacker``, normalised to 0 where Retrain's steps are positive and
  NaN where Retrain too relearns in 0 steps; the worst case is the smallest defined.
  """
  by = {}
  for a, ref in retrain_rcd["by_attacker"].items():
    positive = math.isfinite(ref["steps_mean"]) and ref["steps_mean"] > 0
    by[a] = _rcd.RCDSummary(steps_mean=0.0, steps_std=0.0, censored_frac=0.0,
                            normalized=0.0 if positive else math.nan, median=0.0)._asdict()
  defined = [s["normalized"] for s in by.values() if math.isfinite(s["normalized"])]
  return dict(next(iter(by.values())), by_attacker=by,
              worst_case_normalized=min(defined) if defined else math.nan)


# What a DDPM depends on: the original's and retrained checkpoints' fingerprints cover these.
_DDPM_PARTS = ("data", "unet", "diffusion", "train")


def _ddpm_key(config: ml_collections.ConfigDict, what: str) -> str:
  """The fingerprint of the ``original`` or ``retrain`` DDPM's checkpoint."""
  if what == "retrain":
    what = f"retrain-{int(config.forget_class)}"
  return pipeline.fingerprint(config, what, _DDPM_PARTS)


def model_checkpoint(config: ml_collections.ConfigDict, name: str) -> str:
  """Where model ``name``'s params are saved, relative to the workdir.

  Original and Retrain: the trained DDPMs' ``checkpoints/ddpm-original-<fingerprint>``
  and ``checkpoints/ddpm-retrain-<fingerprint>``. A method's unlearned DDPM:
  ``checkpoints/unlearned/<name>-<fingerprint>``, keyed like those by the data,
  the UNet, the diffusion, the training recipe and the seed, and besides by the
  forget class, the method's name and its hyperparameters, so a changed setting
  saves a new checkpoint and never overwrites another's.
  """
  if name in ("Original", "Retrain"):
    what = name.lower()
    return os.path.join("checkpoints", f"ddpm-{what}-{_ddpm_key(config, what)}")
  hp = methods_lib.hparams(name, config.method[name])
  key = pipeline.fingerprint(config, name, _DDPM_PARTS + ("forget_class",),
                             extra=hp.fingerprint_dict())
  return os.path.join("checkpoints", "unlearned", f"{name.replace('/', '_')}-{key}")


def _save_unlearned(config, workdir: str, name: str, params, runtime: float) -> str | None:
  """Saves method ``name``'s unlearned DDPM (:func:`model_checkpoint`) unless
  ``config.save_unlearned`` is False; returns its path relative to the workdir, or None."""
  if not config.get("save_unlearned", True):
    return None
  checkpoint = model_checkpoint(config, name)
  hp = methods_lib.hparams(name, config.method[name])
  seconds = pipeline.save_model(os.path.join(workdir, checkpoint), params, method=name,
                                hparams=hp.to_dict(), unlearning_time_s=runtime)
  logging.info("%s: saved %s in %.2fs", name, os.path.join(workdir, checkpoint), seconds)
  return checkpoint


@pipeline.locks_workdir
def run_generative(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs the generative experiment of ``config`` (``experiments/configs/ddpm_fashion_mnist.py``).

  Returns the results dictionary; process 0 writes it to ``workdir/results.json``
  (with ``results.md`` and ``samples.png``), the workdir held for the run.
  """
  wall_start = time.perf_counter()
  names = validate_config(config)
  setup = _prepare_generative(config, workdir)
  ev = config.eval
  relearn, threshold, protocols, m = _relearning(config, setup)
  first = next(iter(protocols))  # the row's top-level rcd (the only one before attackers)

  rows, grids, reference, failed = [], {}, None, []
  model_list = ["Original", "Retrain"] + names
  checkpoints_of = {n: model_checkpoint(config, n) for n in ("Original", "Retrain")}
  for i, name in enumerate(model_list):
    logging.info("phase model: %s (%d/%d)", name, i + 1, len(model_list))
    if name in ("Original", "Retrain"):
      params = setup.original if name == "Original" else setup.retrained
      runtime = setup.training_time_s["original" if name == "Original" else "retrain"]
    else:
      key = pipeline.method_key(setup.root, _KEY_METHODS, name)
      try:
        params, runtime = setup.unlearn(name, config.method[name], key)
        checkpoints_of[name] = _save_unlearned(config, workdir, name, params, runtime)
      except Exception as e:  # pylint: disable=broad-except
        # One failing method must not cost the others' results: report it.
        error = str(e) if isinstance(e, training.NonFiniteError) else f"{type(e).__name__}: {e}"
        logging.error("%s failed: %s", name, error)
        failed.append({"name": name, "error": error})
        continue
    row, grid = setup.evaluate(params)
    grids[name] = grid
    start = time.perf_counter()
    if name == "Original":
      rcd = curves = None  # 0 steps; normalised once Retrain's are known (below)
    else:
      curves = relearn(params)
      if name == "Retrain":
        reference = curves
      rcd = attackers_lib.rcd_by_attacker(curves, reference)
    logging.info("%s: RCD in %.1fs: %s", name, time.perf_counter() - start, rcd)
    row.update(name=name, runtime_s=runtime, rcd=rcd, checkpoint=checkpoints_of[name],
               rcd_curves=None if curves is None else curves[first].accuracy,
               rcd_curves_by_attacker=None if curves is None else
               {a: c.accuracy for a, c in curves.items()})
    rows.append(row)
    logging.info("%s: forget %.1f%%, retain %.1f%%, FD %.2f", name, row["forget_rate"],
                 row["retain_rate"], row["fd"])

  retrain_row = rows[1]
  rows[0]["rcd"] = _original_rcd(retrain_row["rcd"])
  for row in rows:
    row["flags"] = pipeline.result_flags(row, retrain_row, utility="retain_rate",
                                         margin=ev.collapse_margin, what="retain rate")

  results = {
      "config": config.to_dict(),
      "forget_class": setup.problem.forget_class,
      "classes": list(setup.classes),
      "class_names": ({str(c): FASHION_MNIST_CLASSES[c] for c in setup.classes}
                      if config.data.name == "fashion_mnist" else {}),
      "sizes": {"train": len(setup.train), "forget": len(setup.split.forget),
                "retain": len(setup.split.retain), "test": len(setup.test), "relearn": m},
      "classifier_test_accuracy": setup.classifier_test_accuracy,
      "fd_real_floor": setup.fd_floor,
      "training_time_s": setup.training_time_s,
      "restored_from_checkpoint": setup.restored,
      "rcd_threshold": threshold,
      "rcd_protocol": protocols[first].to_dict(),
      "rcd_protocols": {a: dict(p.to_dict(), description=gen_sections.ATTACKERS[a])
                        for a, p in protocols.items()},
      "eval": {"samples_per_class": int(ev.samples_per_class), "sample_steps": int(ev.sample_steps),
               "guidance_scale": float(ev.guidance_scale)},
      "models": rows,
      "failed": failed,
      "devices": f"{jax.device_count()} {jax.default_backend()} device(s)",
  }
  results["wall_time_s"] = time.perf_counter() - wall_start
  results = outputs.json_safe(results)
  outputs.write_json(os.path.join(workdir, "results.json"), results)
  outputs.write_text(os.path.join(workdir, "results.md"), report.results_markdown(results))
  report.plot_grid(os.path.join(workdir, "samples.png"), grids, setup.classes,
                   setup.problem.forget_class)
  logging.info("wrote results.json, results.md, samples.png to %s", workdir)
  return results


def _gap(row, reference) -> float:
  """Mean absolute difference of the forget and retain rates from the reference's."""
  return 0.5 * (abs(row["forget_rate"] - reference["forget_rate"])
                + abs(row["retain_rate"] - reference["retain_rate"]))


@pipeline.locks_workdir
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
  overrides = {}
  for name in names:  # every candidate is checked before any work
    overrides[name] = [dict(o.to_dict() if hasattr(o, "to_dict") else o)
                       for o in config.search[name]]
    for j, override in enumerate(overrides[name]):
      methods_lib.get_method(name).hparams_class.from_config(
          dict(config.method[name].to_dict(), **override), method=f"config.search.{name}[{j}]")
  setup = prepare_generative(config, workdir)
  key = jax.random.fold_in(setup.root, _KEY_SEARCH_SAMPLES)
  reference, _ = setup.evaluate(setup.retrained, key)
  logging.info("search: Retrain forget %.1f%%, retain %.1f%%", reference["forget_rate"],
               reference["retain_rate"])
  out = {"reference": {k: reference[k] for k in ("forget_rate", "retain_rate", "fd")},
         "methods": {}}
  for name in names:
    candidates = []
    for j, override in enumerate(overrides[name]):
      values = dict(config.method[name].to_dict(), **override)
      method_key = pipeline.method_key(setup.root, _KEY_SEARCH, name, j)
      try:
        params, runtime = setup.unlearn(name, values, method_key)
      except training.NonFiniteError as e:
        logging.warning("search: %s candidate %d diverged: %s", name, j, e)
        candidates.append({"override": override, "failed": str(e)})
        continue
      row, _ = setup.evaluate(params, key)
      entry = {"override": override, "forget_rate": row["forget_rate"],
               "retain_rate": row["retain_rate"], "fd": row["fd"], "gap": _gap(row, reference),
               "runtime_s": runtime}
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
  out = outputs.json_safe(out)
  outputs.write_json(os.path.join(workdir, "search.json"), out)
  outputs.write_text(os.path.join(workdir, "search.md"), report.search_markdown(out))
  logging.info("wrote search.json, search.md to %s", workdir)
  return out


_SEED_FIELDS = ("forget_rate", "retain_rate", "fd", "runtime_s")


@pipeline.locks_workdir
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
    done = pipeline.finished_run(run_dir, cell)
    if done is not None:
      logging.info("seeds: reusing %s/results.json", run_dir)
    runs.append(done if done is not None else run_generative(cell, run_dir))
  agg = pipeline.aggregate(runs, fields=_SEED_FIELDS, rows="models")
  for name, row in agg.items():
    row["flagged"] = sum(
        1 for run in runs for m in run["models"] if m["name"] == name and m["flags"])
  out = outputs.json_safe({"seeds": seeds, "forget_class": runs[0]["forget_class"], "models": agg})
  outputs.write_json(os.path.join(workdir, "summary.json"), out)
  outputs.write_text(os.path.join(workdir, "summary.md"), report.seeds_markdown(out))
  return out
