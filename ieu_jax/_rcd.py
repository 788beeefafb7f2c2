"""RCD: Relearning Convergence Delay.

From weights ``theta``, an attacker relearns the forget set (or ``m`` examples of
it) by SGD or Adam. ``T(theta)`` is the first step at which the forget-set criterion
holds (accuracy >= ``threshold`` percent, or loss <= ``threshold``), evaluated
after every step (or every ``eval_every`` steps) on a fixed evaluation set. A run
that never meets it within ``max_steps`` is *censored*: reported as such, never
counted as ``max_steps``.

``K`` trajectories that differ in data order (and, optionally, a grid of learning
rates) are one computation over a leading trajectory axis. How that computation is
laid out is a choice of *formulation* (see :data:`FORMULATIONS`), because the
fastest layout depends on the backend:

* ``"vmap_scan"``: one jitted program, ``vmap`` over trajectories of a ``lax.scan``
  over steps (no host round trip inside a chunk; the fast way on GPU/TPU);
* ``"vmap_loop"``: a Python loop over steps of one jitted, vmapped step;
* ``"map_scan"``: one jitted program, ``lax.map`` over trajectories of the same
  ``lax.scan`` over steps: trajectories run one after another inside the program
  (the fast way on XLA:CPU, see ``docs/performance.md``);
* ``"sequential"``: a Python loop over trajectories and steps of one jitted
  single-copy step.

All compute the same numbers from the same keys (to float rounding).

Every formulation runs in chunks of steps with the trajectory state kept between
them (on the devices, sharded, for the one-program forms). Between chunks the host
tests the criterion, so a run can end once every trajectory has met it
(``stop_when_done``), and, with ``probe_every > 1``, a chunk evaluated only at its
end can be replayed point by point from its saved start when it holds a first hit.

The one-program formulations (``"vmap_scan"``, ``"map_scan"``) are sharded along
the trajectory axis of a one-dimensional device mesh (by default all devices, of
all processes under ``jax.distributed``): the trajectory state is created already
sharded (``jax.eval_shape``, then ``jax.jit`` with ``out_shardings``), and each
device runs its share of the trajectories inside ``jax.shard_map`` with no
communication until the (small) curves are gathered at the end. When the number
of trajectories is not a multiple of the number of devices, the trajectory axis
is padded with copies of the last trajectory, whose results are dropped.

On CPU, for the one-program formulations, plain convolutions in ``apply_fn`` are
rewritten by
:func:`ieu_jax._canonical_conv.canonicalize_convs` (same values; their gradients
in XLA:CPU's fast layout, which XLA does not find inside loops by itself).

Step ``0`` is the model before any relearning: a model that already meets the
criterion has ``T = 0``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Literal, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ieu_jax._canonical_conv import canonicalize_convs
from ieu_jax._steps import ApplyFn, softmax_cross_entropy

__all__ = [
    "FORMULATIONS",
    "RelearnProtocol",
    "RelearnResult",
    "RCDSummary",
    "SHARDED_FORMULATIONS",
    "TRAJECTORY_AXIS",
    "relearn",
    "default_formulation",
    "trajectory_mesh",
    "rcd_summary",
    "trajectory_batch_indices",
]

FORMULATIONS = ("vmap_scan", "vmap_loop", "sequential", "map_scan")
SHARDED_FORMULATIONS = ("vmap_scan", "map_scan")
TRAJECTORY_AXIS = "trajectory"


@dataclasses.dataclass(frozen=True)
class RelearnProtocol:
  """How the attacker relearns, and what counts as relearned.

  Attributes:
    optimizer: ``"sgd"`` or ``"adam"``.
    learning_rates: one learning rate, or several: every one of the
      ``num_trajectories`` data orders is run at every learning rate.
    momentum: SGD momentum (ignored by Adam).
    batch_size: examples per relearning step (capped at the relearn set's size).
    max_steps: the step budget ``T_max``.
    criterion: ``"accuracy"`` (forget accuracy in percent ``>= threshold``) or
      ``"loss"`` (mean forget loss ``<= threshold``).
    threshold: ``tau`` (percent) or the target loss.
    num_trajectories: ``K``, data orders per learning rate.
    eval_every: evaluate (and test the criterion) every this many steps.
    stop_when_done: end the run once every trajectory has met the criterion
      (the curves after the last first hit are then NaN; first hits are the same
      as over the whole budget). False runs every trajectory to ``max_steps``.
    probe_every: test the criterion only every this many evaluation points
      (cheaper when an evaluation costs more than the steps between two), and
      when a trajectory meets it for the first time, replay that window from its
      saved start with every point evaluated. First hits keep the grid's
      resolution whenever a trajectory that meets the criterion inside a window
      still meets it at the window's end (a hit that comes and goes between two
      probes is missed); the curves are NaN at the points not evaluated.
  """

  optimizer: Literal["sgd", "adam"] = "sgd"
  learning_rates: float | Sequence[float] = 0.01
  momentum: float = 0.0
  batch_size: int = 32
  max_steps: int = 200
  criterion: Literal["accuracy", "loss"] = "accuracy"
  threshold: float = 90.0
  num_trajectories: int = 8
  eval_every: int = 1
  stop_when_done: bool = True
  probe_every: int = 1

  def __post_init__(self):
    if self.optimizer not in ("sgd", "adam"):
      raise ValueError(f"optimizer={self.optimizer!r}: expected 'sgd' or 'adam'.")
    if self.criterion not in ("accuracy", "loss"):
      raise ValueError(f"criterion={self.criterion!r}: expected 'accuracy' or 'loss'.")
    for name in ("batch_size", "max_steps", "num_trajectories", "eval_every", "probe_every"):
      value = getattr(self, name)
      if not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive integer.")
    if not isinstance(self.stop_when_done, (bool, np.bool_)):
      raise ValueError(f"stop_when_done={self.stop_when_done!r} must be True or False.")
    if self.max_steps % self.eval_every:
      raise ValueError(
          f"max_steps={self.max_steps} is not a multiple of eval_every={self.eval_every}."
      )
    lrs = self.lr_grid
    if not lrs or not all(math.isfinite(lr) and lr > 0 for lr in lrs):
      raise ValueError(f"learning_rates={self.learning_rates!r} must be positive numbers.")

  @property
  def lr_grid(self) -> tuple[float, ...]:
    lrs = self.learning_rates
    return tuple(float(x) for x in (lrs if isinstance(lrs, Sequence) else (lrs,)))

  @property
  def total_trajectories(self) -> int:
    return self.num_trajectories * len(self.lr_grid)

  @property
  def eval_steps(self) -> np.ndarray:
    """The steps at which the criterion is tested: ``0, eval_every, ..., max_steps``."""
    return np.arange(0, self.max_steps + 1, self.eval_every)

  def make_optimizer(self, learning_rate) -> optax.GradientTransformation:
    if self.optimizer == "adam":
      return optax.adam(learning_rate)
    return optax.sgd(learning_rate, momentum=self.momentum or None)


class RelearnResult(NamedTuple):
  """``K`` relearning trajectories (host arrays; leading axis = trajectory).

  Attributes:
    first_hit: ``(K,)`` int, the first evaluated step meeting the criterion; ``-1``
      where censored.
    censored: ``(K,)`` bool, never met within ``max_steps``.
    learning_rate: ``(K,)`` the relearning rate of each trajectory.
    steps: ``(G,)`` the evaluation grid.
    accuracy: ``(K, G)`` forget accuracy (percent) on the evaluation set.
    loss: ``(K, G)`` mean forget loss on the evaluation set.
    distance: ``(K, G)`` ``||theta_t - reference||_2`` (NaN without a reference).
    stopped_at: the last step evaluated: ``max_steps``, or, when the protocol
      stops once every trajectory has met the criterion, the largest first hit
      (the curves are NaN after it).
  """

  first_hit: np.ndarray
  censored: np.ndarray
  learning_rate: np.ndarray
  steps: np.ndarray
  accuracy: np.ndarray
  loss: np.ndarray
  distance: np.ndarray
  stopped_at: int | None = None


class RCDSummary(NamedTuple):
  """RCD of one model, optionally normalised by a reference model's.

  ``steps_mean`` and ``steps_std`` are over the trajectories that met the
  criterion (NaN when none did); ``censored_frac`` says how many did not, and when
  it is positive the true mean is larger than ``steps_mean``. ``normalized`` is
  ``steps_mean / reference steps_mean`` (NaN when undefined).
  """

  steps_mean: float
  steps_std: float
  censored_frac: float
  normalized: float


def trajectory_batch_indices(
    key: jax.Array, num_examples: int, num_steps: int, batch_size: int
) -> jax.Array:
  """``(num_steps, batch)`` example indices: successive epochs of fresh permutations."""
  batch = min(batch_size, num_examples)
  epochs = -(-num_steps * batch // num_examples)
  perms = jax.vmap(lambda k: jax.random.permutation(k, num_examples))(
      jax.random.split(key, epochs)
  )
  return perms.reshape(-1)[: num_steps * batch].reshape(num_steps, batch)


def _tree_distance(a, b) -> jax.Array:
  return optax.tree.norm(jax.tree.map(lambda x, y: x - y, a, b))


class _Program:
  """The pieces every formulation is assembled from (all pure functions)."""

  def __init__(self, apply_fn, protocol, loss, relearn_data, eval_data, reference):
    self.apply_fn = apply_fn
    self.protocol = protocol
    self.loss = loss
    self.relearn_x, self.relearn_y = relearn_data
    self.eval_x, self.eval_y = eval_data
    self.reference = reference

  def evaluate(self, params):
    logits = self.apply_fn(params, self.eval_x)
    acc = 100.0 * jnp.mean(jnp.argmax(logits, -1) == self.eval_y)
    value = self.loss(logits, self.eval_y)
    if self.reference is None:
      dist = jnp.array(jnp.nan, jnp.float32)
    else:
      dist = _tree_distance(params, self.reference)
    return jnp.stack([acc, value, dist.astype(acc.dtype)])

  def init(self, params, lr):
    return params, self.protocol.make_optimizer(lr).init(params)

  def step(self, carry, lr, idx):
    params, opt_state = carry

    def batch_loss(p):
      return self.loss(self.apply_fn(p, self.relearn_x[idx]), self.relearn_y[idx])

    grads = jax.grad(batch_loss)(params)
    updates, opt_state = self.protocol.make_optimizer(lr).update(
        grads, opt_state, params
    )
    return optax.apply_updates(params, updates), opt_state

  def block(self, carry, lr, idx_block):
    """The steps of ``idx_block`` ``(steps, batch)``, then an evaluation."""
    if idx_block.shape[0] == 1:
      carry = self.step(carry, lr, idx_block[0])
    else:
      carry, _ = jax.lax.scan(lambda c, i: (self.step(c, lr, i), None), carry, idx_block)
    return carry, self.evaluate(carry[0])

  def chunk(self, carry, lr, blocks):
    """Evaluation blocks ``(n, eval_every, batch)`` as one scan: ``(carry, (n, 3))``."""
    return jax.lax.scan(lambda c, b: self.block(c, lr, b), carry, blocks)


def trajectory_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A one-dimensional mesh over ``devices`` (default: all devices of all processes)."""
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (TRAJECTORY_AXIS,))


