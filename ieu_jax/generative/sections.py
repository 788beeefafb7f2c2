"""The generative run's settings: every config section a typed class, checked before work.

See :mod:`ieu_jax.sections` (the classifier's, and the attacker's
:class:`~ieu_jax.sections.RCDHParams` that both pipelines share).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from ieu_jax import sections
from ieu_jax.hparams import HParams

__all__ = ["ATTACKERS", "ClassifierHParams", "DataHParams", "DiffusionHParams", "EvalHParams",
           "GENERATIVE_SECTIONS", "RCDHParams", "TrainHParams", "UNetHParams"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class DataHParams(HParams):
  """``config.data``: the images, their size and the classes used (None: all)."""

  name: str
  data_dir: str | None = None
  max_train: int | None = None
  max_test: int | None = None
  image_size: int
  classes: tuple[int, ...] | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClassifierHParams(HParams):
  """``config.classifier``: the evaluation classifier and its training."""

  features: tuple[int, ...] = (16, 32)
  hidden: int = 64
  optimizer: Literal["adam", "sgd"] = "adam"
  learning_rate: float
  epochs: int
  batch_size: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class UNetHParams(HParams):
  """``config.unet``: the denoiser's widths."""

  channels: tuple[int, ...] = (16, 32)
  num_res_blocks: int = 1
  emb_dim: int = 64


@dataclasses.dataclass(frozen=True, kw_only=True)
class DiffusionHParams(HParams):
  """``config.diffusion``: the noise schedule and the label dropout."""

  num_steps: int = 1000
  beta_start: float = 1e-4
  beta_end: float = 0.02
  label_drop: float = 0.1

  def validate(self) -> None:
    if self.beta_end < self.beta_start:
      raise ValueError(f"DiffusionHParams: beta_end={self.beta_end} is below"
                       f" beta_start={self.beta_start}.")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainHParams(HParams):
  """``config.train``: the DDPMs' recipe (Adam, warmup-cosine)."""

  learning_rate: float
  epochs: int
  batch_size: int
  warmup_steps: int = 100


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalHParams(HParams):
  """``config.eval``: the samples every model is judged on."""

  guidance_scale: float = 2.0  # classifier-free guidance of the DDIM samples
  collapse_margin: float = 20.0  # flag a retain rate this far below Retrain's
  samples_per_class: int = 100
  sample_steps: int = 25
  batch_size: int = 500
  grid_per_class: int = 8


ATTACKERS = {
    "adam": "Adam at learning_rates on the attacker's m forget-class images",
    "sgd": "SGD with momentum at sgd_learning_rate on the same m images",
}
"""The generative RCD's attackers (``config.rcd.attackers``): each names its optimizer."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class RCDHParams(sections.RCDHParams):
  """``config.rcd``: the attackers; the criterion's rate comes from ``eval_samples``
  samples, and the threshold is ``threshold_fraction`` of the original's rate.

  ``attackers``: the threat models (:data:`ATTACKERS`), each run and reported under
  its name; the first is the row's ``rcd``. Each attacker fixes its own optimizer:
  ``adam`` is Adam at ``learning_rates``, ``sgd`` is SGD with ``momentum`` at
  ``sgd_learning_rate``. So ``optimizer`` is not read here: a config that sets it
  (one written before the attackers) is refused, naming the key, rather than
  silently ignored.
  """

  optimizer: Literal["sgd", "adam"] | None = None  # refused when set: see above
  eval_samples: int = 64
  threshold_fraction: float = 0.8
  attackers: tuple[str, ...] = ("adam", "sgd")
  sgd_learning_rate: float = 0.03  # see the config's comment

  def validate(self) -> None:
    super().validate()
    name = type(self).__name__
    if self.optimizer is not None:
      raise ValueError(
          f"{name}: optimizer={self.optimizer!r} is not read by the generative pipeline:"
          f" each attacker of rcd.attackers has its own optimizer ({ATTACKERS});"
          " remove the key (rcd.learning_rates is Adam's, rcd.sgd_learning_rate SGD's).")
    unknown = [a for a in self.attackers if a not in ATTACKERS]
    if not self.attackers or unknown or len(set(self.attackers)) != len(self.attackers):
      raise ValueError(f"{name}: attackers={self.attackers!r}: name each of"
                       f" {tuple(ATTACKERS)} at most once, at least one.")


GENERATIVE_SECTIONS = {"data": DataHParams, "classifier": ClassifierHParams,
                       "unet": UNetHParams, "diffusion": DiffusionHParams,
                       "train": TrainHParams, "eval": EvalHParams, "rcd": RCDHParams}
"""The sections of the generative config (``experiments/configs/ddpm_fashion_mnist.py``)."""
