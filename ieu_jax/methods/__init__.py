"""Unlearning methods behind one interface, and the registry that names them.

Adding a method: write a module with ``unlearn(problem, hparams, key) -> params``
and add one line below. The ablations of IEU are the IEU module with other
hyperparameters (see the configs).
"""

from ieu_jax.methods import ft
from ieu_jax.methods import ieu
from ieu_jax.methods import l1_sparse
from ieu_jax.methods import retrain
from ieu_jax.methods import rl
from ieu_jax.methods import salun
from ieu_jax.methods import scrub
from ieu_jax.methods.base import Method
from ieu_jax.methods.base import Problem

REGISTRY: dict[str, Method] = {
    "Retrain": retrain.unlearn,
    "FT": ft.unlearn,
    "RL": rl.unlearn,
    "l1-sparse": l1_sparse.unlearn,
    "SalUn": salun.unlearn,
    "SCRUB": scrub.unlearn,
    # IEU and its ablations: one method, configured apart (see the configs).
    "GA": ieu.unlearn,
    "Noisy": ieu.unlearn,
    "GA+Noisy": ieu.unlearn,
    "GA+Decay": ieu.unlearn,
    "IEU": ieu.unlearn,
}


def get(name: str) -> Method:
  """The method called ``name``; a clear error names the known ones."""
  if name not in REGISTRY:
    raise ValueError(f"unknown method {name!r}: known methods are {sorted(REGISTRY)}.")
  return REGISTRY[name]


__all__ = ["REGISTRY", "Method", "Problem", "get"]
