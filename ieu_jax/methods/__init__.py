"""Unlearning methods behind one interface, and the registry that names them.

Each method is a module with a frozen dataclass of its hyperparameters (a
subclass of :class:`ieu_jax.hparams.HParams`) and a function
``unlearn(problem, hparams, key, *, name) -> params``; the registry pairs the two
under the method's name (:class:`Method`). The ablations of IEU are the IEU
module with other hyperparameters (see the configs); ``GA`` is the published
gradient-ascent baseline (SGD with momentum and weight decay,
:mod:`ieu_jax.methods.ga`), ``GA-plain`` IEU's ascent-only ablation (plain SGD)::

  method = methods.get("SalUn")
  hp = methods.hparams("SalUn", config.method.SalUn)   # SalUnHParams; typos refused
  params = method.unlearn(problem, hp, key, name="SalUn")

Adding a method: write such a module and add one line below.
"""

from __future__ import annotations

from typing import Any

from ieu_jax import _program
from ieu_jax.hparams import HParams
from ieu_jax.methods import ft
from ieu_jax.methods import ga
from ieu_jax.methods import ieu
from ieu_jax.methods import l1_sparse
from ieu_jax.methods import retrain
from ieu_jax.methods import rl
from ieu_jax.methods import salun
from ieu_jax.methods import scrub
from ieu_jax.methods.base import Method
from ieu_jax.methods.base import Problem

_IEU = Method(ieu.unlearn, ieu.IEUHParams, ieu.program)

REGISTRY: dict[str, Method] = {
    "Retrain": Method(retrain.unlearn, retrain.RetrainHParams),
    "FT": Method(ft.unlearn, ft.FTHParams, ft.program),
    "RL": Method(rl.unlearn, rl.RLHParams, rl.program),
    "l1-sparse": Method(l1_sparse.unlearn, l1_sparse.L1SparseHParams, l1_sparse.program),
    "SalUn": Method(salun.unlearn, salun.SalUnHParams, salun.program),
    "SCRUB": Method(scrub.unlearn, scrub.SCRUBHParams, scrub.program),
    "GA": Method(ga.unlearn, ga.GAHParams, ga.program),
    # IEU and its ablations: one method and one class, configured apart (see the configs).
    # GA-plain is IEU's ascent alone (plain SGD, no momentum, no decay), not the GA baseline.
    "GA-plain": _IEU,
    "Noisy": _IEU,
    "GA+Noisy": _IEU,
    "GA+Decay": _IEU,
    "IEU": _IEU,
}


def get(name: str) -> Method:
  """The method called ``name``; a clear error names the known ones."""
  if name not in REGISTRY:
    raise ValueError(f"unknown method {name!r}: known methods are {sorted(REGISTRY)}.")
  return REGISTRY[name]


def hparams(name: str, values: Any = None) -> HParams:
  """Method ``name``'s hyperparameters from ``values`` (a mapping or ConfigDict).

  Raises:
    ValueError: for an unknown method, or a key the method does not have (the
      error names it and the valid keys), or a required key left out.
    TypeError: for a value of the wrong kind.
  """
  return get(name).hparams_class.from_config(values, method=name)


def sweep(method: str | Method, problem: Problem, grid, key, **kwargs) -> _program.SweepResult:
  """:func:`ieu_jax._program.sweep` of a method given by its registry name (or itself).

  ``ieu_jax.sweep`` is this function: ``G`` settings of one method as one program.
  """
  if isinstance(method, str):
    kwargs.setdefault("name", method)
    method = get(method)
  return _program.sweep(method, problem, grid, key, **kwargs)


__all__ = ["REGISTRY", "Method", "Problem", "get", "hparams", "sweep"]
