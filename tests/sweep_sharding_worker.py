"""Runs a sweep over 4 fake CPU devices and over one of them, in a fresh process.

Used by ``test_sweep_sharding.py``; not a test module itself::

  XLA_FLAGS=--xla_force_host_platform_device_count=4 python tests/sweep_sharding_worker.py OUT.npz
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np


def main(out):
  from ieu_jax import _program  # pylint: disable=g-import-not-at-top
  from ieu_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from ieu_jax import methods  # pylint: disable=g-import-not-at-top
  from ieu_jax import models  # pylint: disable=g-import-not-at-top

  assert jax.device_count() == 4, jax.devices()
  init_fn, apply_fn = models.build_model("cnn", 3, (8, 8, 1), features=(3, 4), hidden=8)
  rng = np.random.default_rng(0)
  ds = lambda n: data_lib.Dataset(jnp.asarray(rng.normal(size=(n, 8, 8, 1)), jnp.float32),
                                  jnp.asarray(rng.integers(0, 3, n), jnp.int32), 3)
  problem = methods.Problem(apply_fn=apply_fn, init_fn=init_fn, original=init_fn(jax.random.key(0)),
                            forget=ds(12), retain=ds(24), num_classes=3, train={})
  # 5 settings: padded to 8 on 4 devices, then dropped; budgets share one run.
  grid = [methods.hparams("IEU", dict(epochs=1, batch_size=4, retain_scale=1.0, learning_rate=lr,
                                      weight_decay=0.1, noise_std=1e-3, steps=steps))
          for steps in (3, 7) for lr in (0.01, 0.03, 0.1, 0.2, 3e3)]
  key = jax.random.key(5)
  results = {}
  for label, devices in (("four", jax.devices()), ("one", jax.devices()[:1])):
    r = methods.sweep("IEU", problem, grid, key, mesh=_program.settings_mesh(devices))
    leaves = jax.tree.leaves(r.variables)
    results.update({f"{label}.leaf{i}": np.asarray(a) for i, a in enumerate(leaves)})
    results[f"{label}.diverged"] = r.diverged
    results[f"{label}.shards"] = np.asarray(len(leaves[0].sharding.device_set))
  # Shadow models: per-setting data (maps), keys, starts and SCRUB's per-copy teacher.
  from ieu_jax import privacy  # pylint: disable=g-import-not-at-top
  from ieu_jax import shadow  # pylint: disable=g-import-not-at-top
  population = ds(40)
  trained, forgotten = privacy.inclusion(3, 3, 40, 4)  # 3 copies: padded to 4
  train = dict(optimizer="sgd", learning_rate=0.05, epochs=2, batch_size=5)
  for label, devices in (("four", jax.devices()), ("one", jax.devices()[:1])):
    mesh = _program.settings_mesh(devices)
    copies = shadow.train_shadows(init_fn, apply_fn, population, trained, train,
                                  jax.random.key(1), mesh=mesh)
    unlearned, div = shadow.unlearn_shadows(
        "SCRUB", problem, copies, trained, forgotten,
        dict(epochs=2, msteps=1, learning_rate=0.05, batch_size=2), jax.random.key(2),
        population=population, mesh=mesh)
    for what, tree in (("shadow", copies), ("scrub", unlearned)):
      for i, a in enumerate(jax.tree.leaves(tree)):
        results[f"{label}.{what}{i}"] = np.asarray(a)
    results[f"{label}.scrub_diverged"] = div
  np.savez(out, **results)


if __name__ == "__main__":
  main(sys.argv[1])