def _global(x, sharding: NamedSharding) -> jax.Array:
  """A global array from a value every process holds in full (works across hosts)."""
  host = np.asarray(x)
  return jax.make_array_from_callback(host.shape, sharding, lambda i: host[i])


def _program_key(protocol: RelearnProtocol) -> RelearnProtocol:
  """The protocol with what the compiled programs do not depend on made constant.

  Learning rates are arguments; the criterion, threshold, K, the stopping rule and
  the probing are applied on the host or come with the shapes. Equal keys share cached
  programs.
  """
  return dataclasses.replace(
      protocol, learning_rates=1.0, threshold=0.0, criterion="loss", num_trajectories=1,
      max_steps=protocol.eval_every, stop_when_done=True, probe_every=1)


def _data(prog: _Program):
  return (prog.relearn_x, prog.relearn_y, prog.eval_x, prog.eval_y, prog.reference)


class _Runner(NamedTuple):
  """One formulation, started from the weights (see :data:`_STARTS`).

  ``first`` is the ``(3,)`` evaluation of the starting weights (host) and
  ``carry`` every trajectory's ``(params, opt_state)``. ``advance(carry, blocks)``
  runs every trajectory through evaluation blocks ``(K, n, steps, batch)`` (host
  indices) and returns ``(carry, (K, n, 3) host curves)``; it may consume
  ``carry``, so ``save(carry)`` returns a copy to advance from again.
  ``static_chunks``: ``advance`` compiles for the number of blocks (a scan), so
  every call should pass the same number.
  """

  first: np.ndarray
  carry: Any
  advance: Any
  save: Any
  static_chunks: bool = False


