"""Unlearning methods as programs: jittable steps whose hyperparameters are arrays.

A method's run is a sequence of *segments*: passes of one kind of step over one
data set (RL: a forget pass under random labels, then a retain pass; SCRUB: max
and min passes; IEU: epochs over the forget set), each with its batch indices and
step keys fixed in advance by the method's key. A :class:`Program` names the kinds
of step, says which segments follow each other, and which hyperparameters are
*arrays* (the step sizes, scales, decays and noise levels: traced values, so one
compiled step serves every setting) rather than *static* (batch sizes, pass
counts, which terms exist: they shape the program).

:func:`run` executes a program for one setting: the path of every method's
``unlearn``. :func:`run_stacked` executes it for ``G`` settings at once, their
models stacked along a leading axis and their hyperparameters passed as ``(G,)``
arrays, every step one compiled call for all of them. Both draw the same batches
and keys, so setting ``g`` of a stacked run is the single run with its
hyperparameters (``tests/test_sweep.py``).

**Budgets.** A run is as long as its method's ``epochs`` over the method's data,
or, when the hyperparameters give ``steps``, exactly that many optimizer steps:
the segments repeat epoch after epoch and the run stops after ``steps`` steps,
wherever that falls (a step budget is the same for every method and every forget
set size; an epoch's length is not).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import time
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ieu_jax import _state
from ieu_jax.training import NonFiniteError, epoch_indices, fresh_copy, tree_is_finite

__all__ = ["LAYOUTS", "Program", "Segment", "SweepResult", "default_layout", "run", "run_stacked",
           "settings_mesh", "stack", "sweep", "unstack"]

LAYOUTS = ("map", "vmap")


class Segment(NamedTuple):
  """One pass: ``epoch_indices(epoch_key, n, batch_size)`` batches of ``data``.

  Step ``i`` of the pass (0-based) gets the key ``fold_in(epoch_key, i + 1)``,
  as :func:`ieu_jax.training.fit` gives its steps.

  Attributes:
    kind: the step it runs (a key of :attr:`Program.steps`).
    data: ``"forget"`` or ``"retain"``.
    batch_size: examples per step.
    epoch_key: the pass's key.
    name: the pass, for logs and errors.
    values: None, or ``values(hparams) -> {name: float}``: hyperparameters that
      hold for this pass only, computed on the host from a setting's values (for
      example l1-sparse's penalty weight of this epoch) and passed to its steps
      beside the setting's own.
  """

  kind: str
  data: str
  batch_size: int
  epoch_key: jax.Array
  name: str
  values: Callable[[Mapping[str, float]], Mapping[str, float]] | None = None


@dataclasses.dataclass(frozen=True)
class Program:
  """A method with its static hyperparameters bound and its array ones left free.

  Attributes:
    steps: ``{kind: loss_and_update(variables, opt_state, batch, key, hp, *aux)}``
      returning ``(variables, opt_state, loss)``; ``hp`` maps each name of
      :attr:`arrays` (and of a segment's ``values``) to a scalar array.
    init: ``init(params, hp, key) -> opt_state`` (the trainable params only).
    segments: ``segments(key, budget) -> iterable of Segment``: the passes in
      order, from the method's key. With ``budget`` None they are the method's
      epochs; with a step budget they may go on for ever (:func:`run` stops after
      ``budget`` steps).
    arrays: the hyperparameters passed as arrays.
    data: ``{"forget": (x, y), "retain": (x, y)}``, on the device.
    aux: arrays every step receives after ``hp``, the same for every setting
      (the retain set IEU samples from, SCRUB's teacher).
    prefix_consistent: whether the segments are the same whatever the budget, so
      that the first ``b`` steps of a longer run are the run with budget ``b``
      (False for l1-sparse, whose penalty decays over the budget's epochs).
    aux_maps: ``{position in aux: data set name}``: entries of :attr:`aux` that are
      the index map of a data set (``arange(n)`` in a single run, so the step's
      ``x[index[i]]`` is ``x[i]``); under :func:`run_stacked`'s ``maps`` each
      setting receives its own row of ``maps[name]`` there instead (IEU samples
      its retain batches through one, so they stay in the setting's retain set).
    init_aux: arrays :attr:`init` receives after its key, not passed to the steps
      (SalUn's saliency mask, which its optimizer keeps in its state).
  """

  steps: Mapping[str, Callable[..., tuple[Any, Any, jax.Array]]]
  init: Callable[[Any, Mapping[str, jax.Array], jax.Array], Any]
  segments: Callable[[jax.Array, int | None], Iterable[Segment]]
  arrays: tuple[str, ...]
  data: Mapping[str, tuple[jax.Array, jax.Array]]
  aux: tuple[Any, ...] = ()
  prefix_consistent: bool = True
  aux_maps: Mapping[int, str] = dataclasses.field(default_factory=dict)
  init_aux: tuple[Any, ...] = ()


def _passes(program: Program, key: jax.Array, budget: int | None,
            sizes: Mapping[str, int] | None = None, name: str = "the method"):
  """``(segment, batches)`` in order, the last one cut so the steps total ``budget``.

  ``sizes`` overrides the number of examples of a data set (the width of its maps).
  """
  done = 0
  for seg in program.segments(key, budget):
    if budget is not None and done >= budget:
      return
    if sizes and seg.data in sizes:
      n = int(sizes[seg.data])
    else:
      n = int(program.data[seg.data][1].shape[0])
    if n == 0:
      raise ValueError(f"{seg.name}: the {seg.data} set is empty.")
    batches = epoch_indices(seg.epoch_key, n, seg.batch_size)
    if budget is not None:
      batches = batches[: budget - done]
    done += int(batches.shape[0])
    yield seg, batches
  if budget is not None and done < budget:
    raise ValueError(f"{name}: the program ended after {done} of its {budget} steps.")


def _single_step(fn: Callable) -> Callable:
  def step(variables, opt_state, x, y, idx, key, hp, *aux):
    variables, opt_state, loss = fn(variables, opt_state, (x[idx], y[idx]), key, hp, *aux)
    return variables, opt_state, tree_is_finite(variables) & jnp.isfinite(loss)

  return jax.jit(step, donate_argnums=(0, 1))


def _hp_arrays(values: Mapping[str, Any], dtype=jnp.float32) -> dict[str, jax.Array]:
  return {k: jnp.asarray(v, dtype) for k, v in values.items()}


def run(program: Program, variables: Any, values: Mapping[str, float], key: jax.Array, *,
        budget: int | None = None, name: str = "unlearn",
        log_every_s: float = 10.0) -> Any:
  """Runs ``program`` for one setting; returns the unlearned variables.

  Args:
    program: the method's program.
    variables: the original model's variables (copied; the caller's stay valid).
    values: the setting's values of ``program.arrays``.
    key: the method's key.
    budget: None (the method's epochs) or the number of optimizer steps.
    name: the method, for logs and errors.
    log_every_s: progress is logged at most this often.

  Raises:
    NonFiniteError: when the weights or a loss stop being finite (checked at the
      end of each pass, naming it).
  """
  _check_values(program, values)
  steps = {kind: _single_step(fn) for kind, fn in program.steps.items()}
  hp = _hp_arrays(values)
  opt_state = program.init(_state.trainable(variables), hp, key, *program.init_aux)
  variables, opt_state = fresh_copy((variables, opt_state))
  start = last = time.perf_counter()
  for seg, batches in _passes(program, key, budget, name=name):
    x, y = program.data[seg.data]
    seg_hp = hp if seg.values is None else {**hp, **_hp_arrays(seg.values(values))}
    finite = jnp.array(True)
    for i in range(batches.shape[0]):
      variables, opt_state, ok = steps[seg.kind](
          variables, opt_state, x, y, batches[i], jax.random.fold_in(seg.epoch_key, i + 1),
          seg_hp, *program.aux)
      finite = finite & ok
    if not bool(finite):
      raise NonFiniteError(
          f"{name}: a NaN or infinity appeared in the weights or the loss during {seg.name};"
          " lower the learning rate or the ascent scale.")
    now = time.perf_counter()
    if now - last >= log_every_s:
      logging.info("%s: %s done, %.1fs elapsed", name, seg.name, now - start)
      last = now
  return variables


def _check_values(program: Program, values: Mapping[str, Any]) -> None:
  missing = sorted(set(program.arrays) - set(values))
  extra = sorted(set(values) - set(program.arrays))
  if missing or extra:
    raise ValueError(f"hyperparameter arrays: missing {missing}, unexpected {extra}"
                     f" (the program takes {list(program.arrays)}).")


def _stacked_step(fn: Callable, layout: str, per_setting_keys: bool,
                  mesh: Mesh | None = None) -> Callable:
  """One compiled step for ``G`` settings.

  With a ``mesh`` of several devices, the settings' axis is split over them (each
  device runs ``layout`` over its share; the data and every shared entry are
  replicated).

  ``idx`` and ``key`` are shared (``(b,)`` and one key) or, with
  ``per_setting_keys``, one per setting along a leading axis. ``row`` is None or
  the ``(G, n)`` index maps of the pass's data set: setting ``g``'s batch is then
  ``x[row[g][idx]]``. ``aux`` holds the shared entries (None where a setting has
  its own), ``per_aux`` ``{position: (G, ...) entries}``.
  """

  def step(variables, opt_state, x, y, idx, key, hp, row, aux, per_aux):

    def one(v, o, h, r, pa, i, k):
      j = i if r is None else r[i]
      full = list(aux)
      for pos, a in pa.items():
        full[pos] = a
      v, o, loss = fn(v, o, (x[j], y[j]), k, h, *full)
      return v, o, tree_is_finite(v) & jnp.isfinite(loss)

    args = (variables, opt_state, hp, row, per_aux)
    if per_setting_keys:
      args, mapped = args + (idx, key), one
    else:
      mapped = functools.partial(one, i=idx, k=key)
    if layout == "vmap":
      return jax.vmap(mapped)(*args)
    return jax.lax.map(lambda a: mapped(*a), args)

  if mesh is not None and mesh.size > 1:
    part, rep = P(_SETTINGS_AXIS), P()
    own = part if per_setting_keys else rep
    # row and per_aux hold one entry per setting; aux only shared ones.
    step = jax.shard_map(step, mesh=mesh,
                         in_specs=(part, part, rep, rep, own, own, part, part, rep, part),
                         out_specs=(part, part, part), check_vma=False)
  return jax.jit(step, donate_argnums=(0, 1))


_SETTINGS_AXIS = "settings"


def settings_mesh(devices=None) -> Mesh:
  """A one-dimensional mesh over ``devices`` (default: this process's devices) for the
  settings' axis of a sweep."""
  devices = jax.local_devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (_SETTINGS_AXIS,))


def _pad(tree: Any, extra: int) -> Any:
  """Every leaf with its last entry (along the leading axis) repeated ``extra`` times."""
  if not extra:
    return tree
  return jax.tree.map(
      lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], extra, axis=0)]), tree)


