"""RCD: Relearning Convergence Delay.

From weights ``theta``, an attacker relearns the forget set (or ``m`` examples of
it) by SGD or Adam. ``T(theta)`` is the first step at which the forget-set criterion
holds (accuracy >= ``threshold`` percent, or loss <= ``threshold``), evaluated
after every step (or every ``eval_every`` steps) on an evaluation set, and, with a
guard, while the guard's score (e.g. accuracy on the other classes) stays within
``guard_drop`` of its value before relearning. Each data order may draw its own
training examples, evaluation examples and threshold (:class:`Draws`). A run that
never meets it within ``max_steps`` is *censored*: reported as such, and counted
as ``max_steps`` by :func:`rcd_summary` (a restricted mean, marked as a lower
bound).

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

On CPU, for the one-program formulations, plain convolutions in ``apply_fn`` (or
in a task's objective and evaluation) are rewritten by
:func:`ieu_jax._canonical_conv.canonicalize_convs` (same values; their gradients
in XLA:CPU's fast layout, which XLA does not find inside loops by itself).

The engine is not tied to classifiers: :func:`relearn` takes any attacker's
objective ``objective(params, batch, key)`` and any evaluation
``evaluation(params, eval_data) -> (score, loss)`` (the generative half relearns a
diffusion model this way, judged by a classifier's rate on its samples);
:func:`classifier_task` builds the two for ``apply_fn`` and a loss.

Step ``0`` is the model before any relearning: a model that already meets the
criterion has ``T = 0``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from typing import Any, Callable, Literal, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jax.sharding import Mesh

from ieu_jax import _rcd_engine as engine
from ieu_jax import _state
from ieu_jax._canonical_conv import canonicalize_convs
from ieu_jax._rcd_engine import FORMULATIONS, SHARDED_FORMULATIONS, TRAJECTORY_AXIS
from ieu_jax._rcd_engine import trajectory_mesh
from ieu_jax._steps import ApplyFn, softmax_cross_entropy
from ieu_jax._transforms import as_key

__all__ = [
    "FORMULATIONS",
    "RelearnProtocol",
    "RelearnResult",
    "RCDSummary",
    "Draws",
    "SHARDED_FORMULATIONS",
    "TRAJECTORY_AXIS",
    "classifier_task",
    "fastest_rate",
    "first_hits",
    "relearn",
    "default_formulation",
    "trajectory_mesh",
    "rcd_summary",
    "trajectory_batch_indices",
]


def _is_real(value: Any) -> bool:
  """Whether ``value`` is a finite real number (a bool is not one)."""
  return (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
          and math.isfinite(value))


@dataclasses.dataclass(frozen=True)
class RelearnProtocol:
  """How the attacker relearns, and what counts as relearned.

  Attributes:
    optimizer: ``"sgd"`` or ``"adam"``.
    learning_rates: one learning rate, or several: every one of the
      ``num_trajectories`` data orders is run at every learning rate.
    momentum: SGD momentum in ``[0, 1)`` (ignored by Adam).
    batch_size: examples per relearning step (capped at the relearn set's size).
    max_steps: the step budget ``T_max``.
    criterion: ``"accuracy"`` (forget accuracy in percent ``>= threshold``) or
      ``"loss"`` (mean forget loss ``<= threshold``).
    threshold: ``tau``, a percentage in ``[0, 100]``, or the target loss
      (``>= 0``).
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
    formulation: how the trajectories are laid out, one of :data:`FORMULATIONS`;
      None picks by backend (:func:`default_formulation`). It changes the speed,
      not the numbers (up to float rounding).
    guard_drop: with guard data (``relearn(..., guard_data=...)``), a point
      counts as relearned only while the guard (the evaluation's score on the
      guard data, e.g. accuracy on held-out examples of the other classes) is at
      most this many points below its value before relearning; None: no guard.

  Raises:
    ValueError: at construction, naming the field and its value, for a value
      out of its range, a non-finite number, or a bool where a number is due.
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
  formulation: str | None = None
  guard_drop: float | None = None

  def __post_init__(self):
    if self.optimizer not in ("sgd", "adam"):
      raise ValueError(f"optimizer={self.optimizer!r}: expected 'sgd' or 'adam'.")
    if self.criterion not in ("accuracy", "loss"):
      raise ValueError(f"criterion={self.criterion!r}: expected 'accuracy' or 'loss'.")
    for name in ("batch_size", "max_steps", "num_trajectories", "eval_every", "probe_every"):
      value = getattr(self, name)
      if (isinstance(value, bool) or not isinstance(value, (int, np.integer))
          or value < 1):
        raise ValueError(f"{name}={value!r} must be a positive integer.")
    if not isinstance(self.stop_when_done, (bool, np.bool_)):
      raise ValueError(f"stop_when_done={self.stop_when_done!r} must be True or False.")
    if self.max_steps % self.eval_every:
      raise ValueError(
          f"max_steps={self.max_steps} is not a multiple of eval_every={self.eval_every}."
      )
    if self.formulation is not None and self.formulation not in FORMULATIONS:
      raise ValueError(f"formulation={self.formulation!r}: expected one of {FORMULATIONS}.")
    if not (_is_real(self.momentum) and 0 <= self.momentum < 1):
      raise ValueError(f"momentum={self.momentum!r} must be a finite number in [0, 1).")
    if self.criterion == "accuracy":
      if not (_is_real(self.threshold) and 0 <= self.threshold <= 100):
        raise ValueError(
            f"threshold={self.threshold!r} must be a finite number in [0, 100]: the"
            " accuracy criterion compares it with a percentage."
        )
    elif not (_is_real(self.threshold) and self.threshold >= 0):
      raise ValueError(
          f"threshold={self.threshold!r} must be a finite number >= 0: the loss"
          " criterion compares it with a mean loss."
      )
    if self.guard_drop is not None and not (_is_real(self.guard_drop) and self.guard_drop >= 0):
      raise ValueError(f"guard_drop={self.guard_drop!r} must be a finite number >= 0 or None.")
    lrs = self.learning_rates
    lrs = tuple(lrs) if isinstance(lrs, Sequence) and not isinstance(lrs, str) else (lrs,)
    if not lrs or not all(_is_real(lr) and lr > 0 for lr in lrs):
      raise ValueError(
          f"learning_rates={self.learning_rates!r} must be one finite positive number"
          " or a non-empty sequence of them."
      )

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

  def to_dict(self) -> dict[str, Any]:
    """Every field, the learning rates as a list (what a results file records)."""
    return dict(dataclasses.asdict(self), learning_rates=list(self.lr_grid))

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
    guard: ``(K, G)`` the guard's score (NaN without a guard, and at points where
      the criterion does not hold: it is computed where it matters only).
    threshold: ``(K,)`` each trajectory's threshold (float32).
  """

  first_hit: np.ndarray
  censored: np.ndarray
  learning_rate: np.ndarray
  steps: np.ndarray
  accuracy: np.ndarray
  loss: np.ndarray
  distance: np.ndarray
  stopped_at: int | None = None
  guard: np.ndarray | None = None
  threshold: np.ndarray | None = None


class Draws(NamedTuple):
  """What each data order draws for itself (leading axis: the ``K`` data orders).

  Trajectory ``k`` (at every learning rate of a grid) trains on the examples
  ``train[k]`` of the relearn data, is evaluated on the examples ``eval[k]`` of
  the evaluation data, and meets the criterion against ``threshold[k]``. A field
  left None means: every example (``train``, ``eval``), or the protocol's
  threshold.

  Attributes:
    train: ``(K, m)`` int indices into ``relearn_data``, or None.
    eval: ``(K, n)`` int indices into ``eval_data``, or None.
    threshold: ``(K,)`` thresholds, or None.
  """

  train: np.ndarray | None = None
  eval: np.ndarray | None = None
  threshold: np.ndarray | None = None


class RCDSummary(NamedTuple):
  """RCD of one model, censoring counted, optionally normalised by a reference's.

  Each trajectory contributes its first-hit step, or the budget ``T`` (the
  protocol's ``max_steps``) when it is censored: ``steps_mean`` is this
  *restricted mean*, ``steps_std`` its spread and ``median`` its median. A censored
  trajectory thus counts as at least as slow as any that met the criterion, and a
  model whose every trajectory is censored has the largest possible mean, ``T``.
  ``lower_bound`` is True when any trajectory is censored: the true mean is then
  at least ``steps_mean`` (tables print ``>= x``). ``normalized`` is ``steps_mean /
  reference steps_mean``, NaN when the reference relearns in 0 steps (the
  criterion then says nothing).
  """

  steps_mean: float
  steps_std: float
  censored_frac: float
  normalized: float
  median: float = math.nan
  lower_bound: bool = False


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


def default_formulation(backend: str | None = None) -> str:
  """``"map_scan"`` on CPU, ``"vmap_scan"`` elsewhere (GPU, TPU).

  Measured in ``docs/performance.md``: on XLA:CPU, running the trajectories one
  after another inside one program beats both vmapping them (vmap turns each
  convolution into a grouped one, slower per copy on CPU) and a Python loop of
  jitted steps (a host round trip per step). On accelerators, vmap fills the chip.
  """
  backend = backend or jax.default_backend()
  return "map_scan" if backend == "cpu" else "vmap_scan"


@functools.lru_cache(maxsize=16)
def classifier_task(apply_fn: ApplyFn, loss=softmax_cross_entropy):
  """``(objective, evaluation)`` of relearning a classifier (one pair per ``apply_fn``).

  ``objective(params, (x, y), key)`` is ``loss(apply_fn(params, x), y)`` (the key
  is unused); ``evaluation(params, (x, y))`` is the accuracy in percent and the
  loss on the evaluation set. For a stateful model's variables the objective runs
  in train mode and returns ``(loss, new_state)``; the evaluation runs in eval mode.
  """

  def objective(params, batch, key):
    del key
    if _state.is_stateful(params):  # the attacker fine-tunes in train mode
      logits, state = apply_fn(params, batch[0], train=True)
      return loss(logits, batch[1]), state
    return loss(apply_fn(params, batch[0]), batch[1])

  def evaluation(params, eval_data):
    x, y = eval_data
    logits = apply_fn(params, x)
    return 100.0 * jnp.mean(jnp.argmax(logits, -1) == y), loss(logits, y)

  return objective, evaluation


@functools.lru_cache(maxsize=16)
def _canonical(fn):
  return canonicalize_convs(fn)  # one wrapper per function: jit caches hit


def first_hits(curves: np.ndarray, protocol: RelearnProtocol,
               threshold: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
  """``(first_hit, censored)`` from ``(K, G, 4)`` curves on ``protocol.eval_steps``.

  ``first_hit`` is the first evaluated step that counts as relearned (-1 where
  censored: never; NaN points never count): the criterion holds against
  ``threshold`` ``(K,)`` (default: the protocol's), and, with a guard, the guard
  (channel 3) is within ``protocol.guard_drop`` of its value at step 0.
  """
  if threshold is None:
    threshold = np.full(curves.shape[0], protocol.threshold, np.float32)
  hit = engine.hits(curves, protocol, threshold, curves[:, 0, 3])
  censored = ~hit.any(axis=1)
  first = np.where(censored, -1, protocol.eval_steps[np.argmax(hit, axis=1)])
  return first.astype(np.int64), censored


def relearn(
    params: Any,
    apply_fn: ApplyFn | None,
    relearn_data: tuple[jax.Array, jax.Array],
    protocol: RelearnProtocol,
    key: jax.Array,
    *,
    eval_data: Any = None,
    draws: Draws | None = None,
    guard_data: Any = None,
    reference_params: Any = None,
    loss=softmax_cross_entropy,
    objective: Callable[..., jax.Array] | None = None,
    evaluation: Callable[..., tuple[jax.Array, jax.Array]] | None = None,
    formulation: str | None = None,
    mesh: Mesh | None = None,
    canonical_convs: bool | None = None,
    chunk_steps: int = 16,
) -> RelearnResult:
  """Runs ``protocol.total_trajectories`` relearning trajectories from ``params``.

  Args:
    params: the weights to relearn from; a stateful model's
      :class:`ieu_jax._state.Variables`, whose statistics every trajectory
      starts from and carries on its own (train-mode steps, eval-mode
      evaluations; the weight distance is over the params).
    apply_fn: ``apply_fn(params, x) -> logits`` of a classifier (with
      ``train=True`` for a stateful one); None when ``objective`` and
      ``evaluation`` are given.
    relearn_data: ``(x, y)`` the attacker trains on (the forget set or ``m``
      examples of it); a step's batch is ``(x[idx], y[idx])``.
    protocol: the :class:`RelearnProtocol`.
    key: PRNG key; trajectory ``k`` uses ``key_k = fold_in(key, k)``: its data
      order comes from ``key_k`` (the same data orders at every learning rate of
      the grid) and its step ``t`` (0-based) passes ``fold_in(key_k, t + 1)`` to
      the objective.
    eval_data: what the criterion is tested on after each evaluation block:
      for a classifier ``(x, y)`` (default: ``relearn_data``); with
      ``evaluation``, any pytree it takes.
    draws: each data order's own training examples, evaluation examples and
      threshold (:class:`Draws`); default: every trajectory trains and is
      evaluated on all of the data, against ``protocol.threshold``.
    guard_data: the guard's data (needs ``protocol.guard_drop``, and the other
      way round): the evaluation's score on it must stay within
      ``protocol.guard_drop`` of its value before relearning for a point to
      count (for a classifier, ``(x, y)`` of examples the attacker does not
      target, e.g. the other classes).
    reference_params: params to measure the weight distance to (e.g. the
      original model); the distance curve is NaN without it.
    loss: ``loss(logits, labels) -> scalar`` of the classifier.
    objective: ``objective(params, batch, key) -> scalar``, the attacker's loss
      (default: the classifier's, :func:`classifier_task`).
    evaluation: ``evaluation(params, eval_data) -> (score, loss)``: ``score`` is
      what the ``"accuracy"`` criterion compares with the threshold (percent),
      ``loss`` what the ``"loss"`` criterion does (default: the classifier's
      accuracy and loss).
    formulation: overrides ``protocol.formulation`` (one of
      :data:`FORMULATIONS`; None: the protocol's, else by backend).
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
      not sharded, a task given twice or half, empty or mismatched data, draws
      of the wrong shape or out of range, or a guard without its drop (or the
      other way round).
  """
  formulation = formulation or protocol.formulation or default_formulation()
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
  if (objective is None) != (evaluation is None) or (objective is None) == (apply_fn is None):
    raise ValueError("give either apply_fn (a classifier) or both objective and evaluation.")
  if canonical_convs is None:  # needed inside loops only: XLA canonicalises the rest
    canonical_convs = (jax.default_backend() == "cpu"
                       and formulation in SHARDED_FORMULATIONS)
  x, y = relearn_data
  if x.shape[0] == 0:
    raise ValueError("relearn_data is empty: nothing to relearn.")
  if x.shape[0] != y.shape[0]:
    raise ValueError(f"relearn_data: {x.shape[0]} inputs but {y.shape[0]} labels.")
  if apply_fn is not None:
    eval_data = relearn_data if eval_data is None else eval_data
    for what, d in (("eval_data", eval_data), ("guard_data", guard_data)):
      if d is not None and (d[0].shape[0] == 0 or d[0].shape[0] != d[1].shape[0]):
        raise ValueError(
            f"{what} must be non-empty with matching lengths; got"
            f" {d[0].shape[0]} inputs, {d[1].shape[0]} labels."
        )
    if _state.is_stateful(params):  # train mode takes a keyword: canonicalise the task
      objective, evaluation = classifier_task(apply_fn, loss)
      if canonical_convs:
        objective, evaluation = _canonical(objective), _canonical(evaluation)
    else:
      objective, evaluation = classifier_task(
          _canonical(apply_fn) if canonical_convs else apply_fn, loss)
  elif canonical_convs:
    objective, evaluation = _canonical(objective), _canonical(evaluation)
  if (guard_data is None) != (protocol.guard_drop is None):
    raise ValueError(
        f"guard_data is {'missing' if guard_data is None else 'given'} but"
        f" protocol.guard_drop={protocol.guard_drop!r}: give both or neither.")
  draws = _check_draws(draws or Draws(), protocol, x.shape[0],
                       None if eval_data is None else jax.tree.leaves(eval_data)[0].shape[0])
  prog = engine.Program(objective, evaluation, protocol,
                        engine.AttackData(x, y, eval_data, reference_params, guard_data))

  k_orders = protocol.num_trajectories
  lr_grid = protocol.lr_grid
  keys = jax.vmap(lambda i: jax.random.fold_in(as_key(key), i))(jnp.arange(k_orders))
  pool = x.shape[0] if draws.train is None else draws.train.shape[1]
  orders = np.asarray(jax.vmap(
      lambda k: trajectory_batch_indices(k, pool, protocol.max_steps, protocol.batch_size)
  )(keys))
  if draws.train is not None:  # each order's batches from its own examples
    orders = np.take_along_axis(draws.train[:, None, :], orders.reshape(k_orders, 1, -1),
                                axis=2).reshape(orders.shape)
  # Trajectory r = (learning rate r // K, data order r % K).
  tile = lambda a: None if a is None else np.tile(a, (len(lr_grid),) + (1,) * (a.ndim - 1))
  indices = tile(orders)
  threshold = tile(draws.threshold)
  key_data = np.asarray(jax.random.key_data(keys))
  traj = engine.Trajectories(
      lr=np.repeat(np.asarray(lr_grid, np.float32), k_orders), key=tile(key_data),
      threshold=threshold, eval_idx=tile(draws.eval))

  start = engine.STARTS[formulation]
  if formulation in SHARDED_FORMULATIONS:
    start = functools.partial(start, mesh=mesh or trajectory_mesh())
  curves, stop = engine.run(start, prog, params, traj, indices, chunk_steps, threshold)
  first, censored = first_hits(curves, protocol, threshold)
  return RelearnResult(
      first_hit=first,
      censored=censored,
      learning_rate=np.repeat(np.asarray(lr_grid), k_orders),
      steps=protocol.eval_steps,
      accuracy=curves[..., 0],
      loss=curves[..., 1],
      distance=curves[..., 2],
      stopped_at=int(protocol.eval_steps[stop]),
      guard=curves[..., 3],
      threshold=threshold,
  )


def _check_draws(draws: Draws, protocol: RelearnProtocol, num_relearn: int,
                 num_eval: int | None) -> Draws:
  """The draws as host arrays (thresholds float32, filled from the protocol), checked."""
  k = protocol.num_trajectories
  out = {}
  for name, size in (("train", num_relearn), ("eval", num_eval)):
    idx = getattr(draws, name)
    if idx is None:
      out[name] = None
      continue
    idx = np.asarray(idx)
    if idx.ndim != 2 or idx.shape[0] != k or idx.shape[1] == 0:
      raise ValueError(f"draws.{name} has shape {idx.shape}: expected ({k}, n >= 1), a row"
                       " per data order.")
    if not np.issubdtype(idx.dtype, np.integer):
      raise ValueError(f"draws.{name} has dtype {idx.dtype}: expected integer indices.")
    if size is None or idx.min() < 0 or idx.max() >= size:
      raise ValueError(f"draws.{name} holds indices in [{idx.min()}, {idx.max()}], outside"
                       f" the {size} examples they index.")
    out[name] = idx.astype(np.int32)
  thr = draws.threshold
  thr = np.full(k, protocol.threshold) if thr is None else np.asarray(thr, np.float64)
  if thr.shape != (k,) or not np.isfinite(thr).all():
    raise ValueError(f"draws.threshold must be {k} finite numbers; got {draws.threshold!r}.")
  return Draws(out["train"], out["eval"], thr.astype(np.float32))


def fastest_rate(result: RelearnResult, num_orders: int) -> RelearnResult:
  """The attacker that keeps, for each data order, its fastest learning rate.

  ``result`` holds ``L * num_orders`` trajectories (trajectory ``r`` at learning
  rate ``r // num_orders`` and data order ``r % num_orders``, as :func:`relearn`
  lays out a grid). For each order this keeps the trajectory of the learning rate
  that met the criterion first (the first rate of the grid on a tie); an order is
  censored only when it is censored at every rate, and then keeps the first rate.

  Returns:
    A :class:`RelearnResult` of ``num_orders`` trajectories.
  """
  total = result.first_hit.shape[0]
  if num_orders < 1 or total % num_orders:
    raise ValueError(f"num_orders={num_orders} does not divide {total} trajectories.")
  rates = total // num_orders
  steps = np.where(result.censored, np.inf, result.first_hit).reshape(rates, num_orders)
  best = np.argmin(steps, axis=0)  # the first minimum: the first rate on a tie
  pick = best * num_orders + np.arange(num_orders)
  take = lambda a: None if a is None else np.asarray(a)[pick]
  return result._replace(first_hit=take(result.first_hit), censored=take(result.censored),
                         learning_rate=take(result.learning_rate),
                         accuracy=take(result.accuracy), loss=take(result.loss),
                         distance=take(result.distance), guard=take(result.guard),
                         threshold=take(result.threshold))


def rcd_summary(
    result: RelearnResult, reference: RelearnResult | RCDSummary | None = None
) -> RCDSummary:
  """Summarises a :class:`RelearnResult` (see :class:`RCDSummary`), normalised by
  ``reference``'s restricted mean.

  Censored trajectories count as the budget ``T = result.steps[-1]``.
  """
  budget = float(result.steps[-1])
  steps = np.where(result.censored, budget, result.first_hit).astype(np.float64)
  mean, std, median = float(steps.mean()), float(steps.std()), float(np.median(steps))
  if reference is None:
    normalized = math.nan
  else:
    ref = reference if isinstance(reference, RCDSummary) else rcd_summary(reference)
    ok = math.isfinite(ref.steps_mean) and ref.steps_mean > 0
    normalized = mean / ref.steps_mean if ok else math.nan
  return RCDSummary(mean, std, float(result.censored.mean()), normalized, median,
                    bool(result.censored.any()))
