"""FT: fine-tune the original model on the retain set (catastrophic forgetting)."""

from ieu_jax import training
from ieu_jax.methods import base


def unlearn(problem: base.Problem, hparams, key):
  tx = base.sgd(hparams)
  step = training.make_indexed_step(
      training.descent_on(training.classifier_objective(problem.apply_fn), tx))
  params, _ = training.fit(
      problem.original, tx.init(problem.original), step,
      (problem.retain.x, problem.retain.y),
      epochs=int(base.hp(hparams, "epochs")), batch_size=int(base.hp(hparams, "batch_size", 128)),
      key=key, name="FT",
  )
  return params
