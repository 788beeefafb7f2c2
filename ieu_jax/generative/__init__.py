"""The generative half: unlearning a class from a class-conditional diffusion model.

Modules, from the model up:

* :mod:`~ieu_jax.generative.diffusion`: noise schedules, the epsilon loss, DDIM
  and DDPM samplers, classifier-free guidance (any ``eps_fn``);
* :mod:`~ieu_jax.generative.unet`: a small conditional UNet;
* :mod:`~ieu_jax.generative.ddpm`: image preparation, the evaluation classifier,
  DDPM training;
* :mod:`~ieu_jax.generative.methods`: FT, GA-plain, SalUn-style and IEU, with typed
  hyperparameters and a registry;
* :mod:`~ieu_jax.generative.evaluation`: class rates, Frechet distance, and the
  relearning task that the one RCD engine (:func:`ieu_jax.relearn`) runs;
* :mod:`~ieu_jax.generative.experiment`: the pipeline (``experiments.generative``)
  on the skeleton of :mod:`ieu_jax.pipeline`; :mod:`~ieu_jax.generative.report`
  its pages.

It imports the engine and the skeleton, never the classifier's comparison code.
"""

from ieu_jax.generative import diffusion
from ieu_jax.generative import unet
from ieu_jax.generative.ddpm import classifier_fns
from ieu_jax.generative.ddpm import make_ddpm_step
from ieu_jax.generative.ddpm import prepare_images
from ieu_jax.generative.ddpm import train_ddpm
from ieu_jax.generative.ddpm import warmup_cosine
from ieu_jax.generative.evaluation import class_rates
from ieu_jax.generative.evaluation import frechet_distance
from ieu_jax.generative.evaluation import make_generate
from ieu_jax.generative.evaluation import relearning_task
from ieu_jax.generative.experiment import GenSetup
from ieu_jax.generative.experiment import prepare_generative
from ieu_jax.generative.experiment import run_generative
from ieu_jax.generative.experiment import run_seeds
from ieu_jax.generative.experiment import search_generative
from ieu_jax.generative.methods import GenProblem
from ieu_jax.generative.methods import METHODS
from ieu_jax.generative.methods import get_method
from ieu_jax.generative.methods import saliency_mask

__all__ = [
    "GenProblem",
    "GenSetup",
    "METHODS",
    "class_rates",
    "classifier_fns",
    "diffusion",
    "frechet_distance",
    "get_method",
    "make_ddpm_step",
    "make_generate",
    "prepare_generative",
    "prepare_images",
    "relearning_task",
    "run_generative",
    "run_seeds",
    "saliency_mask",
    "search_generative",
    "train_ddpm",
    "unet",
    "warmup_cosine",
]
