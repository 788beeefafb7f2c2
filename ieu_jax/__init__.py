"""ieu-jax: machine unlearning measured in weight space.

IEU (Influence Eliminating Unlearning) as composable optax transformations, RCD
(Relearning Convergence Delay) as vmapped relearning trajectories, and the
standard unlearning metrics.
"""

from ieu_jax._cpu import configure_cpu
from ieu_jax._cpu import CPU_FLAG
from ieu_jax._metrics import accuracy
from ieu_jax._metrics import avg_gap
from ieu_jax._metrics import mia_efficacy
from ieu_jax._metrics import predict
from ieu_jax._metrics import true_class_confidence
from ieu_jax._rcd import default_formulation
from ieu_jax._rcd import FORMULATIONS
from ieu_jax._rcd import RCDSummary
from ieu_jax._rcd import rcd_summary
from ieu_jax._rcd import relearn
from ieu_jax._rcd import RelearnProtocol
from ieu_jax._rcd import RelearnResult
from ieu_jax._rcd import trajectory_batch_indices
from ieu_jax._rcd import trajectory_mesh
from ieu_jax._steps import make_train_step
from ieu_jax._steps import make_unlearn_step
from ieu_jax._steps import softmax_cross_entropy
from ieu_jax._steps import StepMetrics
from ieu_jax._steps import tree_is_finite
from ieu_jax._transforms import add_weight_noise
from ieu_jax._transforms import as_key
from ieu_jax._transforms import ascent
from ieu_jax._transforms import decoupled_weight_decay
from ieu_jax._transforms import ieu_transform
from ieu_jax._transforms import WeightNoiseState

__version__ = "0.1.0"

__all__ = [
    "CPU_FLAG",
    "FORMULATIONS",
    "RCDSummary",
    "RelearnProtocol",
    "RelearnResult",
    "StepMetrics",
    "WeightNoiseState",
    "accuracy",
    "add_weight_noise",
    "as_key",
    "ascent",
    "avg_gap",
    "configure_cpu",
    "decoupled_weight_decay",
    "default_formulation",
    "ieu_transform",
    "make_train_step",
    "make_unlearn_step",
    "mia_efficacy",
    "predict",
    "rcd_summary",
    "relearn",
    "softmax_cross_entropy",
    "trajectory_batch_indices",
    "trajectory_mesh",
    "tree_is_finite",
    "true_class_confidence",
]