def _data_size(program: Program, name: str) -> int:
  if name in program.data:
    return int(program.data[name][1].shape[0])
  pos = next(p for p, n in program.aux_maps.items() if n == name)
  return int(jnp.shape(program.aux[pos])[0])


def _check_maps(program: Program, maps: Mapping[str, Any] | None, num: int,
                name: str) -> dict[str, jax.Array]:
  """``maps`` as ``(G, n)`` int32 device arrays, after checking every entry."""
  if not maps:
    return {}
  names = set(program.data) | set(program.aux_maps.values())
  out = {}
  for k, m in maps.items():
    if k not in names:
      raise ValueError(f"{name}: maps[{k!r}]: the program has no data set {k!r}"
                       f" (it has {sorted(names)}).")
    try:
      a = np.asarray(m)
    except ValueError as e:
      raise ValueError(f"{name}: maps[{k!r}]: the rows have unequal widths; every setting"
                       " needs the same number of examples.") from e
    if a.dtype == object or a.ndim != 2:
      raise ValueError(f"{name}: maps[{k!r}] has shape {a.shape}: it must be (G, n), one row"
                       " of equal width per setting.")
    if not np.issubdtype(a.dtype, np.integer):
      raise ValueError(f"{name}: maps[{k!r}] has dtype {a.dtype}: it must hold integer indices.")
    if a.shape[0] != num:
      raise ValueError(f"{name}: maps[{k!r}] has {a.shape[0]} rows for {num} settings.")
    if a.shape[1] == 0:
      raise ValueError(f"{name}: maps[{k!r}] is empty: every setting needs at least one example.")
    size = _data_size(program, k)
    bad = np.argwhere((a < 0) | (a >= size))
    if bad.size:
      g, j = bad[0]
      raise ValueError(f"{name}: maps[{k!r}][{g}, {j}] = {a[g, j]} is outside the data set's"
                       f" {size} examples.")
    out[k] = jnp.asarray(a, jnp.int32)
  return out