@functools.lru_cache(maxsize=16)
def _sharded_functions(apply_fn, protocol, loss, local: str, mesh: Mesh):
  """The jitted programs, cached so repeated calls do not recompile."""

  def program(data):
    return _Program(apply_fn, protocol, loss, data[:2], data[2:4], data[4])

  def init(params, lrs):
    return jax.vmap(program((None,) * 5).init, in_axes=(None, 0))(params, lrs)

  def run_local(carry, data, lrs, blocks):
    pr = program(data)
    if local == "vmap_scan":
      return jax.vmap(pr.chunk)(carry, lrs, blocks)
    return jax.lax.map(lambda a: pr.chunk(*a), (carry, lrs, blocks))

  spec = P(TRAJECTORY_AXIS)
  run = jax.jit(jax.shard_map(run_local, mesh=mesh, in_specs=(spec, P(), spec, spec),
                              out_specs=(spec, spec), check_vma=False),
                donate_argnums=0)
  evaluate = jax.jit(lambda data, p: program(data).evaluate(p))
  gather = jax.jit(lambda c: c, out_shardings=NamedSharding(mesh, P()))
  copy = jax.jit(lambda c: jax.tree.map(jnp.copy, c))
  return init, run, evaluate, gather, copy


def _start_sharded(prog: _Program, params, lrs, *, mesh: Mesh, local: str) -> _Runner:
  """Shards the trajectory axis over ``mesh``; ``local`` is how a device runs its share."""
  n, k = mesh.size, lrs.shape[0]
  padded = -(-k // n) * n  # padded with copies of the last trajectory; dropped below
  lrs = np.concatenate([lrs, np.repeat(lrs[-1:], padded - k)])
  replicated = NamedSharding(mesh, P())
  sharded = NamedSharding(mesh, P(TRAJECTORY_AXIS))
  rep = lambda tree: jax.tree.map(lambda a: _global(a, replicated), tree)
  params, data = rep(params), rep(_data(prog))
  lrs = _global(lrs, sharded)
  # Learning rates are arguments, not part of the program: key the cache without them.
  init, run, evaluate, gather, copy = _sharded_functions(
      prog.apply_fn, _program_key(prog.protocol), prog.loss, local, mesh)
  # The trajectory state is created already sharded along the trajectory axis:
  # its shapes first (no computation), then a program in which each device writes
  # only its share (no unsharded copy is ever built).
  state_shape = jax.eval_shape(init, params, lrs)
  carry = jax.jit(init, out_shardings=jax.tree.map(lambda _: sharded, state_shape))(
      params, lrs)
  first = np.asarray(evaluate(data, params).addressable_data(0))

  def advance(carry, blocks):
    blocks = np.concatenate([blocks, np.repeat(blocks[-1:], padded - k, axis=0)])
    carry, curves = run(carry, data, lrs, _global(blocks, sharded))
    # Every process gets every trajectory's curves (small): gather, drop the padding.
    return carry, np.asarray(gather(curves).addressable_data(0))[:k]

  return _Runner(first, carry, advance, copy, static_chunks=True)


def _start_vmap_loop(prog: _Program, params, lrs, *, mesh=None) -> _Runner:
  del mesh
  block = jax.jit(jax.vmap(prog.block))

  def advance(carry, blocks):
    curves = []
    for g in range(blocks.shape[1]):
      carry, metrics = block(carry, lrs, blocks[:, g])
      curves.append(metrics)
    return carry, np.asarray(jnp.stack(curves, axis=1))

  carry = jax.jit(jax.vmap(prog.init, in_axes=(None, 0)))(params, lrs)
  return _Runner(np.asarray(jax.jit(prog.evaluate)(params)), carry, advance, lambda c: c)


@functools.lru_cache(maxsize=16)
def _sequential_functions(apply_fn, protocol, loss):
  """Jitted single-copy init, evaluation and block, cached (data are arguments)."""

  def program(data):
    return _Program(apply_fn, protocol, loss, data[:2], data[2:4], data[4])

  init = jax.jit(lambda p, lr: program((None,) * 5).init(p, lr))
  evaluate = jax.jit(lambda data, p: program(data).evaluate(p))
  block = jax.jit(lambda data, carry, lr, idx: program(data).block(carry, lr, idx))
  return init, evaluate, block


def _start_sequential(prog: _Program, params, lrs, *, mesh=None) -> _Runner:
  del mesh
  init, evaluate, block = _sequential_functions(
      prog.apply_fn, _program_key(prog.protocol), prog.loss)
  data = _data(prog)

  def advance(carries, blocks):
    carries, rows = list(carries), []
    for k, lr in enumerate(lrs):
      curve = []
      for g in range(blocks.shape[1]):
        carries[k], metrics = block(data, carries[k], lr, blocks[k, g])
        curve.append(metrics)
      rows.append(jnp.stack(curve))
    return carries, np.asarray(jnp.stack(rows))

  carries = [init(params, lr) for lr in lrs]
  return _Runner(np.asarray(evaluate(data, params)), carries, advance, list)


@functools.lru_cache(maxsize=16)
def _canonical(apply_fn):
  return canonicalize_convs(apply_fn)  # one wrapper per apply_fn: jit caches hit


_STARTS = {
    "vmap_scan": functools.partial(_start_sharded, local="vmap_scan"),
    "map_scan": functools.partial(_start_sharded, local="map_scan"),
    "vmap_loop": _start_vmap_loop,
    "sequential": _start_sequential,
}


def _hits(curves: np.ndarray, protocol: RelearnProtocol) -> np.ndarray:
  """Where the criterion holds, from ``(..., 3)`` curves (NaN never holds)."""
  if protocol.criterion == "accuracy":
    return curves[..., 0] >= protocol.threshold
  return curves[..., 1] <= protocol.threshold


def _run(start, prog: _Program, params, lrs, indices, chunk_steps: int):
  """Runs the trajectories in chunks: probes, replays, and the stop.

  Without probing (``probe_every == 1``) every evaluation point is computed, in
  chunks of about ``chunk_steps`` steps with a host check of the stopping rule
  between them. With probing, a chunk is ``probe_every`` evaluation blocks run
  with one evaluation at its end; when a trajectory meets the criterion there
  for the first time, the chunk is replayed from its saved start with every
  point evaluated, so first hits keep the grid's resolution.

  Returns ``(curves, stop)``: ``(K, G, 3)`` curves on the evaluation grid (NaN
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

  runner = start(prog, params, lrs)
  carry = runner.carry
  curves = np.full((k, num_blocks + 1, 3), np.nan, np.float32)
  curves[:, 0] = runner.first
  done = 0
  while done < num_blocks:
    met = _hits(curves, protocol).any(axis=1)
    if protocol.stop_when_done and met.all():
      break
    window = blocks[:, done:done + chunk]
    n = min(chunk, num_blocks - done)
    if probe > 1 and n == chunk:
      saved = runner.save(carry)
      carry, end = runner.advance(carry, window.reshape(k, 1, chunk * e, batch))
      if _hits(end[:, 0], protocol)[~met].any():  # a first hit: replay every point
        carry, out = runner.advance(saved, window)
        curves[:, done + 1:done + 1 + n] = out
      else:
        curves[:, done + chunk] = end[:, 0]
    else:
      carry, out = runner.advance(carry, window if runner.static_chunks else window[:, :n])
      curves[:, done + 1:done + 1 + n] = out[:, :n]
    done += n
  hit = _hits(curves, protocol)
  if not protocol.stop_when_done or not hit.any(axis=1).all():
    return curves, num_blocks
  # Identical to the whole budget up to the last first hit, and NaN after it
  # (the steps a chunk ran past it are dropped, so the result is the same for
  # every chunk size).
  stop = int(np.argmax(hit, axis=1).max())
  curves[:, stop + 1:] = np.nan
  return curves, stop


def default_formulation(backend: str | None = None) -> str:
  """``"map_scan"`` on CPU, ``"vmap_scan"`` elsewhere (GPU, TPU).

  Measured in ``docs/performance.md``: on XLA:CPU, running the trajectories one
  after another inside one program beats both vmapping them (vmap turns each
  convolution into a grouped one, slower per copy on CPU) and a Python loop of
  jitted steps (a host round trip per step). On accelerators, vmap fills the chip.
  """
  backend = backend or jax.default_backend()
  return "map_scan" if backend == "cpu" else "vmap_scan"


def relearn(
    params: Any,
    apply_fn: ApplyFn,
    relearn_data: tuple[jax.Array, jax.Array],
    protocol: RelearnProtocol,
    key: jax.Array,
    *,
    eval_data: tuple[jax.Array, jax.Array] | None = None,
    reference_params: Any = None,
    loss=softmax_cross_entropy,
    formulation: str | None = None,
    mesh: Mesh | None = None,
    canonical_convs: bool | None = None,
    chunk_steps: int = 16,
) -> RelearnResult:
  """Runs ``protocol.total_trajectories`` relearning trajectories from ``params``.

  Args:
    params: the weights to relearn from.
    apply_fn: ``apply_fn(params, x) -> logits``.
    relearn_data: ``(x, y)`` the attacker trains on (the forget set or ``m``
      examples of it).
    protocol: the :class:`RelearnProtocol`.
    key: PRNG key; trajectory ``k`` draws its data order from ``fold_in(key, k)``
      (the same data orders are used at every learning rate of the grid).
    eval_data: ``(x, y)`` on which the criterion is tested after each step;
      defaults to ``relearn_data``.
    reference_params: params to measure the weight distance to (e.g. the
      original model); the distance curve is NaN without it.
    loss: ``loss(logits, labels) -> scalar``.
    formulation: one of :data:`FORMULATIONS`; ``None`` picks by backend
      (:func:`default_formulation`).
    mesh: a one-dimensional mesh (axis :data:`TRAJECTORY_AXIS`) to shard the
      trajectories over, for the formulations in :data:`SHARDED_FORMULATIONS`;
      default: all devices (:func:`trajectory_mesh`). Under ``jax.distributed``
      every process must call ``relearn`` with the same arguments; every process
      gets the whole result.
    canonical_convs: rewrite plain convolutions so that their gradients use
      XLA:CPU's fast layout (same values); ``None``: on CPU, for the
      one-program formulations (whose steps run inside ``lax.scan``).
    chunk_steps: with ``protocol.stop_when_done``, the trajectories run this
      many steps (rounded up to whole evaluation blocks) between two checks of
      the criterion on the host. It changes the work done past the stop, never
      the result.

  Returns:
    A :class:`RelearnResult`.

  Raises:
    ValueError: for an unknown formulation, a mesh with a formulation that is
      not sharded, or empty or mismatched data.
  """
  formulation = formulation or default_formulation()
  if not isinstance(chunk_steps, (int, np.integer)) or chunk_steps < 1:
    raise ValueError(f"chunk_steps={chunk_steps!r} must be a positive integer.")
  if formulation not in FORMULATIONS:
    raise ValueError(f"formulation={formulation!r}: expected one of {FORMULATIONS}.")
  if mesh is not None:
    if formulation not in SHARDED_FORMULATIONS:
      raise ValueError(
          f"formulation={formulation!r} runs on one device; a mesh needs one of"
          f" {SHARDED_FORMULATIONS}."
      )
    if mesh.axis_names != (TRAJECTORY_AXIS,):
      raise ValueError(
          f"mesh axes {mesh.axis_names}: expected one axis named {TRAJECTORY_AXIS!r}."
      )
  if canonical_convs is None:  # needed inside loops only: XLA canonicalises the rest
    canonical_convs = (jax.default_backend() == "cpu"
                       and formulation in SHARDED_FORMULATIONS)
  if canonical_convs:
    apply_fn = _canonical(apply_fn)
  x, y = relearn_data
  if x.shape[0] == 0:
    raise ValueError("relearn_data is empty: nothing to relearn.")
  if x.shape[0] != y.shape[0]:
    raise ValueError(f"relearn_data: {x.shape[0]} inputs but {y.shape[0]} labels.")
  eval_data = relearn_data if eval_data is None else eval_data
  if eval_data[0].shape[0] == 0 or eval_data[0].shape[0] != eval_data[1].shape[0]:
    raise ValueError(
        f"eval_data must be non-empty with matching lengths; got"
        f" {eval_data[0].shape[0]} inputs, {eval_data[1].shape[0]} labels."
    )
  prog = _Program(apply_fn, protocol, loss, relearn_data, eval_data, reference_params)

  k_orders = protocol.num_trajectories
  lr_grid = protocol.lr_grid
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(k_orders))
  orders = jax.vmap(
      lambda k: trajectory_batch_indices(k, x.shape[0], protocol.max_steps, protocol.batch_size)
  )(keys)
  # Trajectory r = (learning rate r // K, data order r % K).
  indices = np.tile(np.asarray(orders), (len(lr_grid), 1, 1))
  lrs = np.repeat(np.asarray(lr_grid, np.float32), k_orders)

  if formulation in SHARDED_FORMULATIONS:
    start = functools.partial(_STARTS[formulation], mesh=mesh or trajectory_mesh())
  else:
    start = _STARTS[formulation]
  curves, stop = _run(start, prog, params, lrs, indices, chunk_steps)
  hit = _hits(curves, protocol)
  censored = ~hit.any(axis=1)
  first = np.where(censored, -1, protocol.eval_steps[np.argmax(hit, axis=1)])
  return RelearnResult(
      first_hit=first.astype(np.int64),
      censored=censored,
      learning_rate=np.repeat(np.asarray(lr_grid), k_orders),
      steps=protocol.eval_steps,
      accuracy=curves[..., 0],
      loss=curves[..., 1],
      distance=curves[..., 2],
      stopped_at=int(protocol.eval_steps[stop]),
  )


def rcd_summary(
    result: RelearnResult, reference: RelearnResult | RCDSummary | None = None
) -> RCDSummary:
  """Summarises a :class:`RelearnResult`, normalised by ``reference``'s mean steps.

  Censored trajectories are excluded from the mean and counted in
  ``censored_frac``. ``normalized`` is NaN when either mean is undefined or the
  reference relearns in zero steps (the criterion then says nothing).
  """
  hits = result.first_hit[~result.censored].astype(np.float64)
  mean = float(hits.mean()) if hits.size else math.nan
  std = float(hits.std()) if hits.size else math.nan
  if reference is None:
    normalized = math.nan
  else:
    ref = reference if isinstance(reference, RCDSummary) else rcd_summary(reference)
    ok = math.isfinite(ref.steps_mean) and ref.steps_mean > 0 and math.isfinite(mean)
    normalized = mean / ref.steps_mean if ok else math.nan
  return RCDSummary(mean, std, float(result.censored.mean()), normalized)
