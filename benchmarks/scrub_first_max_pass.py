"""How far SCRUB's first max pass moves the small CNN, and why.

  python -m benchmarks.scrub_first_max_pass [--steps=8]

SCRUB's student starts at the teacher. On a model whose forward pass is the same
function of the weights for both (no BatchNorm running statistics, no dropout: the
small CNN and our GroupNorm ResNet), the divergence ``KL(teacher || student)`` and
its gradient are then 0 up to float rounding, so the first max steps move the
weights only through the optimizer's coupled weight decay: after ``k`` steps from
``theta_0`` with a zero gradient, ``theta_k = c_k * theta_0``, ``c_k`` given by the
scalar recursion ``v_k = m * v_{k-1} + wd * c_{k-1}``, ``c_k = c_{k-1} - lr * v_k``.

The script trains the small CNN of the main job (features 16, 32) for a few Adam
steps on synthetic inputs with random labels (so its outputs are confident, as an
original model's are), then runs ``--steps`` max steps of SCRUB with the main
config's settings (SGD, lr 5e-4, momentum 0.9, weight decay 5e-4, T = 4) and prints:
the largest gradient entry at the start, the relative weight change
``||theta_k - theta_0|| / ||theta_0||``, the weight-decay-only prediction
``|1 - c_k|``, the forget divergence after the pass, and for scale the relative
change of one min step (retain batch, ``gamma * CE + alpha * KL``) taken from the
teacher. The last line is
``scrub_first_max_pass steps=<k> rel_change=<a> decay_only=<b> kl_after=<c>``.
"""

from __future__ import annotations

import argparse
import sys

LR, MOMENTUM, WD, TEMPERATURE, BATCH = 5e-4, 0.9, 5e-4, 4.0, 128


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--steps", type=int, default=8, help="max steps (the main job's forget set: 8)")
  parser.add_argument("--train_steps", type=int, default=60)
  args = parser.parse_args(argv)

  import ieu_jax  # pylint: disable=g-import-not-at-top
  ieu_jax.configure_cpu()
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from ieu_jax import models  # pylint: disable=g-import-not-at-top
  from ieu_jax.methods import scrub  # pylint: disable=g-import-not-at-top

  init_fn, apply_fn = models.build_model("cnn", 10, (28, 28, 1), features=(16, 32), hidden=128)
  kx, ky, kp = jax.random.split(jax.random.key(0), 3)
  n = BATCH * (args.steps + 2)
  x = jax.random.normal(kx, (n, 28, 28, 1))
  y = jax.random.randint(ky, (n,), 0, 10)
  params = init_fn(kp)
  adam = optax.adam(2e-3)
  train = jax.jit(scrub.min_step(apply_fn, adam, 1.0, gamma=1.0, alpha=0.0))
  state = adam.init(params)
  for i in range(args.train_steps):
    sl = slice((i % (n // BATCH)) * BATCH, (i % (n // BATCH) + 1) * BATCH)
    params, state, _ = train(params, state, (x[sl], y[sl]), None, params)
  teacher = params

  tx = scrub.SCRUBHParams(epochs=1, msteps=1, learning_rate=LR, momentum=MOMENTUM,
                          weight_decay=WD).optimizer()
  forget = [(x[i * BATCH:(i + 1) * BATCH], y[i * BATCH:(i + 1) * BATCH]) for i in range(args.steps)]
  retain = (x[-2 * BATCH:-BATCH], y[-2 * BATCH:-BATCH])
  grads = jax.jit(jax.grad(scrub.max_objective(apply_fn, TEMPERATURE)))(teacher, forget[0], None, teacher)
  g_max = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads))

  step = jax.jit(scrub.max_step(apply_fn, tx, TEMPERATURE))
  student, opt_state = teacher, tx.init(teacher)
  for batch in forget:
    student, opt_state, _ = step(student, opt_state, batch, None, teacher)
  norm = lambda t: float(optax.tree.norm(t))
  rel = norm(jax.tree.map(jnp.subtract, student, teacher)) / norm(teacher)
  c, v = 1.0, 0.0
  for _ in range(args.steps):
    v = MOMENTUM * v + WD * c
    c -= LR * v
  kl_after = max(float(scrub.distill_kl(apply_fn(student, bx), apply_fn(teacher, bx), TEMPERATURE))
                 for bx, _ in forget)
  min_step = jax.jit(scrub.min_step(apply_fn, tx, TEMPERATURE, gamma=0.99, alpha=0.001))
  after_min, _, _ = min_step(teacher, tx.init(teacher), retain, None, teacher)
  rel_min = norm(jax.tree.map(jnp.subtract, after_min, teacher)) / norm(teacher)

  print(f"largest |gradient| of the max objective at the teacher: {g_max:.3e}")
  print(f"relative weight change after {args.steps} max steps: {rel:.6e}")
  print(f"weight decay alone predicts:                  {abs(1 - c):.6e}")
  print(f"largest forget-batch KL_T after the pass:     {kl_after:.3e}")
  print(f"relative weight change of one min step:       {rel_min:.6e}")
  print(f"scrub_first_max_pass steps={args.steps} rel_change={rel:.3e} "
        f"decay_only={abs(1 - c):.3e} kl_after={kl_after:.3e}")
  return rel, abs(1 - c), kl_after


if __name__ == "__main__":
  main(sys.argv[1:])
