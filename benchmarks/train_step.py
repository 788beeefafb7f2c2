"""Training-step speed: the library's step against PyTorch's, same model, weights, batch.

  python -m benchmarks.train_step [--quick] [--no-configure-cpu] [--models=cnn,resnet18,...]

Every row times one optimizer step on a batch of 128: forward, backward and the
update, the batch gathered from an on-device data set by index (as
``training.fit`` does). ``jax`` is ``training.make_indexed_step`` over
``training.descent`` (the step every training loop, method and baseline here
runs); ``torch`` is the plain PyTorch loop (channels_last, ``torch.set_num_threads``
1 and 2) on a twin of the same model with the same weights
(``benchmarks/_torch_models.py``; the logits are checked to agree).

Models: the small CNN of the main job (features 16, 32; Adam), the same with
features 32, 64, ResNet-18 (GroupNorm, 32x32x3; SGD with momentum), and, library
only, the MLP and the generative half's UNet (16x16, Adam).

Before JAX starts, the benchmark calls :func:`ieu_jax.configure_cpu` (XLA:CPU
convolutions and elementwise fusions outside YNNPACK) as the binaries do;
``--no-configure-cpu`` measures XLA's default instead. Times are the median over
repeats of the mean time per step of a run of steps (compilation excluded). The last line is
``train_step cnn16x32 b128 jax_ms=<a> torch_ms=<b> ratio=<b/a>``, with ``torch_ms``
the faster of PyTorch's thread settings (above 1: the library is faster).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

BATCH = 128


def _args(argv):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="the small CNN only, fewer steps")
  parser.add_argument("--models", default=None,
                      help="comma-separated rows: cnn16x32,cnn32x64,resnet18,mlp,unet"
                           " (default: all; quick: cnn16x32)")
  parser.add_argument("--repeats", type=int, default=None, help="timed runs per row (5; quick 3)")
  parser.add_argument("--no-configure-cpu", action="store_true",
                      help="leave XLA:CPU's YNNPACK fusions at their default")
  return parser.parse_args(argv)


def _median_ms(run, steps: int, repeats: int) -> float:
  """Median over ``repeats`` of the wall ms per step of ``run(steps)`` (warmed up first)."""
  run(2)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    run(steps)
    times.append(1e3 * (time.perf_counter() - start) / steps)
  return statistics.median(times)


def _jax_row(name, init_fn, loss_fn, tx, data, steps, repeats, key):
  import jax  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from ieu_jax import training  # pylint: disable=g-import-not-at-top

  params = init_fn(key)

  def update(p, s, batch, k):
    del k
    value, grads = jax.value_and_grad(loss_fn)(p, batch)
    updates, s = tx.update(grads, s, p)
    return optax.apply_updates(p, updates), s, value

  step = training.make_indexed_step(update)
  x, y = data
  n = x.shape[0]
  order = jax.random.randint(jax.random.key(1), (64, BATCH), 0, n)
  state = training.fresh_copy((params, tx.init(params)))
  key = jax.random.key(2)

  def run(count):
    nonlocal state
    p, s = state
    for i in range(count):
      p, s, loss, _ = step(p, s, x, y, order[i % 64], key)
    jax.block_until_ready(loss)
    state = (p, s)

  return params, _median_ms(run, steps, repeats)


def _torch_rows(net, opt_fn, x_nhwc, labels, steps, repeats) -> dict[int, float]:
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top

  x = torch.from_numpy(np.asarray(x_nhwc).transpose(0, 3, 1, 2).copy())
  x = x.contiguous(memory_format=torch.channels_last)
  y = torch.from_numpy(np.asarray(labels).astype(np.int64))
  net = net.to(memory_format=torch.channels_last)
  opt = opt_fn(net.parameters())
  loss_fn = torch.nn.CrossEntropyLoss()
  order = torch.randint(0, x.shape[0], (64, BATCH), generator=torch.Generator().manual_seed(1))

  def run(count):
    for i in range(count):
      idx = order[i % 64]
      opt.zero_grad()
      loss_fn(net(x[idx]), y[idx]).backward()
      opt.step()

  out = {}
  for threads in (1, 2):
    torch.set_num_threads(threads)
    out[threads] = _median_ms(run, steps, repeats)
  return out


def main(argv=None) -> dict:
  args = _args(argv)
  # Before JAX starts its backend (the setting is read then).
  import ieu_jax  # pylint: disable=g-import-not-at-top

  configured = False if args.no_configure_cpu else ieu_jax.configure_cpu()
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from ieu_jax import models  # pylint: disable=g-import-not-at-top
  from ieu_jax.generative import unet  # pylint: disable=g-import-not-at-top

  try:
    import torch  # pylint: disable=g-import-not-at-top
    from benchmarks import _torch_models  # pylint: disable=g-import-not-at-top
  except ImportError:
    torch = None
  names = (args.models or ("cnn16x32" if args.quick else "cnn16x32,cnn32x64,resnet18,mlp,unet"))
  names = [n for n in names.split(",") if n]
  repeats = args.repeats or (3 if args.quick else 5)
  load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
  flags_now = os.environ.get("XLA_FLAGS", "")
  print(f"train_step: batch {BATCH}; {jax.device_count()} {jax.default_backend()} device(s),"
        f" {os.cpu_count()} CPUs, load {load:.1f}; jax {jax.__version__}"
        f"{', torch ' + torch.__version__ if torch else ', torch not installed'};"
        f" configure_cpu {'on' if configured else 'off'} (XLA_FLAGS={flags_now!r});"
        f" median of {repeats}")
  print(f"{'model':<10} {'params':>10} {'jax ms':>9} {'torch1 ms':>10} {'torch2 ms':>10}"
        f" {'ratio':>6}  logit check")
  key = jax.random.key(0)
  rows = {}
  for name in names:
    if name.startswith("cnn"):
      features = (16, 32) if name == "cnn16x32" else (32, 64)
      shape, classes, opt = (28, 28, 1), 10, "adam"
      init_fn, apply_fn = models.build_model("cnn", classes, shape, features=features, hidden=128)
    elif name == "resnet18":
      shape, classes, opt = (32, 32, 3), 10, "sgd"
      init_fn, apply_fn = models.build_model("resnet18", classes, shape)
    elif name == "mlp":
      shape, classes, opt = (28, 28, 1), 10, "adam"
      init_fn, apply_fn = models.build_model("mlp", classes, shape, hidden=(256, 128))
    elif name == "unet":
      shape, classes, opt = (16, 16, 1), 10, "adam"
      init_fn, eps_fn = unet.build_unet(classes, shape)
    else:
      raise ValueError(f"unknown model {name!r}")
    n = 2048
    x = jax.random.uniform(jax.random.key(3), (n, *shape))
    y = jax.random.randint(jax.random.key(4), (n,), 0, classes)
    if name == "unet":
      def loss_fn(p, batch, eps_fn=eps_fn):
        xb, yb = batch
        t = (yb * 97) % 1000  # fixed timesteps and noise: the cost, not the objective
        return jnp.mean(jnp.square(eps_fn(p, xb, t, yb) - xb))
    else:
      def loss_fn(p, batch, apply_fn=apply_fn):
        xb, yb = batch
        return optax.softmax_cross_entropy_with_integer_labels(apply_fn(p, xb), yb).mean()
    tx = optax.adam(1e-3) if opt == "adam" else optax.sgd(1e-2, momentum=0.9)
    steps = 3 if name == "resnet18" else (30 if args.quick else 50)
    params, jax_ms = _jax_row(name, init_fn, loss_fn, tx, (x, y), steps, repeats, key)
    count = sum(int(v.size) for v in jax.tree.leaves(params))
    torch_ms, check = {}, ""
    if torch is not None and name in ("cnn16x32", "cnn32x64", "resnet18"):
      if name == "resnet18":
        net = _torch_models.resnet18(params)
        opt_fn = lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9)
      else:
        net = _torch_models.small_cnn(params, features, 128, classes)
        opt_fn = lambda p: torch.optim.Adam(p, lr=1e-3)
      diff = _torch_models.max_logit_difference(net, apply_fn, params, x[:8])
      check = f"max |logit diff| {diff:.1e}"
      torch_ms = _torch_rows(net, opt_fn, x, y, steps, repeats)
    best = min(torch_ms.values()) if torch_ms else float("nan")
    rows[name] = (jax_ms, best)
    fmt = lambda v: f"{v:.2f}" if v == v else "n/a"
    print(f"{name:<10} {count:>10,} {jax_ms:>9.2f} {fmt(torch_ms.get(1, float('nan'))):>10}"
          f" {fmt(torch_ms.get(2, float('nan'))):>10} {fmt(best / jax_ms):>6}  {check}",
          flush=True)
  if "cnn16x32" in rows:
    jax_ms, torch_ms = rows["cnn16x32"]
    ratio = f"{torch_ms / jax_ms:.2f}" if torch_ms == torch_ms else "n/a"
    print(f"train_step cnn16x32 b{BATCH} jax_ms={jax_ms:.2f} torch_ms={torch_ms:.2f}"
          f" ratio={ratio}")
  return rows


if __name__ == "__main__":
  main(sys.argv[1:])
