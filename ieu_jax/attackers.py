"""The RCD attackers of the classifier pipeline: named threat models, and their summary.

``config.rcd.attackers`` names them (:data:`ieu_jax.sections.ATTACKERS`): ``sgd``
(the paper's), ``adam`` and ``retain_only``. :func:`attacks` builds each one's
protocol and data; :func:`rcd_by_attacker` summarises a model's trajectories under
every attacker, normalised by Retrain's under the same attacker, with the worst case.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, NamedTuple

import jax

from ieu_jax import _rcd
from ieu_jax import pipeline

__all__ = ["Attack", "attacks", "rcd_by_attacker"]


class Attack(NamedTuple):
  """One attacker: its protocol, the data it trains on, and the criterion's data
  (None: the data it trains on)."""

  protocol: _rcd.RelearnProtocol
  relearn_data: tuple[jax.Array, jax.Array]
  eval_data: tuple[jax.Array, jax.Array] | None = None


# The retain examples of the retain_only attacker come from their own stream.
_RETAIN_ATTACKER_STREAM = 18


def attacks(config, fs, protocol: _rcd.RelearnProtocol, relearn_data) -> dict[str, Attack]:
  """The attackers of ``config.rcd.attackers`` (:data:`ieu_jax.sections.ATTACKERS`).

  All share the threshold (the original's accuracy on the attacker's ``m`` forget
  examples minus the tolerance) and the criterion's examples, those ``m``.
  """
  rcd = config.rcd
  out = {}
  for name in tuple(rcd.get("attackers", ("sgd",))):
    if name == "sgd":
      out[name] = Attack(protocol, relearn_data)
    elif name == "adam":
      adam = dataclasses.replace(protocol, optimizer="adam",
                                 learning_rates=float(rcd.get("adam_learning_rate", 1e-3)))
      out[name] = Attack(adam, relearn_data)
    else:  # retain_only
      idx = pipeline.attacker_subset(len(fs.retain), int(rcd.relearn_size), int(config.seed),
                                     stream=_RETAIN_ATTACKER_STREAM)
      retain = fs.retain.take(idx)
      out[name] = Attack(protocol, (retain.x, retain.y), relearn_data)
  return out


def rcd_by_attacker(results: Mapping[str, _rcd.RelearnResult],
                    reference: Mapping[str, _rcd.RelearnResult]) -> dict[str, Any]:
  """A row's ``rcd``: the first attacker's summary, every attacker's, and the worst case.

  ``by_attacker[name]`` is each attacker's :class:`ieu_jax.RCDSummary`, normalised
  by Retrain's under the same attacker; ``worst_case_normalized`` is the minimum of
  ``normalized`` over the attackers (the attacker picks its best attack), NaN only
  when no attacker's is defined. The top-level fields are the first attacker's.
  """
  by = {a: _rcd.rcd_summary(r, reference[a])._asdict() for a, r in results.items()}
  defined = [s["normalized"] for s in by.values() if math.isfinite(s["normalized"])]
  return dict(next(iter(by.values())), by_attacker=by,
              worst_case_normalized=min(defined) if defined else math.nan)
