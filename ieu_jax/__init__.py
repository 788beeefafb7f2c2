"""ieu-jax: machine unlearning measured in weight space.

The paper's vocabulary, flat:

* IEU as composable optax transformations: :func:`ascent`,
  :func:`decoupled_weight_decay`, :func:`add_weight_noise`, :func:`ieu_transform`;
* the steps: :func:`make_train_step`, :func:`make_unlearn_step` (and
  :class:`NonFiniteError`, raised when a NaN appears while unlearning);
* RCD (Relearning Convergence Delay) as relearning trajectories sharded across
  devices: :class:`RelearnProtocol`, :func:`relearn`, :func:`rcd_summary`;
* the metrics: :func:`accuracy`, :func:`mia_efficacy`, :func:`avg_gap`, ...;
* many settings of a method as one program: :func:`sweep` (the frontier's engine);
* per-example privacy (``ieu_jax.privacy``): :func:`logit_confidence`, U-LiRA
  (:func:`inclusion`, :func:`ulira`) and the NeurIPS 2023 challenge score
  (:func:`per_example_epsilon`, :func:`epsilon_score`, :func:`forgetting_quality`,
  :func:`challenge_score`);
* the models: :class:`SmallCNN`, :class:`MLP`, :class:`ResNet18`, :func:`build_model`.

The rest are subpackages, imported on first use: ``ieu_jax.data``,
``ieu_jax.methods`` (the classifier baselines), ``ieu_jax.experiment`` (the
classifier pipeline), ``ieu_jax.comparison`` (search, sweeps, claims),
``ieu_jax.frontier`` (hyperparameter frontiers: Pareto sets, matched utility),
``ieu_jax.shadow`` (N shadow models trained and unlearning as one program),
``ieu_jax.generative`` (diffusion unlearning), ``ieu_jax.theory`` (the bounds
and their checker), and the skeleton they share (``ieu_jax.pipeline``,
``ieu_jax.outputs``, ``ieu_jax.hparams``, ``ieu_jax.training``,
``ieu_jax.checkpoints``).
"""

import importlib

from ieu_jax._cpu import configure_cpu
from ieu_jax._metrics import accuracy
from ieu_jax._metrics import avg_gap
from ieu_jax._metrics import mia_efficacy
from ieu_jax._metrics import predict
from ieu_jax._metrics import true_class_confidence
from ieu_jax._program import SweepResult
from ieu_jax._rcd import default_formulation
from ieu_jax._rcd import Draws
from ieu_jax._rcd import FORMULATIONS
from ieu_jax._rcd import RCDSummary
from ieu_jax._rcd import rcd_summary
from ieu_jax._rcd import relearn
from ieu_jax._rcd import RelearnProtocol
from ieu_jax._rcd import RelearnResult
from ieu_jax._rcd import trajectory_batch_indices
from ieu_jax._rcd import trajectory_mesh
from ieu_jax._state import Variables
from ieu_jax._steps import make_train_step
from ieu_jax._steps import make_unlearn_step
from ieu_jax._steps import softmax_cross_entropy
from ieu_jax._steps import StepMetrics
from ieu_jax._transforms import add_weight_noise
from ieu_jax._transforms import ascent
from ieu_jax._transforms import decoupled_weight_decay
from ieu_jax._transforms import ieu_transform
from ieu_jax._transforms import WeightNoiseState
from ieu_jax.models import build_model
from ieu_jax.models import MLP
from ieu_jax.models import ResNet18
from ieu_jax.models import SmallCNN
from ieu_jax.privacy import challenge_score
from ieu_jax.privacy import epsilon_score
from ieu_jax.privacy import forgetting_quality
from ieu_jax.privacy import inclusion
from ieu_jax.privacy import logit_confidence
from ieu_jax.privacy import per_example_epsilon
from ieu_jax.privacy import ulira
from ieu_jax.privacy import ULiRAResult
from ieu_jax.training import NonFiniteError

__version__ = "0.1.0"

_SUBMODULES = ("checkpoints", "comparison", "data", "experiment", "frontier", "frontier_run",
               "generative", "hparams", "methods", "models", "outputs", "pipeline", "privacy",
               "shadow", "theory", "training", "ulira_run")


def __getattr__(name):
  """``ieu_jax.<subpackage>`` on first use (PEP 562), so ``import ieu_jax`` stays light."""
  if name in _SUBMODULES:
    return importlib.import_module(f"ieu_jax.{name}")
  if name == "sweep":  # ieu_jax.methods.sweep; the methods load on first use
    return importlib.import_module("ieu_jax.methods").sweep
  raise AttributeError(f"module 'ieu_jax' has no attribute {name!r}")


__all__ = [
    "Draws",
    "FORMULATIONS",
    "MLP",
    "NonFiniteError",
    "RCDSummary",
    "RelearnProtocol",
    "RelearnResult",
    "ResNet18",
    "SmallCNN",
    "StepMetrics",
    "SweepResult",
    "ULiRAResult",
    "Variables",
    "WeightNoiseState",
    "accuracy",
    "add_weight_noise",
    "ascent",
    "avg_gap",
    "build_model",
    "challenge_score",
    "configure_cpu",
    "decoupled_weight_decay",
    "default_formulation",
    "epsilon_score",
    "forgetting_quality",
    "ieu_transform",
    "inclusion",
    "logit_confidence",
    "make_train_step",
    "make_unlearn_step",
    "mia_efficacy",
    "per_example_epsilon",
    "predict",
    "rcd_summary",
    "relearn",
    "softmax_cross_entropy",
    "sweep",
    "trajectory_batch_indices",
    "trajectory_mesh",
    "true_class_confidence",
    "ulira",
]
