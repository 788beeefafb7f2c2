"""IEU and its ablations: ascent on the forget set, weight decay, weight noise.

Each step takes a batch of the forget set (in shuffled epochs) and, when
``retain_scale > 0``, a batch of the retain set drawn with the step's key, and
applies :func:`ieu_jax.ieu_transform`. The paper's ablations are settings:

* GA: ``weight_decay = noise_std = 0`` (and here, no retain term);
* Noisy: ``ascent_scale = 0`` with noise and a retain term;
* GA+Noisy: no decay; GA+Decay: no noise; IEU: all three.

Ascent on cross-entropy is unbounded, and with a large forget set or a whole class
it can diverge to NaN (see docs/results.md). ``max_grad_norm`` (off by default)
clips the forget gradient's global norm before the transformation, so no step
moves the weights by more than ``learning_rate * ascent_scale * max_grad_norm``
through the ascent term.
"""

import jax
import optax

from ieu_jax import _transforms
from ieu_jax import training
from ieu_jax._steps import make_unlearn_step
from ieu_jax.methods import base


def make_transform(hparams, noise_key: jax.Array) -> optax.GradientTransformationExtraArgs:
  """:func:`ieu_jax.ieu_transform` from a method's hyperparameters (shared with the
  generative methods)."""
  return _transforms.ieu_transform(
      float(base.hp(hparams, "learning_rate")),
      ascent_scale=float(base.hp(hparams, "ascent_scale", 1.0)),
      retain_scale=float(base.hp(hparams, "retain_scale", 0.0)),
      weight_decay=float(base.hp(hparams, "weight_decay", 0.0)),
      noise_std=float(base.hp(hparams, "noise_std", 0.0)),
      key=noise_key,
  )


def unlearn(problem: base.Problem, hparams, key):
  retain_scale = float(base.hp(hparams, "retain_scale", 0.0))
  batch_size = int(base.hp(hparams, "batch_size", 128))
  noise_key, data_key = jax.random.split(key)
  tx = make_transform(hparams, noise_key)
  max_grad_norm = float(base.hp(hparams, "max_grad_norm", 0.0))
  if max_grad_norm > 0:
    tx = optax.chain(optax.clip_by_global_norm(max_grad_norm), tx)
  unlearn_step = make_unlearn_step(problem.apply_fn, tx, jit=False)

  def loss_and_update(params, opt_state, forget_batch, step_key, retain_x, retain_y):
    retain_batch = None
    if retain_scale:
      retain_batch = training.sample_batch(step_key, (retain_x, retain_y), batch_size)
    params, opt_state, metrics = unlearn_step(params, opt_state, forget_batch, retain_batch)
    return params, opt_state, metrics.forget_loss

  step = training.make_indexed_step(loss_and_update)
  params, _ = training.fit(
      problem.original, tx.init(problem.original), step, (problem.forget.x, problem.forget.y),
      epochs=int(base.hp(hparams, "epochs")), batch_size=batch_size, key=data_key,
      name=str(hparams.get("name", "IEU")), aux=(problem.retain.x, problem.retain.y),
  )
  return params
