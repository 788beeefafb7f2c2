"""SCRUB: a student that stays close to the original teacher on the retain set
and moves away from it on the forget set.

The teacher is the original model, frozen; the student starts from it. With
``E = epochs`` and ``M = msteps``, epoch ``e = 0, ..., E - 1`` runs (see
:func:`passes`):

1. while ``e < M`` (the reference's 1-based ``epoch <= msteps``), a *max pass*
   over the forget set: descent on ``-KL_T(teacher || student)``
   (:func:`max_step`), i.e. ascent on the divergence;
2. a *min pass* over the retain set: descent on ``gamma * CE + alpha *
   KL_T(teacher || student)`` (:func:`min_step`).

Both passes share one optimizer state (the baselines' SGD,
:func:`ieu_jax.methods.base.sgd`). ``KL_T`` is the distillation divergence at
temperature ``T`` (:func:`distill_kl`), scaled by ``T**2`` as in the reference.

The pass order and counts follow the reference training loop (1-based epochs;
in each, a max pass over the forget loader while ``epoch <= msteps``, then a min
pass over the retain loader, one optimizer for both). The reference's later
``scrub.py`` helper loops over 0-based epochs with the same ``epoch <= msteps``,
i.e. one max pass more; we follow the loop its experiments ran.

As in the reference, the student runs in train mode and the teacher in eval mode
(:mod:`ieu_jax._state`). With BatchNorm (``norm='batch'``) their outputs differ from
the first step (batch statistics against running ones), and the first max pass has
a signal at once. Without it (GroupNorm or no normalisation; our models have no
dropout) the first max pass is inert: at the start the student equals the teacher,
so the divergence and its gradient are 0 (up to float rounding), and the max pass
has no signal until weight decay or the min pass has moved the student. Its first steps move the weights by the coupled weight decay
alone: ``benchmarks/scrub_first_max_pass.py`` measures it on the small CNN, and
``tests/test_benchmark_scrub.py`` checks that the change equals the decay's closed
form. From the second epoch on (``msteps >= 2``) the max pass starts from a
student the min pass has moved, and ascends.

Hyperparameters: :class:`SCRUBHParams`.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import jax
import jax.numpy as jnp
import optax

from ieu_jax import _program
from ieu_jax import _state
from ieu_jax import training
from ieu_jax._steps import ApplyFn, softmax_cross_entropy
from ieu_jax.methods import base

__all__ = ["SCRUBHParams", "distill_kl", "max_objective", "max_step", "min_objective",
           "min_step", "passes", "program", "unlearn"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class SCRUBHParams(base.SGDHParams):
  """SCRUB's hyperparameters: the baselines' SGD fields and those below.

  Attributes:
    msteps: the epochs that begin with a max pass (required).
    temperature: the distillation temperature ``T``.
    gamma: the weight of the cross-entropy in the min pass.
    alpha: the weight of the divergence in the min pass.
    forget_batch_size: examples per max step (None: ``batch_size``).
  """

  msteps: int
  temperature: float = 4.0
  gamma: float = 0.99
  alpha: float = 0.001
  forget_batch_size: int | None = None


def distill_kl(student_logits: jax.Array, teacher_logits: jax.Array, temperature) -> jax.Array:
  """``T**2 * mean_i KL(softmax(t_i / T) || softmax(s_i / T))``.

  Args:
    student_logits: ``(n, C)``.
    teacher_logits: ``(n, C)``; the reference distribution.
    temperature: ``T > 0``.

  Returns:
    A scalar: the divergence of the student from the teacher, averaged over
    examples.
  """
  log_s = jax.nn.log_softmax(student_logits / temperature, axis=-1)
  log_t = jax.nn.log_softmax(teacher_logits / temperature, axis=-1)
  kl = jnp.sum(jnp.exp(log_t) * (log_t - log_s), axis=-1)
  return temperature**2 * jnp.mean(kl)


def max_objective(apply_fn: ApplyFn, temperature: float):
  """``objective(params, batch, key, teacher) = -distill_kl`` over the (forget) batch.

  Descending on it makes the student's divergence from the teacher grow. The
  student runs in train mode, the teacher in eval mode (a stateful student's
  objective returns ``(value, new_state)``), as the reference implementation runs them.
  """

  def objective(params, batch, key, teacher):
    del key
    inputs, _ = batch
    t_logits = jax.lax.stop_gradient(apply_fn(teacher, inputs))  # eval mode
    logits, state = _state.forward(apply_fn, params, inputs, train=True)
    return _state.with_state(-distill_kl(logits, t_logits, temperature), state)

  return objective


def max_step(apply_fn: ApplyFn, tx: optax.GradientTransformation, temperature: float):
  """``loss_and_update(params, opt_state, batch, key, teacher)`` of a max step.

  Descends on :func:`max_objective`, so the divergence from the teacher grows;
  the returned loss is that objective before the step (minus the divergence).
  """
  return training.descent_on(max_objective(apply_fn, temperature), tx)


def min_objective(apply_fn: ApplyFn, temperature: float, gamma: float, alpha: float):
  """``objective(params, batch, key, teacher) = gamma * CE + alpha * distill_kl``."""

  def objective(params, batch, key, teacher):
    del key
    inputs, labels = batch
    t_logits = jax.lax.stop_gradient(apply_fn(teacher, inputs))  # eval mode
    logits, state = _state.forward(apply_fn, params, inputs, train=True)
    return _state.with_state(gamma * softmax_cross_entropy(logits, labels) + alpha * distill_kl(
        logits, t_logits, temperature
    ), state)

  return objective


def min_step(
    apply_fn: ApplyFn,
    tx: optax.GradientTransformation,
    temperature: float,
    gamma: float,
    alpha: float,
):
  """``loss_and_update(params, opt_state, batch, key, teacher)`` of a min step.

  Descends on :func:`min_objective` over the (retain) batch.
  """
  return training.descent_on(min_objective(apply_fn, temperature, gamma, alpha), tx)


def passes(epochs: int, msteps: int) -> list[tuple[str, ...]]:
  """The passes of each epoch: ``("max", "min")`` for the first ``msteps``, then ``("min",)``."""
  return [("max", "min") if e < msteps else ("min",) for e in range(epochs)]


SCRUB_ARRAYS = base.SGD_ARRAYS + ("temperature", "gamma", "alpha")


def program(problem: base.Problem, hparams: SCRUBHParams, name: str = "SCRUB") -> _program.Program:
  """SCRUB's program: :func:`passes` of max steps (forget) and min steps (retain),
  one optimizer for both, the teacher (the original) frozen."""
  batch_size = hparams.batch_size
  forget_batch_size = batch_size if hparams.forget_batch_size is None else hparams.forget_batch_size
  apply_fn = problem.apply_fn

  def max_(variables, opt_state, batch, key, hp, teacher):
    return max_step(apply_fn, base.sgd_from(hp), hp["temperature"])(
        variables, opt_state, batch, key, teacher)

  def min_(variables, opt_state, batch, key, hp, teacher):
    return min_step(apply_fn, base.sgd_from(hp), hp["temperature"], hp["gamma"], hp["alpha"])(
        variables, opt_state, batch, key, teacher)

  def segments(key, budget):
    keys = dict(zip(("max", "min"), jax.random.split(key)))
    sizes = {"max": ("forget", forget_batch_size), "min": ("retain", batch_size)}
    epochs = (passes(hparams.epochs, hparams.msteps) if budget is None
              else (("max", "min") if e < hparams.msteps else ("min",) for e in itertools.count()))
    for epoch, kinds in enumerate(epochs):
      for kind in kinds:
        data, size = sizes[kind]
        yield _program.Segment(kind, data, size,
                               jax.random.fold_in(jax.random.fold_in(keys[kind], epoch), 0),
                               f"{kind} pass, epoch {epoch + 1}")

  return _program.Program(
      steps={"max": max_, "min": min_},
      init=lambda params, hp, key: base.sgd_from(hp).init(params), segments=segments,
      arrays=SCRUB_ARRAYS,
      data={"forget": (problem.forget.x, problem.forget.y),
            "retain": (problem.retain.x, problem.retain.y)},
      aux=(problem.original,))


def unlearn(problem: base.Problem, hparams: SCRUBHParams, key: jax.Array, *,
            name: str = "SCRUB") -> Any:
  """SCRUB; see the module docstring."""
  return base.run_program(program(problem, hparams, name), problem, hparams, key, name)
