"""IEU and its ablations: ascent on the forget set, weight decay, weight noise.

Each step takes a batch of the forget set (in shuffled epochs) and, when
``retain_scale > 0``, a batch of the retain set drawn with the step's key, and
applies :func:`ieu_jax.ieu_transform` through :func:`ieu_jax.make_unlearn_step`.
The paper's ablations are settings of :class:`IEUHParams`, one class for all:

* GA-plain: ``weight_decay = noise_std = 0`` (and here, no retain term): plain SGD
  ascent, no momentum, no decay. The published GA baseline, with the baselines' SGD
  (momentum 0.9, weight decay 5e-4), is another method, :mod:`ieu_jax.methods.ga`;
* GA+Noisy and GA+Decay add noise or decay (and a retain term) to GA-plain's ascent;
* Noisy: ``ascent_scale = 0`` with noise and a retain term;
* IEU: all three.

Ascent on cross-entropy is unbounded, and with a large forget set or a whole class
it can diverge to NaN (see docs/results.md). ``max_grad_norm`` (None or 0: off, the
default) has :func:`ieu_jax.make_unlearn_step`'s meaning, the same for the
generative methods: each gradient, the forget one and the retain one, is scaled on
its own to a global L2 norm of at most ``max_grad_norm`` before the
transformation, ``g * min(1, max_grad_norm / (||g|| + 1e-12))``. No step then moves
the weights by more than ``learning_rate * ascent_scale * max_grad_norm`` through
the ascent term, nor ``learning_rate * retain_scale * max_grad_norm`` through the
retain term.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import optax

from ieu_jax import _program
from ieu_jax import _transforms
from ieu_jax._steps import make_unlearn_step
from ieu_jax.hparams import HParams
from ieu_jax.methods import base

__all__ = ["IEU_ARRAYS", "IEUHParams", "make_transform", "program", "unlearn"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class IEUHParams(HParams):
  """The hyperparameters of IEU and of its ablations (GA-plain, Noisy, GA+Noisy, GA+Decay).

  Attributes:
    epochs: passes over the forget set (required).
    learning_rate: the step size ``eta`` of :func:`ieu_jax.ieu_transform` (required).
    ascent_scale: the weight ``alpha_f`` of the forget gradient's ascent.
    retain_scale: the weight ``alpha_r`` of the retain gradient (0: no retain batch).
    weight_decay: decoupled decay ``lambda``; the weights shrink by ``eta * lambda``
      per step.
    noise_std: the standard deviation of each weight's noise per step.
    batch_size: examples per forget batch, and per retain batch.
    max_grad_norm: None or 0 for no clipping; else the bound on the global norm
      of each gradient, forget and retain, before the transformation (see the
      module docstring).
    steps: None (``epochs`` decides the length) or the run's length in optimizer
      steps, whatever the forget set's size (``epochs`` is then ignored).
  """

  epochs: int
  learning_rate: float
  ascent_scale: float = 1.0
  retain_scale: float = 0.0
  weight_decay: float = 0.0
  noise_std: float = 0.0
  batch_size: int = 128
  max_grad_norm: float | None = None
  steps: int | None = None

  def program_key(self) -> dict[str, bool]:
    """What of the array hyperparameters shapes the program: whether there is a
    retain term (a sweep runs settings with and without one as two programs)."""
    return {"with_retain": self.retain_scale > 0}


def make_transform(hparams: IEUHParams | Mapping[str, Any],
                   noise_key: jax.Array) -> optax.GradientTransformationExtraArgs:
  """:func:`ieu_jax.ieu_transform` from a method's hyperparameters (shared with the
  generative methods).

  Args:
    hparams: IEU's hyperparameters; a mapping (the generative methods' untyped
      ones) is read for the fields of :class:`IEUHParams` only, with their
      defaults.
    noise_key: the key of the weight noise.
  """
  if not isinstance(hparams, IEUHParams):
    fields = {f.name for f in dataclasses.fields(IEUHParams)}
    hparams = IEUHParams.from_config({k: v for k, v in hparams.items() if k in fields})
  return _transform({name: getattr(hparams, name) for name in IEU_ARRAYS}, noise_key)


def _transform(values: Mapping[str, Any], noise_key) -> optax.GradientTransformationExtraArgs:
  """:func:`ieu_jax.ieu_transform` of the values of :data:`IEU_ARRAYS` (numbers or arrays)."""
  return _transforms.ieu_transform(
      values["learning_rate"], ascent_scale=values["ascent_scale"],
      retain_scale=values["retain_scale"], weight_decay=values["weight_decay"],
      noise_std=values["noise_std"], key=noise_key)


IEU_ARRAYS = ("learning_rate", "ascent_scale", "retain_scale", "weight_decay", "noise_std")
"""IEU's hyperparameters that a sweep passes as arrays."""


def program(problem: base.Problem, hparams: IEUHParams, name: str = "IEU") -> _program.Program:
  """IEU's program (or an ablation's): epochs (or ``hparams.steps`` steps) over the
  forget set, each step with a retain batch drawn from its key when
  ``hparams.retain_scale > 0`` (static: settings with and without a retain term
  are different programs)."""
  with_retain = bool(hparams.retain_scale)
  batch_size = hparams.batch_size

  transform = _transform

  def step(variables, opt_state, forget_batch, key, hp, retain_x, retain_y, retain_index):
    # The noise key lives in opt_state (set by init); the one given here is unused.
    unlearn_step = make_unlearn_step(problem.apply_fn, transform(hp, 0),
                                     max_grad_norm=hparams.max_grad_norm or None, jit=False)
    retain_batch = None
    if with_retain:
      # ieu_jax.training.sample_batch through the retain set's index (arange in a
      # single run; a shadow copy's own retain subset under run_stacked's maps).
      idx = retain_index[jax.random.randint(key, (batch_size,), 0, retain_index.shape[0])]
      retain_batch = retain_x[idx], retain_y[idx]
    variables, opt_state, metrics = unlearn_step(variables, opt_state, forget_batch, retain_batch)
    return variables, opt_state, metrics.forget_loss

  def init(params, hp, key):
    noise_key, _ = jax.random.split(key)
    return transform(hp, noise_key).init(params)

  def segments(key, budget):
    _, data_key = jax.random.split(key)
    for epoch in _program.epochs_then_steps(hparams.epochs, budget):
      yield _program.Segment("unlearn", "forget", batch_size, jax.random.fold_in(data_key, epoch),
                             f"epoch {epoch + 1}")

  return _program.Program(
      steps={"unlearn": step}, init=init, segments=segments, arrays=IEU_ARRAYS,
      data={"forget": (problem.forget.x, problem.forget.y)},
      aux=(problem.retain.x, problem.retain.y, jnp.arange(problem.retain.y.shape[0])),
      aux_maps={2: "retain"})


def unlearn(problem: base.Problem, hparams: IEUHParams, key: jax.Array, *,
            name: str = "IEU") -> Any:
  """IEU (or the ablation ``hparams`` describe); see the module docstring."""
  return base.run_program(program(problem, hparams, name), problem, hparams, key, name)
