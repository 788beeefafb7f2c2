"""The run's settings as typed hyperparameters: every config section checked before work.

Each section of a config is a frozen dataclass (:class:`ieu_jax.hparams.HParams`,
ranges from :data:`ieu_jax.hparams.RULES`); :func:`validate_sections` builds them
all, so a bad value is refused, by section, key and value, before anything is
loaded or trained. :class:`RCDHParams` is the attacker of both pipelines; the
classifier pipeline's sections follow (the generative ones are in
:mod:`ieu_jax.generative.sections`).
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Mapping

import ml_collections

from ieu_jax import _rcd
from ieu_jax import models
from ieu_jax.hparams import HParams

__all__ = ["ATTACKERS", "CLASSIFIER_SECTIONS", "ClassifierRCDHParams", "DataHParams", "EvalHParams",
           "ForgetHParams", "RCDHParams", "TrainHParams", "check_model", "check_run_keys",
           "validate_sections"]


def check_run_keys(config: ml_collections.ConfigDict) -> None:
  """The keys outside the sections: ``seed``, ``strict_checkpoints``, ``save_unlearned``."""
  seed = config.get("seed")
  if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
    raise ValueError(f"config.seed={seed!r} must be an integer >= 0.")
  strict = config.get("strict_checkpoints", False)
  if not isinstance(strict, bool):
    raise ValueError(f"config.strict_checkpoints={strict!r} must be True or False.")
  save = config.get("save_unlearned", True)
  if not isinstance(save, bool):
    raise ValueError(f"config.save_unlearned={save!r} must be True or False.")


def validate_sections(config: ml_collections.ConfigDict,
                      sections: Mapping[str, type[HParams]]) -> dict[str, HParams]:
  """Builds every ``config.<section>`` as its typed class: all checks, before any work.

  Raises:
    ValueError: naming the section, the key and the bad value (``config.train:
      epochs=0 must be a positive integer.``), or a missing section.
    TypeError: for a value of the wrong kind, likewise named.
  """
  out = {}
  for name, cls in sections.items():
    if name not in config:
      raise ValueError(f"config has no section {name!r}.")
    out[name] = cls.from_config(config[name], method=f"config.{name}")
  return out


@dataclasses.dataclass(frozen=True, kw_only=True)
class RCDHParams(HParams):
  """The attacker's settings (``config.rcd``), checked before any work.

  See :class:`ieu_jax.RelearnProtocol` for the fields it shares;
  ``relearn_size`` is ``m``, the forget examples the attacker holds.
  """

  optimizer: Literal["sgd", "adam"] = "sgd"
  learning_rates: float | tuple[float, ...] = 0.01
  momentum: float = 0.0
  batch_size: int = 32
  max_steps: int = 200
  eval_every: int = 1
  num_trajectories: int = 8
  relearn_size: int = 256
  criterion: Literal["accuracy", "loss"] = "accuracy"
  formulation: str | None = None
  stop_when_done: bool = True
  probe_every: int = 1

  def validate(self) -> None:
    if self.max_steps % self.eval_every:
      raise ValueError(f"{type(self).__name__}: max_steps={self.max_steps} is not a multiple"
                       f" of eval_every={self.eval_every}.")
    if self.formulation is not None and self.formulation not in _rcd.FORMULATIONS:
      raise ValueError(f"{type(self).__name__}: formulation={self.formulation!r}: expected"
                       f" one of {_rcd.FORMULATIONS}.")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DataHParams(HParams):
  """``config.data``: which data, and how much of it."""

  name: str
  data_dir: str | None = None
  val_size: float = 0.1
  max_train: int | None = None
  max_test: int | None = None
  # 'per_channel': (x - mean) / std by the training part's channel statistics.
  normalize: Literal["none", "per_channel"] | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class ForgetHParams(HParams):
  """``config.forget``: the forget set (see :func:`ieu_jax.data.select_forget`)."""

  mode: Literal["random", "class", "mislabel"] = "random"
  fraction: float = 0.1
  forget_class: int | None = None

  def validate(self) -> None:
    if self.mode == "class" and self.forget_class is None:
      raise ValueError("ForgetHParams: mode='class' needs forget_class.")
    if self.forget_class is not None and self.forget_class < 0:
      raise ValueError(f"ForgetHParams: forget_class={self.forget_class} must be >= 0.")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainHParams(HParams):
  """``config.train``: the original model's recipe (Retrain uses it on the retain set)."""

  optimizer: Literal["adam", "sgd"] = "adam"
  learning_rate: float
  schedule: Literal["constant", "cosine", "multistep"] = "constant"
  # 'multistep': the rate times 0.1 from each of these epochs on (0-based).
  milestones: tuple[int, ...] | None = None
  weight_decay: float = 0.0
  epochs: int
  batch_size: int
  # 'crop_flip': random crop (padding 4) and horizontal flip, on the device, in the step.
  augment: Literal["none", "crop_flip"] = "none"

  def validate(self) -> None:
    if self.schedule == "multistep" and not self.milestones:
      raise ValueError("TrainHParams: schedule='multistep' needs milestones (epochs).")
    if self.milestones is not None and (
        any(m < 1 for m in self.milestones) or list(self.milestones) != sorted(set(self.milestones))):
      raise ValueError(f"TrainHParams: milestones={self.milestones} must be increasing "
                       "epochs >= 1.")


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalHParams(HParams):
  """``config.eval``: evaluation batches, the MIA's sample and the collapse flag."""

  batch_size: int = 1000
  mia_max_per_class: int = 5000
  collapse_margin: float = 20.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClassifierRCDHParams(RCDHParams):
  """``config.rcd`` of the classifier pipeline (see :mod:`ieu_jax.attackers`).

  ``criterion``: ``relearned`` (the paper's: accuracy on the attacker's own ``m``
  forget examples reaches the original's on them minus ``tolerance`` points) or
  ``recovered`` (accuracy on up to ``heldout_size`` forget examples the attacker
  does not hold reaches halfway between Retrain's and the original's on them).
  ``guard_drop``: a point counts only while accuracy on ``guard_size`` held-out
  examples of the other classes is at most this many points below its value
  before relearning (None: no guard). ``attackers``: the threat models, each run
  and reported under its name (:data:`ATTACKERS`); the first is the row's ``rcd``.
  ``adam_learning_rate``: the ``adam`` attacker's step size.
  """

  criterion: Literal["relearned", "recovered"] = "relearned"
  tolerance: float = 1.0
  heldout_size: int = 256
  guard_drop: float | None = 5.0
  guard_size: int = 256
  attackers: tuple[str, ...] = ("sgd",)
  adam_learning_rate: float = 1e-3

  def validate(self) -> None:
    super().validate()
    unknown = [a for a in self.attackers if a not in ATTACKERS]
    if not self.attackers or unknown or len(set(self.attackers)) != len(self.attackers):
      raise ValueError(f"{type(self).__name__}: attackers={self.attackers!r}: name each of"
                       f" {tuple(ATTACKERS)} at most once, at least one.")


