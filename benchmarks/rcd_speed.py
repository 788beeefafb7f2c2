"""RCD speed: K relearning trajectories of the small CNN, three ways, in one run.

  python -m benchmarks.rcd_speed [--quick] [--steps=50] [--ks=1,8,32]

Every way does the same work per trajectory and step: one SGD (momentum 0.9)
step on a batch of 32 relearn examples, then forget accuracy, forget loss and
weight distance on the evaluation set (what RCD tests after every step).

* ``library``: ``ieu_jax.relearn`` with the backend's default formulation (all
  K trajectories as one sharded program; ``map_scan`` on CPU, ``vmap_scan`` on
  GPU/TPU), plus any ``--formulations`` for comparison;
* ``loop``: a Python loop over K trajectories written plainly in JAX (flax conv as
  is): ``loop_steps`` calls one jitted step-and-evaluate per step (the best
  sequential JAX measured), ``loop_traj`` one jitted ``lax.scan`` per trajectory;
* ``torch``: the same relearning as a straightforward PyTorch loop (optional:
  skipped when torch is not installed), at each ``--torch-threads`` setting
  (default 1 and 2; the ratio is against the fastest).

Times are wall seconds of a warm run (compilation excluded; the first call's
time, compilation included, is shown beside it), the median of ``--repeats``.
The last line is ``rcd_speed K=<max K> vmap_vs_loop=<r> vmap_vs_torch=<r>``: each
ratio is the other's time over the library's (above 1: the library is faster),
against the faster of the two loops and the fastest torch setting.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

import ieu_jax

ieu_jax.configure_cpu()  # before JAX starts, as the binaries do (docs/performance.md)

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import optax  # pylint: disable=g-import-not-at-top,wrong-import-position

from ieu_jax import models  # pylint: disable=g-import-not-at-top,wrong-import-position

NUM_CLASSES, SHAPE = 10, (28, 28, 1)
FEATURES, HIDDEN = (16, 32), 128  # experiments/configs/fashion_mnist.py
LR, MOMENTUM, BATCH = 0.01, 0.9, 32


def _data(m: int):
  x = jax.random.uniform(jax.random.key(1), (m, *SHAPE))
  y = jax.random.randint(jax.random.key(2), (m,), 0, NUM_CLASSES)
  return x, y


def _protocol(k: int, steps: int):
  # No stopping: every trajectory runs the whole budget.
  return ieu_jax.RelearnProtocol(
      optimizer="sgd", learning_rates=LR, momentum=MOMENTUM, batch_size=BATCH,
      max_steps=steps, criterion="accuracy", num_trajectories=k, stop_when_done=False,
  )


def _timed(fn, repeats: int, warmup: bool = True) -> tuple[float, float, float]:
  """``(first call, median wall, median CPU)`` seconds; ``fn`` blocks until done.

  Without ``warmup`` (nothing to compile), the first call is also the timed one.
  """
  first = math.nan
  if warmup:
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
  wall, cpu = [], []
  for _ in range(repeats):
    start, start_cpu = time.perf_counter(), time.process_time()
    fn()
    wall.append(time.perf_counter() - start)
    cpu.append(time.process_time() - start_cpu)
  return first, statistics.median(wall), statistics.median(cpu)


def library(formulation, params, apply_fn, data, k, steps):
  protocol = _protocol(k, steps)

  def run():
    ieu_jax.relearn(params, apply_fn, data, protocol, jax.random.key(0),
                    reference_params=params, formulation=formulation)

  return run


class _JaxLoop:
  """K trajectories as a Python loop, written the plain way (no library)."""

  def __init__(self, params, apply_fn, data):
    self.params, self.x, self.y = params, *data
    tx = optax.sgd(LR, momentum=MOMENTUM)
    ref = params

    def evaluate(p):
      logits = apply_fn(p, self.x)
      acc = 100.0 * jnp.mean(jnp.argmax(logits, -1) == self.y)
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, self.y).mean()
      dist = optax.tree.norm(jax.tree.map(jnp.subtract, p, ref))
      return jnp.stack([acc, loss, dist])

    def step(carry, idx):
      p, s = carry
      loss = lambda q: optax.softmax_cross_entropy_with_integer_labels(
          apply_fn(q, self.x[idx]), self.y[idx]).mean()
      updates, s = tx.update(jax.grad(loss)(p), s, p)
      p = optax.apply_updates(p, updates)
      return (p, s), evaluate(p)

    def trajectory(p, indices):
      return jax.lax.scan(step, (p, tx.init(p)), indices)[1]

    self.init = jax.jit(tx.init)
    self.step = jax.jit(step)
    self.trajectory = jax.jit(trajectory)
    self.evaluate = jax.jit(evaluate)

  def indices(self, k, steps):
    return [ieu_jax.trajectory_batch_indices(jax.random.fold_in(jax.random.key(0), i),
                                             self.x.shape[0], steps, BATCH) for i in range(k)]

  def steps_fn(self, k, steps):
    orders = self.indices(k, steps)

    def run():
      out = []
      for i in range(k):
        carry, curve = (self.params, self.init(self.params)), [self.evaluate(self.params)]
        for t in range(steps):
          carry, metrics = self.step(carry, orders[i][t])
          curve.append(metrics)
        out.append(jnp.stack(curve))
      np.asarray(jnp.stack(out))

    return run

  def traj_fn(self, k, steps):
    orders = self.indices(k, steps)

    def run():
      out = [self.trajectory(self.params, orders[i]) for i in range(k)]
      np.asarray(jnp.stack(out))

    return run


def torch_fn(params, data, k, steps, threads=1):
  """The same relearning as a plain PyTorch loop, from the same weights and data."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top

  x = torch.from_numpy(np.array(data[0]).transpose(0, 3, 1, 2).copy())
  y = torch.from_numpy(np.array(data[1]).astype(np.int64))

  def build():
    from benchmarks import _torch_models  # pylint: disable=g-import-not-at-top

    return _torch_models.small_cnn(params, FEATURES, HIDDEN, NUM_CLASSES, SHAPE[0])

  reference = [q.detach().clone() for q in build().parameters()]
  gen = torch.Generator().manual_seed(0)
  loss_fn = nn.CrossEntropyLoss()

  def evaluate(net):
    with torch.no_grad():
      logits = net(x)
      acc = 100.0 * (logits.argmax(-1) == y).float().mean()
      dist = torch.sqrt(sum(((q - r) ** 2).sum() for q, r in zip(net.parameters(), reference)))
      return torch.stack([acc, loss_fn(logits, y), dist])

  def run():
    torch.set_num_threads(threads)
    out = []
    for _ in range(k):
      net = build()
      opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
      curve = [evaluate(net)]
      order = torch.cat([torch.randperm(len(y), generator=gen)
                         for _ in range(-(-steps * BATCH // len(y)))])
      for t in range(steps):
        idx = order[t * BATCH:(t + 1) * BATCH]
        opt.zero_grad()
        loss_fn(net(x[idx]), y[idx]).backward()
        opt.step()
        curve.append(evaluate(net))
      out.append(torch.stack(curve))
    torch.stack(out).numpy()

  return run


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help="few steps, one repeat, library path and loop_steps only (< 60 s)")
  parser.add_argument("--ks", default="1,8,32", help="comma-separated K values")
  parser.add_argument("--steps", type=int, default=None, help="relearning steps (50; quick 6)")
  parser.add_argument("--relearn-size", type=int, default=None,
                      help="relearn/evaluation examples m (256; quick 128)")
  parser.add_argument("--repeats", type=int, default=None, help="timed runs (3; quick 1)")
  parser.add_argument("--formulations", default=None,
                      help="extra library formulations to time (default: vmap_scan,sequential;"
                           " quick: none)")
  parser.add_argument("--torch-threads", default="1,2",
                      help="comma-separated torch.set_num_threads settings, each timed; the"
                           " ratio is against the fastest")
  parser.add_argument("--max-traj-k", type=int, default=8,
                      help="time loop_traj only up to this K (it is the slowest way on CPU)")
  args = parser.parse_args(argv)
  quick = args.quick
  steps = args.steps or (6 if quick else 50)
  m = args.relearn_size or (128 if quick else 256)
  repeats = args.repeats or (1 if quick else 3)
  ks = [int(v) for v in args.ks.split(",")]
  default = ieu_jax.default_formulation()
  extra = args.formulations if args.formulations is not None else (
      "" if quick else "vmap_scan,sequential")
  formulations = [default] + [f for f in extra.split(",") if f and f != default]
  try:
    import torch  # noqa: F401  # pylint: disable=g-import-not-at-top,unused-import
    have_torch = True
  except ImportError:
    have_torch = False

  init_fn, apply_fn = models.build_model("cnn", NUM_CLASSES, SHAPE, features=FEATURES,
                                         hidden=HIDDEN)
  params = init_fn(jax.random.key(0))
  data = _data(m)
  loop = _JaxLoop(params, apply_fn, data)
  load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
  print(f"rcd_speed: small CNN {FEATURES}/{HIDDEN} on {SHAPE}, batch {BATCH}, {steps} steps,"
        f" eval on {m} examples each step; {jax.device_count()} {jax.default_backend()}"
        f" device(s), {os.cpu_count()} CPUs, load {load:.1f}; median of {repeats}")
  print(f"{'way':<22} {'K':>3} {'first call s':>12} {'warm s':>8} {'ms/traj-step':>13}"
        f" {'CPU s':>7}")
  rows = {}

  def record(name, k, fn, warmup=True):
    first, warm, cpu = _timed(fn, repeats, warmup)
    rows[(name, k)] = warm
    print(f"{name:<22} {k:>3} {first:>12.2f} {warm:>8.2f} {1e3 * warm / (k * steps):>13.2f}"
          f" {cpu:>7.2f}", flush=True)

  for k in ks:
    for f in formulations:
      tag = "library " + f + (" *" if f == default else "")
      record(tag, k, library(f, params, apply_fn, data, k, steps))
    # Its step compiles once for every K: quick runs warm it up only at the first K.
    record("loop_steps (jax)", k, loop.steps_fn(k, steps), not quick or k == ks[0])
    if not quick and k <= args.max_traj_k:
      record("loop_traj (jax)", k, loop.traj_fn(k, steps))
    if have_torch:
      for threads in (int(t) for t in args.torch_threads.split(",")):
        record(f"torch ({threads} thread{'s' if threads > 1 else ''})", k,
               torch_fn(params, data, k, steps, threads), not quick or k == ks[0])
  kmax = max(ks)
  ours = rows[("library " + default + " *", kmax)]
  best_loop = min(v for (name, k), v in rows.items() if name.startswith("loop") and k == kmax)
  torch_time = [v for (name, k), v in rows.items() if name.startswith("torch") and k == kmax]
  torch_ratio = f"{min(torch_time) / ours:.2f}" if torch_time else "n/a"
  print(f"(* = the library's default on {jax.default_backend()}; torch"
        f" {'installed' if have_torch else 'not installed: pip install torch'})")
  print(f"rcd_speed K={kmax} vmap_vs_loop={best_loop / ours:.2f} vmap_vs_torch={torch_ratio}")
  return rows


if __name__ == "__main__":
  main(sys.argv[1:])