def _leading(tree: Any, num: int, what: str) -> None:
  for leaf in jax.tree.leaves(tree):
    if not jnp.shape(leaf) or jnp.shape(leaf)[0] != num:
      raise ValueError(f"{what}: a leaf of shape {jnp.shape(leaf)} has no leading axis of"
                       f" the {num} settings.")


def stack(tree: Any, num: int) -> Any:
  """``num`` copies of ``tree`` stacked along a new leading axis."""
  return jax.tree.map(lambda a: jnp.broadcast_to(a, (num,) + jnp.shape(a)).copy(), tree)


def run_stacked(program: Program, variables: Any, values: Sequence[Mapping[str, float]],
                key: jax.Array, *, budget: int | None = None, layout: str = "vmap",
                name: str = "sweep", keep: Sequence[int] = (),
                maps: Mapping[str, Any] | None = None, keys: jax.Array | None = None,
                stacked: bool = False, stacked_aux: Sequence[int] = (),
                stacked_init_aux: Sequence[int] = (), mesh: Mesh | None = None) -> Any:
  """Runs ``program`` for ``G = len(values)`` settings as one program per step.

  By default every setting starts from ``variables``, sees the same batches and
  keys (the method's key), and differs only in its hyperparameter arrays; a
  setting whose weights or loss stop being finite is marked diverged and the
  others go on. The keyword arguments ``maps``, ``keys``, ``stacked`` and
  ``stacked_aux`` give each setting its own data, randomness, start and auxiliary
  arrays (the shadow models of :mod:`ieu_jax.shadow`): setting ``g`` is then the
  single :func:`run` of the program built on its own data (``x[maps[name][g]]``),
  from its own variables, with ``keys[g]``.

  Args:
    program: the method's program.
    variables: the original model's variables; with ``stacked``, one per setting
      along a leading axis.
    values: per setting, its values of ``program.arrays``.
    key: the method's key (unused when ``keys`` is given).
    budget: None (the method's epochs) or the number of optimizer steps.
    layout: ``"vmap"`` (vectorised; a vmapped convolution becomes a grouped one)
      or ``"map"`` (the settings one after the other inside each compiled step,
      ``lax.map``: one setting's memory at a time, but a loop of convolutions
      inside a compiled step is slow on XLA:CPU). The numbers agree to float
      rounding; :func:`default_layout` is the measured choice.
    name: for logs.
    keep: step counts below ``budget`` after which the models are also kept (a
      program whose segments do not depend on its budget, ``prefix_consistent``,
      after ``b`` steps is its run with budget ``b``).
    maps: None, or ``{data set name: (G, n_name) integer indices}``: setting ``g``'s
      data set ``name`` is ``x[maps[name][g]]`` (rows of one width, so the passes
      have the same length for every setting). Batch indices are drawn over
      ``n_name`` and mapped per setting inside the step; a data set the program
      samples through an index in its aux (:attr:`Program.aux_maps`) is mapped
      there too.
    keys: None, or ``G`` keys: setting ``g`` runs with ``keys[g]`` as its method
      key (its own batches, step keys and optimizer initialisation) instead of
      sharing ``key``.
    stacked: whether ``variables`` already holds one start per setting.
    stacked_aux: positions in ``program.aux`` of entries that hold one value per
      setting along a leading axis (SCRUB's teacher, when every setting has its
      own original).
    stacked_init_aux: positions in ``program.init_aux`` of entries with one value
      per setting (SalUn's mask, when every setting has its own original).
    mesh: the devices the settings are split over (default: :func:`settings_mesh`,
      this process's devices). ``G`` is padded to a multiple of their number with
      copies of the last setting (and of its per-setting entries), dropped on
      return; the numbers equal one device's to float rounding
      (``tests/test_sweep_sharding.py``).

  Returns:
    ``(stacked_variables, diverged)``: every leaf with a leading axis ``G``, and a
    ``(G,)`` boolean array, True where a setting diverged. With ``keep``, a list of
    such pairs: one per step count of ``keep``, in its order, then the budget's.

  Raises:
    ValueError: for a bad layout, no settings, bad hyperparameter arrays, bad
      ``keep``, or ``maps``, ``keys``, stacked variables or ``stacked_aux`` whose
      shapes or indices do not fit (the error names the entry).
  """
  if layout not in LAYOUTS:
    raise ValueError(f"layout={layout!r}: use one of {LAYOUTS}.")
  if not values:
    raise ValueError("run_stacked needs at least one setting.")
  for v in values:
    _check_values(program, v)
  given = num = len(values)
  maps = _check_maps(program, maps, num, name)
  sizes = {k: int(m.shape[1]) for k, m in maps.items()}
  if keys is not None and len(keys) != num:
    raise ValueError(f"{name}: {len(keys)} keys for {num} settings.")
  if stacked:
    _leading(variables, num, f"{name}: stacked variables")
  per_aux = {}
  for pos in stacked_aux:
    if not 0 <= pos < len(program.aux):
      raise ValueError(f"{name}: stacked_aux position {pos} is outside the program's"
                       f" {len(program.aux)} aux entries.")
    _leading(program.aux[pos], num, f"{name}: aux entry {pos}")
    per_aux[pos] = program.aux[pos]
  for pos, data_name in program.aux_maps.items():
    if data_name in maps:
      per_aux[pos] = maps[data_name]
  for pos in stacked_init_aux:
    if not 0 <= pos < len(program.init_aux):
      raise ValueError(f"{name}: stacked_init_aux position {pos} is outside the program's"
                       f" {len(program.init_aux)} init_aux entries.")
    _leading(program.init_aux[pos], num, f"{name}: init_aux entry {pos}")
  aux = tuple(None if p in per_aux else a for p, a in enumerate(program.aux))
  init_aux = tuple(program.init_aux)
  mesh = settings_mesh() if mesh is None else mesh
  extra = -given % mesh.size  # padded with copies of the last setting, dropped below
  if extra:
    values = list(values) + [values[-1]] * extra
    num = len(values)
    maps = _pad(maps, extra)
    per_aux = _pad(per_aux, extra)
    keys = None if keys is None else _pad(keys, extra)
    variables = _pad(variables, extra) if stacked else variables
    init_aux = tuple(_pad(a, extra) if p in stacked_init_aux else a
                     for p, a in enumerate(init_aux))
  hp = {k: jnp.asarray([v[k] for v in values], jnp.float32) for k in program.arrays}
  steps = {kind: _stacked_step(fn, layout, keys is not None, mesh)
           for kind, fn in program.steps.items()}
  if stacked:
    params = _state.trainable(variables)
  else:
    params = jax.tree.map(lambda a: jnp.broadcast_to(a, (num,) + jnp.shape(a)),
                          _state.trainable(variables))
  init_axes = tuple(0 if p in stacked_init_aux else None for p in range(len(init_aux)))
  opt_state = jax.vmap(program.init, in_axes=(0, 0, None if keys is None else 0) + init_axes)(
      params, hp, key if keys is None else keys, *init_aux)
  start_vars = variables if stacked else stack(variables, num)
  stacked_vars, opt_state = fresh_copy((start_vars, opt_state))
  if mesh.size > 1:
    part = NamedSharding(mesh, P(_SETTINGS_AXIS))
    stacked_vars, opt_state, hp = jax.device_put((stacked_vars, opt_state, hp), part)
  keep = list(keep)
  if keep and (budget is None or not program.prefix_consistent
               or any(not 1 <= k < budget for k in keep)):
    raise ValueError(f"keep={keep}: only step counts in [1, {budget}) of a program whose"
                     " segments do not depend on its budget.")
  kept = {}
  finite = jnp.ones(num, bool)
  if mesh.size > 1:
    finite = jax.device_put(finite, NamedSharding(mesh, P(_SETTINGS_AXIS)))
  start = time.perf_counter()
  done = 0
  for seg, batches, epoch_key in _stacked_passes(program, key, keys, budget, sizes, name):
    x, y = program.data[seg.data]
    row = maps.get(seg.data)
    seg_hp = hp
    if seg.values is not None:
      per = [seg.values(v) for v in values]
      seg_hp = {**hp, **{k: jnp.asarray([p[k] for p in per], jnp.float32) for k in per[0]}}
    for i in range(batches.shape[0]):
      if keys is None:
        step_key = jax.random.fold_in(epoch_key, i + 1)
      else:
        step_key = _fold_in_each(epoch_key, i + 1)
      stacked_vars, opt_state, ok = steps[seg.kind](
          stacked_vars, opt_state, x, y, batches[i], step_key, seg_hp, row, aux, per_aux)
      finite = finite & ok
      done += 1
      if done in keep:  # copied: the next step donates these buffers
        kept[done] = (fresh_copy(stacked_vars), ~np.asarray(finite))
  logging.info("%s: %d settings in %.1fs", name, given, time.perf_counter() - start)
  trim = lambda pair: (jax.tree.map(lambda a: a[:given], pair[0]), pair[1][:given])
  if keep:
    return [trim(kept[k]) for k in keep] + [trim((stacked_vars, ~np.asarray(finite)))]
  return trim((stacked_vars, ~np.asarray(finite)))


