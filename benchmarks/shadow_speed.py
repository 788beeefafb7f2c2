"""Shadow training speed: N models trained as one program against N separate runs.

  python -m benchmarks.shadow_speed [--quick] [--n=16] [--examples=1024] [--epochs=2]

The work is the same both ways: the small CNN of the main job (Fashion-MNIST
shapes, synthetic data), ``N`` fresh models, each trained with the pipeline's
recipe (Adam at 2e-3, cosine schedule, batches of ``--batch-size``) for
``--epochs`` epochs on its own ``--examples`` examples: its half of a population of
``2 * examples`` (:func:`ieu_jax.privacy.inclusion`).

* ``loop``: a Python loop of ``N`` separate runs of
  :func:`ieu_jax.methods.retrain.train_model`, each on its own half with its own
  key, as a user without the shadow engine would train them (each run compiles
  its own step);
* ``one_program``: :func:`ieu_jax.shadow.train_shadows`, every step one compiled
  call for all ``N`` models (``--layout``, default the library's).

Times are wall seconds from nothing, compilation included, the median of
``--repeats``. The last line is ``shadow_speed N=<N> one_program_vs_loop=<r>``: the
loop's time over the one program's (above 1: the one program is faster).
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
from ieu_jax import models  # pylint: disable=g-import-not-at-top,wrong-import-position
from ieu_jax import privacy  # pylint: disable=g-import-not-at-top,wrong-import-position
from ieu_jax import shadow  # pylint: disable=g-import-not-at-top,wrong-import-position
from ieu_jax.methods import retrain  # pylint: disable=g-import-not-at-top,wrong-import-position

NUM_CLASSES, SHAPE = 10, (28, 28, 1)


def population(n: int) -> data_lib.Dataset:
  kx, ky = jax.random.split(jax.random.key(1))
  return data_lib.Dataset(jax.random.uniform(kx, (n, *SHAPE)),
                          jax.random.randint(ky, (n,), 0, NUM_CLASSES), NUM_CLASSES)


def recipe(epochs: int, batch_size: int) -> dict:
  return {"optimizer": "adam", "learning_rate": 2e-3, "schedule": "cosine",
          "weight_decay": 0.0, "epochs": epochs, "batch_size": batch_size}


def _block(tree):
  jax.tree.map(lambda a: a.block_until_ready(), tree)


def time_loop(init_fn, apply_fn, pop, trained, hp, key) -> float:
  keys = jax.random.split(key, trained.shape[0])
  start = time.perf_counter()
  for m in range(trained.shape[0]):
    idx = np.flatnonzero(trained[m])
    half = data_lib.Dataset(pop.x[idx], pop.y[idx], NUM_CLASSES)
    _block(retrain.train_model(init_fn, apply_fn, half, hp, keys[m], f"model {m}"))
  return time.perf_counter() - start


def time_one_program(init_fn, apply_fn, pop, trained, hp, key, layout) -> float:
  start = time.perf_counter()
  _block(shadow.train_shadows(init_fn, apply_fn, pop, trained, hp, key, layout=layout))
  return time.perf_counter() - start


def main(argv=None) -> dict[str, float]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--n", type=int, default=16)
  parser.add_argument("--examples", type=int, default=1024, help="examples per model")
  parser.add_argument("--epochs", type=int, default=2)
  parser.add_argument("--batch-size", type=int, default=128)
  parser.add_argument("--layout", default=_program.default_layout(), choices=_program.LAYOUTS)
  parser.add_argument("--repeats", type=int, default=1)
  parser.add_argument("--quick", action="store_true", help="N=2, 32 examples, 1 epoch: a smoke run")
  args = parser.parse_args(argv)
  n, examples, epochs = (2, 32, 1) if args.quick else (args.n, args.examples, args.epochs)
  init_fn, apply_fn = models.build_model("cnn", NUM_CLASSES, SHAPE, features=(16, 32), hidden=128)
  pop = population(2 * examples)
  trained, _ = privacy.inclusion(0, n, 2 * examples, 1)
  hp, key = recipe(epochs, args.batch_size), jax.random.key(3)
  print(f"# python -m benchmarks.shadow_speed --n={n} --examples={examples} --epochs={epochs}"
        f" --batch-size={args.batch_size} --layout={args.layout} --repeats={args.repeats}")
  print(f"# backend {jax.default_backend()}, {jax.device_count()} device(s), JAX {jax.__version__}")
  times = {
      "loop": statistics.median(time_loop(init_fn, apply_fn, pop, trained, hp, key)
                                for _ in range(args.repeats)),
      "one_program": statistics.median(
          time_one_program(init_fn, apply_fn, pop, trained, hp, key, args.layout)
          for _ in range(args.repeats)),
  }
  steps = n * epochs * -(-examples // args.batch_size)
  for name, seconds in times.items():
    print(f"{name:12s} {seconds:8.2f} s   {steps / seconds:8.1f} model-steps/s")
  print(f"shadow_speed N={n} one_program_vs_loop={times['loop'] / times['one_program']:.2f}")
  return times


if __name__ == "__main__":
  main()