ATTACKERS = {
    "sgd": "the paper's: this section's optimizer on the attacker's m forget examples",
    "adam": "Adam at adam_learning_rate on the same m forget examples",
    "retain_only": "this section's optimizer on m retain examples only (no forget"
                   " example); the criterion is measured on the forget set as for the others",
}
"""The attackers' threat models (``config.rcd.attackers``)."""


CLASSIFIER_SECTIONS = {"data": DataHParams, "forget": ForgetHParams, "train": TrainHParams,
                       "eval": EvalHParams, "rcd": ClassifierRCDHParams}
"""The sections of the classifier pipeline's config (``experiments/configs/fashion_mnist.py``)."""


def check_model(model: ml_collections.ConfigDict) -> None:
  """``config.model``: a known model, and keys that are its fields: ``norm`` None (the
  model's default) or one of :data:`ieu_jax.models.NORMS`, ``dtype`` None (float32) or
  one of :data:`ieu_jax.models.DTYPES`, the others positive integers."""
  name = model.get("name")
  if name not in models.MODELS:
    raise ValueError(f"config.model: name={name!r} is unknown; choose one of"
                     f" {sorted(models.MODELS)}.")
  module = models.MODELS[name]
  valid = sorted(f.name for f in dataclasses.fields(module)
                 if f.name not in ("num_classes", "parent", "name"))
  for key, value in model.to_dict().items():
    if key == "name" or (key in ("norm", "dtype") and value is None):  # the default
      continue
    if key not in valid:
      raise ValueError(f"config.model: unknown key {key!r} for model {name!r}; valid keys"
                       f" are {valid}.")
    if key == "norm":
      if value not in models.NORMS:
        raise ValueError(f"config.model: norm={value!r} must be one of {models.NORMS}.")
      continue
    if key == "dtype":
      if value not in models.DTYPES:
        raise ValueError(f"config.model: dtype={value!r} must be one of {models.DTYPES}.")
      continue
    values = value if isinstance(value, (list, tuple)) else (value,)
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                             for v in values):
      raise ValueError(f"config.model: {key}={value!r} must be a positive integer"
                       " (or a non-empty sequence of them).")
