"""Shadow models: N copies of a model, each trained on its own half of a population
and unlearning its own forget subset, as one program.

U-LiRA (:func:`ieu_jax.privacy.ulira`) and the NeurIPS 2023 challenge score
(:func:`ieu_jax.privacy.challenge_score`) compare many models that differ in the
data they saw. Here the ``N`` copies are one stacked pytree (every leaf has a
leading axis ``N``) and every step is one compiled call for all of them
(:func:`ieu_jax._program.run_stacked` with per-copy ``maps``, ``keys`` and starts):

* :func:`train_shadows`: copy ``m`` is :func:`ieu_jax.methods.retrain.train_model`
  (the pipeline's recipe) on ``population[trained[m]]`` with the key
  ``jax.random.split(key, N)[m]``;
* :func:`unlearn_shadows`: copy ``m`` runs a method's program on its forget subset
  ``population[forgotten[m]]`` and its retain subset ``population[trained[m] &
  ~forgotten[m]]``, from its own trained model, with the key
  ``jax.random.split(key, N)[m]``: it equals the method's single ``unlearn`` there;
* :func:`retrain_shadows`: Retrain per copy, :func:`train_shadows` on each copy's
  training half minus its forget subset;
* :func:`cached_shadows`: any of them restored from ``workdir/checkpoints`` when
  everything it depends on (:func:`fingerprint`) is unchanged, else computed and
  saved (orbax, :func:`ieu_jax.pipeline.cached_train`) beside its inclusion
  matrices.

Every copy's subsets must have the same size (a pass has the same length for every
copy): :func:`ieu_jax.privacy.inclusion` gives exactly half of the population and
``forget_size`` examples to each copy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from ieu_jax import _program
from ieu_jax import methods
from ieu_jax import pipeline
from ieu_jax import training
from ieu_jax.data import Dataset
from ieu_jax.methods import retrain
from ieu_jax.methods import salun

__all__ = ["cached_shadows", "fingerprint", "retrain_shadows", "train_shadows",
           "training_program", "unlearn_shadows"]


def _rows(mask: np.ndarray, what: str) -> np.ndarray:
  """``(N, k)`` sorted indices of the True entries of each row; every row the same ``k``."""
  mask = np.asarray(mask)
  if mask.ndim != 2 or mask.dtype != bool:
    raise ValueError(f"{what} must be an (N, population) boolean matrix; got dtype"
                     f" {mask.dtype}, shape {mask.shape}.")
  counts = mask.sum(axis=1)
  if mask.shape[0] == 0:
    raise ValueError(f"{what} has no rows: there are no models.")
  bad = np.flatnonzero(counts != counts[0])
  if bad.size:
    raise ValueError(f"{what}: every model needs the same number of examples; model 0 has"
                     f" {counts[0]}, model {bad[0]} has {counts[bad[0]]}.")
  if counts[0] == 0:
    raise ValueError(f"{what}: every model's subset is empty.")
  return np.stack([np.flatnonzero(r) for r in mask])


def training_program(apply_fn: Callable, population: Dataset, train_hparams: Mapping[str, Any],
                     num_examples: int) -> _program.Program:
  """The training recipe of :func:`ieu_jax.methods.retrain.train_model` as a program.

  Its data set ``"train"`` is the population (a run maps it to each copy's
  half); its method key is :func:`~ieu_jax.methods.retrain.train_model`'s data key:
  epoch ``e`` shuffles with ``fold_in(key, e)``, as :func:`ieu_jax.training.fit`
  does. It has no array hyperparameters.

  Args:
    apply_fn: the model's ``apply_fn``.
    population: the examples the copies' halves index.
    train_hparams: the recipe (``learning_rate``, ``epochs``, ``batch_size``, ...).
    num_examples: examples per copy (the schedule's length depends on it).
  """
  batch_size, epochs = int(train_hparams["batch_size"]), int(train_hparams["epochs"])
  steps_per_epoch = -(-num_examples // batch_size)
  tx = retrain.make_train_optimizer(train_hparams, steps_per_epoch * epochs,
                                    steps_per_epoch=steps_per_epoch)
  objective = training.augmented(training.classifier_objective(apply_fn),
                                 str(train_hparams.get("augment", "none")))
  descend = training.descent_on(objective, tx)

  def step(variables, opt_state, batch, key, hp):
    del hp
    return descend(variables, opt_state, batch, key)

  def segments(key, budget):
    del budget
    for epoch in range(epochs):
      yield _program.Segment("train", "train", batch_size, jax.random.fold_in(key, epoch),
                             f"epoch {epoch + 1}/{epochs}")

  return _program.Program(steps={"train": step}, init=lambda params, hp, key: tx.init(params),
                          segments=segments, arrays=(),
                          data={"train": (population.x, population.y)})


def train_shadows(init_fn: Callable, apply_fn: Callable, population: Dataset, trained: Any,
                  train_hparams: Mapping[str, Any], key: jax.Array, *,
                  layout: str | None = None, name: str = "shadows", mesh=None) -> Any:
  """Trains ``N`` fresh models, model ``m`` on ``population[trained[m]]``, as one program.

  Model ``m`` is ``retrain.train_model(init_fn, apply_fn, population[trained[m]],
  train_hparams, jax.random.split(key, N)[m], ...)`` up to float rounding.

  Args:
    init_fn: ``init_fn(key) -> variables``.
    apply_fn: the model's ``apply_fn``.
    population: the examples.
    trained: ``(N, population)`` booleans, the same count in every row.
    train_hparams: the recipe (:func:`ieu_jax.methods.retrain.train_model`).
    key: the key of all ``N`` models.
    layout: :func:`ieu_jax._program.run_stacked`'s; default
      :func:`ieu_jax._program.default_layout`.
    name: for logs and errors.
    mesh: the devices the models are split over (:func:`ieu_jax._program.run_stacked`).

  Returns:
    The stacked variables (every leaf with a leading axis ``N``).

  Raises:
    ValueError: for a malformed ``trained`` (naming the row) or one whose width is
      not the population's.
    ieu_jax.NonFiniteError: when a model's weights or loss stop being finite
      (naming the models).
  """
  if np.ndim(trained) == 2 and np.shape(trained)[1] != len(population):
    raise ValueError(f"trained has {np.shape(trained)[1]} columns for a population of"
                     f" {len(population)}.")
  rows = _rows(trained, "trained")
  num = rows.shape[0]
  pairs = [jax.random.split(k) for k in jax.random.split(key, num)]
  init_keys = jnp.stack([p[0] for p in pairs])
  data_keys = jnp.stack([p[1] for p in pairs])
  variables = jax.vmap(init_fn)(init_keys)
  program = training_program(apply_fn, population, train_hparams, rows.shape[1])
  stacked, diverged = _program.run_stacked(
      program, variables, [{}] * num, None, maps={"train": rows}, keys=data_keys, stacked=True,
      layout=layout or _program.default_layout(), name=name, mesh=mesh)
  if diverged.any():
    raise training.NonFiniteError(f"{name}: models {np.flatnonzero(diverged).tolist()} stopped"
                                  " being finite; lower the learning rate.")
  return stacked


def retrain_shadows(init_fn: Callable, apply_fn: Callable, population: Dataset, trained: Any,
                    forgotten: Any, train_hparams: Mapping[str, Any], key: jax.Array, *,
                    layout: str | None = None, name: str = "Retrain", mesh=None) -> Any:
  """Retrain per copy: :func:`train_shadows` on ``trained & ~forgotten``.

  Raises:
    ValueError: when ``forgotten`` does not imply ``trained`` (naming the pair).
  """
  trained, forgotten = _inclusion(trained, forgotten)
  return train_shadows(init_fn, apply_fn, population, trained & ~forgotten, train_hparams, key,
                       layout=layout, name=name, mesh=mesh)


def _inclusion(trained: Any, forgotten: Any) -> tuple[np.ndarray, np.ndarray]:
  trained, forgotten = np.asarray(trained), np.asarray(forgotten)
  if trained.shape != forgotten.shape:
    raise ValueError(f"trained {trained.shape} and forgotten {forgotten.shape} differ in shape.")
  bad = np.argwhere(forgotten & ~trained)
  if bad.size:
    raise ValueError(f"forgotten[{bad[0][0]}, {bad[0][1]}] is True but the model never trained"
                     " on that example.")
  return trained, forgotten


def unlearn_shadows(method: str | methods.Method, problem_like: methods.Problem, shadows: Any,
                    trained: Any, forgotten: Any, hparams: Any, key: jax.Array, *,
                    population: Dataset, layout: str | None = None,
                    name: str | None = None, mesh=None) -> tuple[Any, np.ndarray]:
  """Each copy unlearns its own forget subset with ``method``, as one program.

  Copy ``m`` equals ``method.unlearn(problem_m, hparams, jax.random.split(key, N)[m])``
  up to float rounding, where ``problem_m`` is ``problem_like`` with ``original``
  the copy's model, ``forget = population[forgotten[m]]`` and ``retain =
  population[trained[m] & ~forgotten[m]]``. A program entry that is the original
  (SCRUB's teacher) is each copy's own; so is SalUn's saliency mask (computed per
  copy from its model and forget subset).

  Args:
    method: a registry name or a :class:`ieu_jax.methods.Method` with a program.
    problem_like: gives ``apply_fn``, ``init_fn``, ``num_classes`` and ``train``;
      its ``original``, ``forget`` and ``retain`` are not read.
    shadows: the copies' trained variables, stacked (:func:`train_shadows`).
    trained: ``(N, population)`` booleans.
    forgotten: ``(N, population)`` booleans, implying ``trained``; the same count
      in every row.
    hparams: the method's hyperparameters (an instance or a mapping).
    key: the key of all ``N`` copies.
    population: the examples the matrices index.
    layout: :func:`ieu_jax._program.run_stacked`'s.
    name: the method's name for logs and errors.
    mesh: the devices the copies are split over (:func:`ieu_jax._program.run_stacked`).

  Returns:
    ``(stacked_variables, diverged)``: ``diverged[m]`` is True where copy ``m``'s
    weights or loss stopped being finite.

  Raises:
    ValueError: for a method without a program, or malformed matrices.
  """
  if isinstance(method, str):
    name = name or method
    method = methods.get(method)
  name = name or "unlearn"
  if method.program is None:
    raise ValueError(f"{name}: the method has no program; Retrain is retrain_shadows.")
  trained, forgotten = _inclusion(trained, forgotten)
  if trained.shape[1] != len(population):
    raise ValueError(f"trained has {trained.shape[1]} columns for a population of"
                     f" {len(population)}.")
  maps = {"forget": _rows(forgotten, "forgotten"),
          "retain": _rows(trained & ~forgotten, "trained & ~forgotten")}
  num = maps["forget"].shape[0]
  if not isinstance(hparams, method.hparams_class):
    hparams = method.hparams_class.from_config(hparams, method=name)
  problem = dataclasses.replace(problem_like, original=shadows, forget=population,
                                retain=population)
  init_stacked = ()
  if method.program is salun.program:
    # Each copy's saliency mask: its own model's gradient over its own forget subset,
    # by the same function (the same chunks) as its single run.
    masks = [salun.saliency_mask(salun.forget_gradient(
        problem_like.apply_fn, _program.unstack(shadows, m), population.x[maps["forget"][m]],
        population.y[maps["forget"][m]], hparams.batch_size), hparams.mask_fraction)
             for m in range(num)]
    program = salun.program(problem, hparams, name,
                            mask=jax.tree.map(lambda *a: jnp.stack(a), *masks))
    init_stacked = (0,)
  else:
    program = method.program(problem, hparams, name)
  used = set(program.data) | set(program.aux_maps.values())
  stacked_aux = tuple(p for p, a in enumerate(program.aux) if a is shadows)
  values = {k: getattr(hparams, k) for k in program.arrays}
  return _program.run_stacked(
      program, shadows, [values] * num, None, budget=getattr(hparams, "steps", None),
      maps={k: v for k, v in maps.items() if k in used}, keys=jax.random.split(key, num),
      stacked=True, stacked_aux=stacked_aux, stacked_init_aux=init_stacked,
      layout=layout or _program.default_layout(),
      name=name, mesh=mesh)


def _digest(value: Any) -> Any:
  """A JSON-able stand-in for ``value``: arrays (and keys, datasets) by their SHA-256."""
  if isinstance(value, Dataset):
    return {"x": _digest(value.x), "y": _digest(value.y), "classes": value.num_classes}
  if isinstance(value, jax.Array) and jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
    value = jax.random.key_data(value)
  if isinstance(value, (np.ndarray, jax.Array)):
    a = np.ascontiguousarray(np.asarray(value))
    digest = hashlib.sha256(f"{a.dtype.name}{a.shape};".encode() + a.tobytes())
    return "sha256:" + digest.hexdigest()
  if hasattr(value, "to_dict"):
    value = value.to_dict()
  if isinstance(value, Mapping):
    return {str(k): _digest(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_digest(v) for v in value]
  return value


def fingerprint(parts: Mapping[str, Any]) -> str:
  """12 hex digits of everything in ``parts``: arrays, keys and data sets by their
  bytes, mappings and config dicts by their values."""
  blob = json.dumps(_digest(parts), sort_keys=True, default=str)
  return hashlib.sha256(blob.encode()).hexdigest()[:12]


def cached_shadows(workdir: str, name: str, parts: Mapping[str, Any], like: Any,
                   compute: Callable[[], Any], inclusion: Mapping[str, Any], *,
                   strict: bool = False) -> pipeline.Trained:
  """Stacked shadows restored from ``workdir/checkpoints/<name>-<fingerprint>``, or
  computed by ``compute()`` and saved there beside their inclusion matrices.

  The key is :func:`fingerprint` of ``parts`` and ``inclusion`` together: pass in
  ``parts`` everything the models depend on beyond the matrices (the model's
  config, the recipe or the method and its hyperparameters, the key, the
  population, the starting shadows' fingerprint), so a changed setting computes
  anew instead of reusing stale models.

  Args:
    workdir: the run's directory.
    name: the checkpoint's name (``shadows``, ``unlearned/IEU``, ...).
    parts: what the models depend on.
    like: the stacked variables' shapes and dtypes (``jax.eval_shape``).
    compute: returns the stacked variables.
    inclusion: ``{name: (N, population) booleans}`` saved with the models (as
      uint8) and checked on restore.
    strict: raise on a corrupt checkpoint instead of recomputing.

  Returns:
    A :class:`ieu_jax.pipeline.Trained` whose ``params`` are the stacked variables.

  Raises:
    ValueError: when a restored checkpoint's inclusion matrices are not ``inclusion``.
  """
  inclusion = {k: np.asarray(v, np.uint8) for k, v in inclusion.items()}
  key = fingerprint({"parts": parts, "inclusion": inclusion})
  like = {"variables": like,
          "inclusion": {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in inclusion.items()}}
  trained = pipeline.cached_train(
      workdir, name, key, like, lambda: {"variables": compute(), "inclusion": inclusion},
      strict=strict)
  for k, v in inclusion.items():
    if not np.array_equal(np.asarray(trained.params["inclusion"][k]), v):
      raise ValueError(f"{pipeline.checkpoint_path(workdir, name, key)}: its inclusion matrix"
                       f" {k!r} is not the one asked for.")
  return pipeline.Trained(trained.params["variables"], trained.seconds, trained.restored)