@jax.jit
def _fold_in_each(keys: jax.Array, data: int) -> jax.Array:
  """``fold_in(k, data)`` for each key of ``keys``."""
  return jax.vmap(lambda k: jax.random.fold_in(k, data))(keys)


def _stacked_passes(program: Program, key: jax.Array, keys: jax.Array | None,
                    budget: int | None, sizes: Mapping[str, int], name: str):
  """``(segment, batches, epoch_key)`` of each pass: shared (``batches (steps, b)``)
  or, with ``keys``, one per setting (``batches (steps, G, b)``, ``G`` epoch keys)."""
  if keys is None:
    for seg, batches in _passes(program, key, budget, sizes, name):
      yield seg, batches, seg.epoch_key
    return
  for parts in zip(*[_passes(program, k, budget, sizes, name) for k in keys]):
    seg = parts[0][0]
    for other, batches in parts[1:]:
      if ((other.kind, other.data, other.batch_size) != (seg.kind, seg.data, seg.batch_size)
          or batches.shape != parts[0][1].shape):
        raise ValueError(f"{name}: with per-setting keys the passes must agree in all but"
                         f" their keys; {seg.name} and {other.name} differ.")
    yield (seg, jnp.stack([b for _, b in parts], axis=1),
           jnp.stack([s.epoch_key for s, _ in parts]))


