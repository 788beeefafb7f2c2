"""The relearning engine behind :func:`ieu_jax.relearn`: formulations and the chunked driver.

A relearning *task* is two pure functions: ``objective(params, batch, key) ->
scalar``, the attacker's loss on a batch ``(x[idx], y[idx])`` of its data (for a
stateful model's :class:`ieu_jax._state.Variables`, ``(scalar, new_state)`` in
train mode, each trajectory carrying its own statistics), and
``evaluation(params, eval_data) -> (score, loss)``, what the criterion tests (a
classifier's accuracy in percent and loss on the evaluation set; a generator's
classifier-judged rate). The engine runs ``K`` trajectories of the attacker's
optimizer on that objective, in one of the layouts of :data:`FORMULATIONS`, in
chunks of steps between which the host tests the criterion (:func:`run`).

Randomness: trajectory ``k`` gets a key ``key_k`` (its data order comes from it, in
:mod:`ieu_jax._rcd`); its step ``t`` (0-based) calls the objective with
``fold_in(key_k, t + 1)``. A key-free objective ignores it (and XLA drops the
computation).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ieu_jax import _state

__all__ = ["AttackData", "FORMULATIONS", "SHARDED_FORMULATIONS", "STARTS", "TRAJECTORY_AXIS",
           "Program", "Runner", "criterion_met", "hits", "run", "trajectory_mesh"]

FORMULATIONS = ("vmap_scan", "vmap_loop", "sequential", "map_scan")
SHARDED_FORMULATIONS = ("vmap_scan", "map_scan")
TRAJECTORY_AXIS = "trajectory"

Objective = Callable[[Any, tuple[jax.Array, jax.Array], jax.Array], jax.Array]
Evaluation = Callable[[Any, Any], tuple[jax.Array, jax.Array]]


class AttackData(NamedTuple):
  """What every trajectory shares (replicated on every device).

  Attributes:
    x: the attacker's inputs (a batch is ``x[idx]``).
    y: their labels.
    eval: the evaluation's data, any pytree (the classifier's: ``(x, y)``); with
      per-trajectory evaluation indices, trajectory ``k`` evaluates on the
      examples ``eval_idx[k]`` of it (every leaf indexed on its leading axis).
    reference: params to measure ``||theta_t - reference||`` to, or None.
    guard: the guard's data (the evaluation's score on it is the guard), or None.
  """

  x: Any
  y: Any
  eval: Any
  reference: Any
  guard: Any = None


class Trajectories(NamedTuple):
  """What differs between trajectories (sharded along the trajectory axis).

  Attributes:
    lr: ``(K,)`` learning rates.
    key: ``(K, ...)`` raw key data of each trajectory's key.
    threshold: ``(K,)`` float32, each trajectory's criterion threshold (the
      guard is computed only where the criterion holds), or None.
    eval_idx: ``(K, n)`` each trajectory's evaluation examples, or None (all).
  """

  lr: Any
  key: Any
  threshold: Any = None
  eval_idx: Any = None


def _tree_distance(a, b) -> jax.Array:
  return optax.tree.norm(jax.tree.map(lambda x, y: x - y, a, b))


class Program:
  """The pieces every formulation is assembled from (all pure functions)."""

  def __init__(self, objective: Objective, evaluation: Evaluation, protocol, data: AttackData):
    self.objective = objective
    self.evaluation = evaluation
    self.protocol = protocol
    self.data = data

  def evaluate(self, params, traj: Trajectories | None = None, force_guard: bool = False):
    """``(4,)``: the criterion's score, the loss, the distance to the reference and
    the guard (NaN without guard data, and where the criterion does not hold
    unless ``force_guard``: a hit needs both, so the guard is skipped there)."""
    data = self.data.eval
    if traj is not None and traj.eval_idx is not None:
      data = jax.tree.map(lambda a: a[traj.eval_idx], data)
    score, value = self.evaluation(params, data)
    if self.data.reference is None:
      dist = jnp.array(jnp.nan, jnp.float32)
    else:
      dist = _tree_distance(_state.trainable(params), _state.trainable(self.data.reference))
    score = jnp.asarray(score, jnp.float32)
    value = jnp.asarray(value, jnp.float32)
    nan = jnp.array(jnp.nan, jnp.float32)
    if self.data.guard is None:
      guard = nan
    else:
      guard_score = lambda: jnp.asarray(self.evaluation(params, self.data.guard)[0], jnp.float32)
      if force_guard or traj is None or traj.threshold is None:
        guard = guard_score()
      else:
        met = criterion_met(score, value, traj.threshold, self.protocol.criterion)
        guard = jax.lax.cond(met, guard_score, lambda: nan)
    return jnp.stack([score, value, dist.astype(jnp.float32), guard])

  def init(self, params, traj: Trajectories):
    return params, self.protocol.make_optimizer(traj.lr).init(_state.trainable(params))

  def step(self, carry, traj: Trajectories, idx, t):
    # A stateful model's variables carry this trajectory's own statistics: the
    # objective runs in train mode and returns them updated.
    variables, opt_state = carry
    key = jax.random.fold_in(jax.random.wrap_key_data(traj.key), t + 1)
    batch = (self.data.x[idx], self.data.y[idx])
    params, state = _state.split(variables)
    if state is None:
      grads = jax.grad(self.objective)(params, batch, key)
    else:
      _, grads, state = _state.value_and_grad(self.objective)(variables, batch, key)
    updates, opt_state = self.protocol.make_optimizer(traj.lr).update(grads, opt_state, params)
    return _state.merge(optax.apply_updates(params, updates), state), opt_state

  def block(self, carry, traj, idx_block, t0):
    """The steps of ``idx_block`` ``(steps, batch)`` from step ``t0``, then an evaluation."""
    n = idx_block.shape[0]
    if n == 1:
      carry = self.step(carry, traj, idx_block[0], t0)
    else:
      steps = t0 + jnp.arange(n, dtype=jnp.int32)
      carry, _ = jax.lax.scan(lambda c, it: (self.step(c, traj, *it), None), carry,
                              (idx_block, steps))
    return carry, self.evaluate(carry[0], traj)

  def first(self, params, traj: Trajectories):
    """``(4,)`` the evaluation of the starting weights (the guard always computed)."""
    return self.evaluate(params, traj, force_guard=True)

  def chunk(self, carry, traj, blocks, t0):
    """Evaluation blocks ``(n, steps, batch)`` from step ``t0``: ``(carry, (n, 4))``."""
    n, e = blocks.shape[:2]
    starts = t0 + e * jnp.arange(n, dtype=jnp.int32)
    return jax.lax.scan(lambda c, b: self.block(c, traj, *b), carry, (blocks, starts))


class Runner(NamedTuple):
  """One formulation, started from the weights (see :data:`STARTS`).

  ``first`` is every trajectory's ``(K, 4)`` evaluation of the starting weights
  (host) and ``carry`` every trajectory's ``(params, opt_state)``. ``advance(carry,
  blocks, t0)`` runs every trajectory through evaluation blocks ``(K, n, steps,
  batch)`` (host indices) whose first step is ``t0``, and returns ``(carry, (K, n,
  4) host curves)``; it may consume ``carry``, so ``save(carry)`` returns a copy to
  advance from again. ``static_chunks``: ``advance`` compiles for the number of
  blocks (a scan), so every call should pass the same number.
  """

  first: np.ndarray
  carry: Any
  advance: Any
  save: Any
  static_chunks: bool = False


def trajectory_mesh(devices=None) -> Mesh:
  """A one-dimensional mesh over ``devices`` (default: all devices of all processes)."""
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (TRAJECTORY_AXIS,))


def _global(x, sharding: NamedSharding) -> jax.Array:
  """A global array from a value every process holds in full (works across hosts)."""
  host = np.asarray(x)
  return jax.make_array_from_callback(host.shape, sharding, lambda i: host[i])


def program_key(protocol):
  """The protocol with what the compiled programs do not depend on made constant.

  Learning rates and thresholds are arguments; K, the stopping rule, the guard's
  allowed drop, the probing and the formulation are applied on the host or come
  with the shapes. Equal keys share cached programs.
  """
  return dataclasses.replace(
      protocol, learning_rates=1.0, threshold=0.0, num_trajectories=1, guard_drop=None,
      max_steps=protocol.eval_every, stop_when_done=True, probe_every=1, formulation=None)


@functools.lru_cache(maxsize=16)
def _sharded_functions(objective, evaluation, protocol, local: str, mesh: Mesh):
  """The jitted programs, cached so repeated calls do not recompile."""

  def program(data):
    return Program(objective, evaluation, protocol, data)

  def init(params, traj):
    return jax.vmap(program(None).init, in_axes=(None, 0))(params, traj)

  def run_local(carry, data, traj, blocks, t0):
    pr = program(data)
    if local == "vmap_scan":
      return jax.vmap(pr.chunk, in_axes=(0, 0, 0, None))(carry, traj, blocks, t0)
    return jax.lax.map(lambda a: pr.chunk(*a, t0), (carry, traj, blocks))

  spec = P(TRAJECTORY_AXIS)
  run_ = jax.jit(jax.shard_map(run_local, mesh=mesh, in_specs=(spec, P(), spec, spec, P()),
                               out_specs=(spec, spec), check_vma=False),
                 donate_argnums=0)
  first = jax.jit(lambda data, p, traj: jax.vmap(program(data).first, in_axes=(None, 0))(p, traj))
  gather = jax.jit(lambda c: c, out_shardings=NamedSharding(mesh, P()))
  copy = jax.jit(lambda c: jax.tree.map(jnp.copy, c))
  return init, run_, first, gather, copy


def _start_sharded(prog: Program, params, traj: Trajectories, *, mesh: Mesh,
                   local: str) -> Runner:
  """Shards the trajectory axis over ``mesh``; ``local`` is how a device runs its share."""
  n, k = mesh.size, traj.lr.shape[0]
  padded = -(-k // n) * n  # padded with copies of the last trajectory; dropped below
  pad = lambda a: np.concatenate([a, np.repeat(a[-1:], padded - k, axis=0)])
  replicated = NamedSharding(mesh, P())
  sharded = NamedSharding(mesh, P(TRAJECTORY_AXIS))
  rep = lambda tree: jax.tree.map(lambda a: _global(a, replicated), tree)
  params, data = rep(params), rep(prog.data)
  whole = rep(traj)
  traj = jax.tree.map(lambda a: _global(pad(a), sharded), traj)
  init, run_, first_fn, gather, copy = _sharded_functions(
      prog.objective, prog.evaluation, program_key(prog.protocol), local, mesh)
  # The trajectory state is created already sharded along the trajectory axis:
  # its shapes first (no computation), then a program in which each device writes
  # only its share (no unsharded copy is ever built).
  state_shape = jax.eval_shape(init, params, traj)
  carry = jax.jit(init, out_shardings=jax.tree.map(lambda _: sharded, state_shape))(
      params, traj)
  first = np.asarray(first_fn(data, params, whole).addressable_data(0))

  def advance(carry, blocks, t0):
    carry, curves = run_(carry, data, traj, _global(pad(blocks), sharded),
                         _global(np.int32(t0), replicated))
    # Every process gets every trajectory's curves (small): gather, drop the padding.
    return carry, np.asarray(gather(curves).addressable_data(0))[:k]

  return Runner(first, carry, advance, copy, static_chunks=True)


def _start_vmap_loop(prog: Program, params, traj: Trajectories, *, mesh=None) -> Runner:
  del mesh
  block = jax.jit(jax.vmap(prog.block, in_axes=(0, 0, 0, None)))

  def advance(carry, blocks, t0):
    curves = []
    for g in range(blocks.shape[1]):
      carry, metrics = block(carry, traj, blocks[:, g], t0 + g * blocks.shape[2])
      curves.append(metrics)
    return carry, np.asarray(jnp.stack(curves, axis=1))

  carry = jax.jit(jax.vmap(prog.init, in_axes=(None, 0)))(params, traj)
  first = jax.jit(jax.vmap(prog.first, in_axes=(None, 0)))(params, traj)
  return Runner(np.asarray(first), carry, advance, lambda c: c)


@functools.lru_cache(maxsize=16)
def _sequential_functions(objective, evaluation, protocol):
  """Jitted single-copy init, evaluation and block, cached (data are arguments)."""

  def program(data):
    return Program(objective, evaluation, protocol, data)

  init = jax.jit(lambda p, traj: program(None).init(p, traj))
  first = jax.jit(lambda data, p, traj: program(data).first(p, traj))
  block = jax.jit(lambda data, carry, traj, idx, t0: program(data).block(carry, traj, idx, t0))
  return init, first, block


def _start_sequential(prog: Program, params, traj: Trajectories, *, mesh=None) -> Runner:
  del mesh
  init, first, block = _sequential_functions(
      prog.objective, prog.evaluation, program_key(prog.protocol))
  data = prog.data
  one = lambda k: jax.tree.map(lambda a: a[k], traj)

  def advance(carries, blocks, t0):
    carries, rows = list(carries), []
    for k in range(len(carries)):
      curve = []
      for g in range(blocks.shape[1]):
        carries[k], metrics = block(data, carries[k], one(k), blocks[k, g],
                                    t0 + g * blocks.shape[2])
        curve.append(metrics)
      rows.append(jnp.stack(curve))
    return carries, np.asarray(jnp.stack(rows))

  k_all = range(traj.lr.shape[0])
  carries = [init(params, one(k)) for k in k_all]
  firsts = np.stack([np.asarray(first(data, params, one(k))) for k in k_all])
  return Runner(firsts, carries, advance, list)


STARTS = {
    "vmap_scan": functools.partial(_start_sharded, local="vmap_scan"),
    "map_scan": functools.partial(_start_sharded, local="map_scan"),
    "vmap_loop": _start_vmap_loop,
    "sequential": _start_sequential,
}


def criterion_met(score, value, threshold, criterion: str):
  """Whether the criterion holds (NaN never does): ``score >= threshold`` for
  ``"accuracy"``, ``value <= threshold`` for ``"loss"``. Works on arrays of any
  backend; the host and the programs compare the same float32 values."""
  return score >= threshold if criterion == "accuracy" else value <= threshold


def hits(points: np.ndarray, protocol, threshold: np.ndarray, guard0: np.ndarray) -> np.ndarray:
  """Where a trajectory counts as relearned, from ``(K, n, 4)`` curve points.

  The criterion must hold against the trajectory's own ``threshold`` ``(K,)``
  (float32), and, with a guard (``protocol.guard_drop``), the guard must not have
  fallen more than ``guard_drop`` below ``guard0`` ``(K,)``, its value before
  relearning. NaN never counts.
  """
  thr = np.asarray(threshold, np.float32)[:, None]
  met = criterion_met(points[..., 0], points[..., 1], thr, protocol.criterion)
  if protocol.guard_drop is not None:
    floor = np.asarray(guard0, np.float32)[:, None] - np.float32(protocol.guard_drop)
    met = met & (points[..., 3] >= floor)
  return met


def run(start, prog: Program, params, traj: Trajectories, indices, chunk_steps: int,
        threshold: np.ndarray):
  """Runs the trajectories in chunks: probes, replays, and the stop.

  Without probing (``probe_every == 1``) every evaluation point is computed, in
  chunks of about ``chunk_steps`` steps with a host check of the stopping rule
  between them. With probing, a chunk is ``probe_every`` evaluation blocks run
  with one evaluation at its end; when a trajectory meets the criterion there
  for the first time, the chunk is replayed from its saved start with every
  point evaluated, so first hits keep the grid's resolution.

  ``threshold`` ``(K,)``: each trajectory's threshold (what ``traj.threshold``
  holds on the devices).

  Returns ``(curves, stop)``: ``(K, G, 4)`` curves on the evaluation grid (NaN
  at points not evaluated, and after grid point ``stop``, the last one any
  trajectory needed when the run stopped early).
  """
  protocol = prog.protocol
  e, probe = protocol.eval_every, protocol.probe_every
  num_blocks = protocol.max_steps // e
  k, _, batch = indices.shape
  blocks = indices.reshape(k, num_blocks, e, batch)
  if probe > 1:
    chunk = probe
  elif protocol.stop_when_done:
    # About chunk_steps per chunk, cut so that the chunks tile the budget as
    # evenly as they can (the last one is filled, below).
    count = -(-num_blocks // max(1, -(-chunk_steps // e)))
    chunk = -(-num_blocks // count)
  else:
    chunk = num_blocks
  # A scanned chunk has a static length (one compilation): the last is filled with
  # copies of the last block, whose results are dropped. Python-loop runners take
  # the last chunk as it is.
  fill = -num_blocks % chunk
  blocks = np.concatenate([blocks, np.repeat(blocks[:, -1:], fill, axis=1)], axis=1)

  runner = start(prog, params, traj)
  carry = runner.carry
  curves = np.full((k, num_blocks + 1, 4), np.nan, np.float32)
  curves[:, 0] = runner.first
  hits_of = lambda points: hits(points, protocol, threshold, curves[:, 0, 3])
  done = 0
  while done < num_blocks:
    met = hits_of(curves).any(axis=1)
    if protocol.stop_when_done and met.all():
      break
    window = blocks[:, done:done + chunk]
    n = min(chunk, num_blocks - done)
    t0 = done * e
    if probe > 1 and n == chunk:
      saved = runner.save(carry)
      carry, end = runner.advance(carry, window.reshape(k, 1, chunk * e, batch), t0)
      if hits_of(end)[:, 0][~met].any():  # a first hit: replay every point
        carry, out = runner.advance(saved, window, t0)
        curves[:, done + 1:done + 1 + n] = out
      else:
        curves[:, done + chunk] = end[:, 0]
    else:
      carry, out = runner.advance(carry, window if runner.static_chunks else window[:, :n], t0)
      curves[:, done + 1:done + 1 + n] = out[:, :n]
    done += n
  hit = hits_of(curves)
  if not protocol.stop_when_done or not hit.any(axis=1).all():
    return curves, num_blocks
  # Identical to the whole budget up to the last first hit, and NaN after it
  # (the steps a chunk ran past it are dropped, so the result is the same for
  # every chunk size).
  stop = int(np.argmax(hit, axis=1).max())
  curves[:, stop + 1:] = np.nan
  return curves, stop
