"""Sweep speed: G settings of one method as one program against G separate runs.

  python -m benchmarks.sweep_speed [--quick] [--method=IEU] [--g=16] [--steps=50]

The work is the same both ways: the small CNN of the main job (Fashion-MNIST
shapes, synthetic data: 500 forget and 4,500 retain examples), ``--steps``
optimizer steps of ``--method`` (IEU by default: a forget and a retain batch of
32 per step, with decay and noise) for each of ``G`` settings.

* ``loop``: a Python loop of ``G`` separate runs, ``methods.get(m).unlearn(...)``
  per setting, as a user without the sweep would run them; each run builds, traces
  and compiles its own step functions.
* ``sweep/<layout>``: ``ieu_jax.sweep`` of the ``G`` settings, one compiled step
  for all of them (``vmap``: vectorised, the default everywhere, by this
  benchmark; ``map``: ``lax.map`` over the settings inside the step).

Times are wall seconds from nothing, compilation included (both ways compile; the
loop compiles ``G`` times), the median of ``--repeats``. The last line is
``sweep_speed G=<G> one_program_vs_loop=<r>``: the loop's time over the default
layout's (above 1: the one program is faster).
"""

from __future__ import annotations

import argparse
import statistics
import time

import ieu_jax

ieu_jax.configure_cpu()  # before JAX starts, as the binaries do (docs/performance.md)

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from ieu_jax import _program  # pylint: disable=g-import-not-at-top,wrong-import-position
from ieu_jax import data as data_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from ieu_jax import methods  # pylint: disable=g-import-not-at-top,wrong-import-position
from ieu_jax import models  # pylint: disable=g-import-not-at-top,wrong-import-position

NUM_CLASSES, SHAPE = 10, (28, 28, 1)

# Each method's base setting and the values its grid crosses: 16 distinct settings
# (IEU 2 x 2 x 2 x 2, FT 4 x 2 x 2).
GRIDS = {
    "IEU": (dict(epochs=1, batch_size=32, retain_scale=1.0, ascent_scale=1.0),
            dict(learning_rate=(3e-3, 1e-2), weight_decay=(1e-2, 1e-1),
                 noise_std=(1e-3, 3e-3), retain_scale=(1.0, 2.0))),
    "FT": (dict(epochs=1, batch_size=32),
           dict(learning_rate=(1e-3, 3e-3, 1e-2, 3e-2), momentum=(0.0, 0.9),
                weight_decay=(0.0, 5e-4))),
}


def _dataset(key, n):
  kx, ky = jax.random.split(key)
  return data_lib.Dataset(jax.random.uniform(kx, (n, *SHAPE)),
                          jax.random.randint(ky, (n,), 0, NUM_CLASSES), NUM_CLASSES)


def problem():
  init_fn, apply_fn = models.build_model("cnn", NUM_CLASSES, SHAPE, features=(16, 32), hidden=128)
  return methods.Problem(apply_fn=apply_fn, init_fn=init_fn, original=init_fn(jax.random.key(0)),
                         forget=_dataset(jax.random.key(1), 500),
                         retain=_dataset(jax.random.key(2), 4500),
                         num_classes=NUM_CLASSES, train={})


def grid(method: str, g: int, steps: int):
  fixed, varied = GRIDS[method]
  combos = [dict(zip(varied, values)) for values in np.array(
      np.meshgrid(*varied.values(), indexing="ij"), dtype=object).reshape(len(varied), -1).T]
  if not 1 <= g <= len(combos):
    raise ValueError(f"--g={g}: {method}'s grid has {len(combos)} distinct settings; give"
                     f" 1 to {len(combos)} (a repeated setting would be swept once).")
  return [methods.hparams(method, dict(fixed, **c, steps=steps)) for c in combos[:g]]


def _block(tree):
  jax.tree.map(lambda a: a.block_until_ready(), tree)


def time_loop(method, prob, settings, key) -> float:
  start = time.perf_counter()
  for hp in settings:
    _block(methods.get(method).unlearn(prob, hp, key, name=method))
  return time.perf_counter() - start


def time_sweep(method, prob, settings, key, layout) -> float:
  start = time.perf_counter()
  _block(ieu_jax.sweep(method, prob, settings, key, layout=layout, name=method).variables)
  return time.perf_counter() - start


def main(argv=None) -> dict[str, float]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--method", default="IEU", choices=sorted(GRIDS))
  parser.add_argument("--g", type=int, default=16)
  parser.add_argument("--steps", type=int, default=50)
  parser.add_argument("--layouts", default="map,vmap")
  parser.add_argument("--repeats", type=int, default=1)
  parser.add_argument("--quick", action="store_true", help="G=2, 3 steps: a smoke run")
  args = parser.parse_args(argv)
  g, steps = (2, 3) if args.quick else (args.g, args.steps)
  prob, key = problem(), jax.random.key(3)
  settings = grid(args.method, g, steps)
  layouts = [l for l in args.layouts.split(",") if l]
  default = _program.default_layout()
  if default not in layouts:
    layouts.insert(0, default)
  print(f"# python -m benchmarks.sweep_speed --method={args.method} --g={g} --steps={steps}"
        f" --layouts={','.join(layouts)} --repeats={args.repeats}")
  print(f"# backend {jax.default_backend()}, {jax.device_count()} device(s), JAX {jax.__version__}")
  times = {"loop": statistics.median(time_loop(args.method, prob, settings, key)
                                     for _ in range(args.repeats))}
  for layout in layouts:
    times[f"sweep/{layout}"] = statistics.median(
        time_sweep(args.method, prob, settings, key, layout) for _ in range(args.repeats))
  for name, seconds in times.items():
    print(f"{name:12s} {seconds:8.2f} s   {g * steps / seconds:8.1f} setting-steps/s")
  ratio = times["loop"] / times[f"sweep/{default}"]
  print(f"sweep_speed G={g} one_program_vs_loop={ratio:.2f}")
  return times


if __name__ == "__main__":
  main()