def epochs_then_steps(epochs: int, budget: int | None) -> Iterable[int]:
  """The epoch numbers a method's segments run: ``range(epochs)``, or every epoch
  (``0, 1, ...``) when the budget is in steps (the run stops after ``budget`` steps)."""
  return range(epochs) if budget is None else itertools.count()


class SweepResult(NamedTuple):
  """:func:`sweep`'s result, in the grid's order.

  Attributes:
    variables: the unlearned models, every leaf stacked along a leading axis ``G``
      (``unstack(result.variables, g)`` is setting ``g``'s).
    diverged: ``(G,)`` booleans, True where a setting's weights or loss stopped
      being finite (its variables are then not finite either).
    hparams: the ``G`` settings, as given.
    programs: how many compiled programs ran (settings that differ in a static
      hyperparameter cannot share one).
  """

  variables: Any
  diverged: np.ndarray
  hparams: tuple[Any, ...]
  programs: int


def unstack(tree: Any, index: int) -> Any:
  """Entry ``index`` of a stacked pytree."""
  return jax.tree.map(lambda a: a[index], tree)


def default_layout() -> str:
  """``"vmap"``: measured fastest on the 2-core CPU as well as the natural choice
  on accelerators (``benchmarks/sweep_speed.py``: the vmapped step, its
  convolutions grouped, against ``lax.map``'s loop of convolutions inside the
  compiled step; the figures and the command are in docs/performance.md)."""
  return "vmap"


