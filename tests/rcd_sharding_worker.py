"""Runs sharded RCD in a fresh process (device count or jax.distributed set up first).

Used by ``test_rcd_sharding.py``; not a test module itself::

  python tests/rcd_sharding_worker.py devices OUT.npz
  JAX_COORDINATOR_ADDRESS=127.0.0.1:PORT JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=I \
      python tests/rcd_sharding_worker.py process OUT.npz

The second form starts ``jax.distributed`` exactly as the experiment binaries do
(``experiments.entry.maybe_initialize``).
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np

import builders  # tests/, this script's folder, is on sys.path
from builders import linear_apply


def linear_problem():
  """The softmax regression the runs relearn: float32 ``(w0, (x, y))``, 40 examples."""
  return builders.as_relearn_inputs(*builders.softmax_regression(n=40))


def run_linear(mesh=None, formulation="map_scan", optimizer="adam", probe_every=1):
  import ieu_jax  # pylint: disable=g-import-not-at-top

  w0, data = linear_problem()
  protocol = ieu_jax.RelearnProtocol(
      optimizer=optimizer, learning_rates=(0.05, 0.2), momentum=0.5, batch_size=8,
      max_steps=24, criterion="loss", threshold=0.5, num_trajectories=3, eval_every=2,
      probe_every=probe_every,
  )
  return ieu_jax.relearn(w0, linear_apply, data, protocol, jax.random.key(7),
                         reference_params=jnp.zeros_like(w0), formulation=formulation,
                         mesh=mesh)


def run_cnn(mesh=None, formulation="map_scan"):
  import ieu_jax  # pylint: disable=g-import-not-at-top
  from ieu_jax import models  # pylint: disable=g-import-not-at-top

  init_fn, apply_fn = models.build_model("cnn", 3, (8, 8, 1), features=(3, 4), hidden=8)
  params = init_fn(jax.random.key(0))
  x = jax.random.normal(jax.random.key(1), (24, 8, 8, 1))
  y = jax.random.randint(jax.random.key(2), (24,), 0, 3)
  protocol = ieu_jax.RelearnProtocol(
      optimizer="sgd", learning_rates=0.1, momentum=0.9, batch_size=8, max_steps=6,
      criterion="loss", threshold=1.06, num_trajectories=5,
  )
  return ieu_jax.relearn(params, apply_fn, (x, y), protocol, jax.random.key(3),
                         reference_params=params, formulation=formulation, mesh=mesh)


def _flat(prefix, result):
  return {f"{prefix}.{k}": np.asarray(v) for k, v in result._asdict().items()}


def main(argv):
  import ieu_jax  # pylint: disable=g-import-not-at-top

  out = {}
  if argv[1] == "devices":
    path = argv[2]
    assert jax.device_count() == 8, jax.devices()
    one, eight = ieu_jax.trajectory_mesh(jax.devices()[:1]), ieu_jax.trajectory_mesh()
    for f, opt in (("map_scan", "adam"), ("map_scan", "sgd"), ("vmap_scan", "adam")):
      out.update(_flat(f"linear.{f}.{opt}.one", run_linear(one, f, opt)))
      out.update(_flat(f"linear.{f}.{opt}.eight", run_linear(eight, f, opt)))
    # Probing saves and replays the sharded trajectory state.
    out.update(_flat("linear.map_scan.probe.one", run_linear(one, probe_every=3)))
    out.update(_flat("linear.map_scan.probe.eight", run_linear(eight, probe_every=3)))
    for f in ("map_scan", "vmap_scan"):
      out.update(_flat(f"cnn.{f}.one", run_cnn(one, f)))
      out.update(_flat(f"cnn.{f}.eight", run_cnn(eight, f)))
    out.update(_flat("linear.sequential", run_linear(None, "sequential")))
  else:
    from experiments import entry  # pylint: disable=g-import-not-at-top

    path = argv[2]
    entry.maybe_initialize()
    assert jax.process_count() == 2 and jax.device_count() > jax.local_device_count()
    out.update(_flat("linear", run_linear()))
    out["devices"] = np.asarray(jax.device_count())
    if jax.process_index() != 0:
      return  # only process 0 writes
  np.savez(path, **out)


if __name__ == "__main__":
  main(sys.argv)