def sweep(method: Any, problem: Any, grid: Sequence[Any], key: jax.Array, *,
          layout: str | None = None, chunk: int | None = None,
          name: str | None = None, mesh: Mesh | None = None) -> SweepResult:
  """Runs ``G`` settings of one method as one program: the grid of a frontier.

  Settings that share their static hyperparameters (batch size, budget, pass
  counts, and what ``hparams.program_key()`` says, such as whether a term
  exists) run together, their array hyperparameters (step
  sizes, scales, decays, noise) passed as ``(G,)`` arrays, every step one compiled
  call for all of them (:func:`run_stacked`). Every setting gets ``key``: the same
  batches, keys and noise as a single run of it with that key, so setting ``g``
  equals ``method.unlearn(problem, grid[g], key)`` up to float rounding, and the
  settings differ only by their hyperparameters.

  Args:
    method: a :class:`ieu_jax.methods.Method` with a program (``ieu_jax.sweep``
      also takes its registry name).
    problem: the :class:`ieu_jax.methods.Problem`.
    grid: the settings: the method's hyperparameter instances, or mappings read as
      the method's hyperparameters.
    key: the method's key.
    layout: ``"map"`` or ``"vmap"`` (:func:`run_stacked`); default
      :func:`default_layout`.
    chunk: at most this many settings per program (memory); None: all of a
      group. The numbers do not depend on it.
    mesh: the devices the settings are split over (:func:`run_stacked`).
    name: the method's name for logs and errors.

  Returns:
    A :class:`SweepResult`.

  Raises:
    ValueError: for an empty grid, a method without a program, a bad chunk.
  """
  name = name or "sweep"
  if method.program is None:
    raise ValueError(f"{name}: the method has no program, so it cannot be swept.")
  grid = tuple(h if isinstance(h, method.hparams_class)
               else method.hparams_class.from_config(h, method=name) for h in grid)
  if not grid:
    raise ValueError(f"{name}: the grid is empty.")
  if chunk is not None and (isinstance(chunk, bool) or int(chunk) != chunk or chunk < 1):
    raise ValueError(f"{name}: chunk={chunk!r} must be a positive integer or None.")
  layout = layout or default_layout()
  # Settings with equal static hyperparameters share a program, built once (SalUn's
  # mask, for instance, is computed when its program is built). Where the segments do
  # not depend on the budget, the budgets are one run too: the shorter ones are kept
  # on the way (run_stacked's ``keep``).
  first = method.program(problem, grid[0], name)
  share_budgets = first.prefix_consistent and all(getattr(h, "steps", None) for h in grid)
  groups: dict[str, list[int]] = {}
  for g, hp in enumerate(grid):
    static = {k: v for k, v in hp.to_dict().items()
              if k not in first.arrays and not (share_budgets and k == "steps")}
    static.update(hp.program_key())
    groups.setdefault(json.dumps(static, sort_keys=True, default=str), []).append(g)
  parts: list[Any] = [None] * len(grid)
  diverged = np.zeros(len(grid), bool)
  count = 0
  for members in groups.values():
    prog = first if members[0] == 0 else method.program(problem, grid[members[0]], name)
    budgets = sorted({getattr(grid[g], "steps", None) for g in members},
                     key=lambda b: -1 if b is None else b)
    runs: dict[tuple, int] = {}  # the settings' array values: one trajectory each
    for g in members:
      runs.setdefault(tuple(getattr(grid[g], k) for k in prog.arrays), len(runs))
    trajectories = list(runs)
    size = len(trajectories) if chunk is None else int(chunk)
    for start in range(0, len(trajectories), size):
      block = trajectories[start:start + size]
      values = [dict(zip(prog.arrays, t)) for t in block]
      out = run_stacked(prog, problem.original, values, key, budget=budgets[-1],
                        keep=budgets[:-1], layout=layout, name=name, mesh=mesh)
      by_budget = dict(zip(budgets, out if len(budgets) > 1 else [out]))
      count += 1
      for g in members:
        t = tuple(getattr(grid[g], k) for k in prog.arrays)
        if t in block:
          stacked, div = by_budget[getattr(grid[g], "steps", None)]
          parts[g] = (stacked, block.index(t))
          diverged[g] = div[block.index(t)]
  # One stacked tree in the grid's order.
  variables = jax.tree.map(lambda *leaves: jnp.stack(leaves),
                           *[unstack(s, i) for s, i in parts])
  return SweepResult(variables, diverged, grid, count)
