"""U-LiRA and the NeurIPS 2023 challenge score over shadow models: ``experiments.ulira``.

``config.ulira`` says how many shadow copies (``num_shadows``), how many examples of
the training split form the population (``population``; None: all of it, less one
if odd), how many each copy forgets (``forget_size``) and which methods unlearn
(``methods``). With ``trained, forgotten = privacy.inclusion(...)``:

* ``Original``: the copies trained on their halves (:func:`ieu_jax.shadow.train_shadows`,
  the pipeline's recipe ``config.train``), no unlearning: the attack should win;
* ``Retrain``: each copy retrained without its forget subset
  (:func:`ieu_jax.shadow.retrain_shadows`): the attack should sit at chance;
* each method of ``config.ulira.methods``, with ``config.method[name]``: every copy
  unlearns its own forget subset (:func:`ieu_jax.shadow.unlearn_shadows`).

Those, and a second set of Retrain copies with another key (the challenge's
retrained side), are cached in ``workdir/checkpoints/ulira`` (orbax) under a
fingerprint of everything they depend on, so a rerun restores them.

Per row: the score of copy m on example i is ``privacy.logit_confidence`` of its
logits; U-LiRA (:func:`ieu_jax.privacy.ulira`) gives the per-target accuracies
(``ulira_accuracy``: their mean and std, percent). The challenge's forgetting
quality compares, for each example i, the outputs of the row's copies that forgot
it with those of the reference Retrain copies that forgot it (the second set: the
same halves and forget subsets, another key), :func:`ieu_jax.privacy.per_example_epsilon`
then :func:`~ieu_jax.privacy.epsilon_score`, averaged over the examples that at
least two copies forgot (the others are counted); the challenge score multiplies it
by the ratios of the mean RA (each copy on its own retain subset) and TA (the test
split) to the reference copies' (:func:`ieu_jax.privacy.challenge_score`). Beside
them: UA and MIA-efficacy per copy, RCD on the first ``rcd_copies`` copies
(:func:`_add_rcd`), and how the measures rank the methods (:func:`rankings`).

A copy whose weights or outputs are not finite is left out of its row and counted
(``diverged``); a row left with fewer than two copies has no U-LiRA accuracy and no
challenge score (NaN). The MIA's subsample and U-LiRA's draw of retrained pairs use
``config.seed`` for every row and copy: common random numbers, as the pipeline's
rows share theirs.

Writes ``ulira.json``, ``ulira.md`` and ``ulira.png`` (per row, the distribution of
the attack's confidence, the log-likelihood ratio, over its unlearned and its
retrained pairs).
"""

from __future__ import annotations

import functools
import os
import sys
import time
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from scipy.special import expit

from ieu_jax import _metrics
from ieu_jax import _program
from ieu_jax import _rcd
from ieu_jax import attackers as attackers_lib
from ieu_jax import comparison
from ieu_jax import data as data_lib
from ieu_jax import experiment
from ieu_jax import methods as methods_lib
from ieu_jax import outputs
from ieu_jax import pipeline
from ieu_jax import privacy
from ieu_jax import shadow

__all__ = ["MEASURES", "ROWS", "kendall_tau", "method_names", "rankings", "run",
           "scores_and_accuracy", "write_report", "write_results_doc"]

ROWS = ("Original", "Retrain")
"""The rows every run has before its methods."""

# Key streams of the seed's root key.
_KEY_INCLUSION, _KEY_SHADOWS, _KEY_RETRAIN, _KEY_METHODS, _KEY_REFERENCE = 41, 42, 43, 44, 45


def method_names(config: ml_collections.ConfigDict) -> list[str]:
  """``config.ulira.methods`` (comma-separated), each with a program and hyperparameters."""
  names = [n.strip() for n in str(config.ulira.methods).split(",") if n.strip()]
  if len(set(names)) != len(names):
    raise ValueError(f"config.ulira.methods={config.ulira.methods!r} names a method twice.")
  for name in names:
    if name in ROWS:
      raise ValueError(f"config.ulira.methods: {name} is always a row; do not list it.")
    if methods_lib.get(name).program is None:
      raise ValueError(f"config.ulira.methods: {name} has no program.")
    if name not in config.method:
      raise ValueError(f"config.ulira.methods: {name} has no hyperparameters in config.method.")
  return names


def _population(train: data_lib.Dataset, size: int | None) -> data_lib.Dataset:
  n = len(train) if size is None else int(size)
  if not 2 <= n <= len(train):
    raise ValueError(f"config.ulira.population={size!r}: the training split has {len(train)}"
                     " examples; give a number in [2, that] (an odd one loses its last"
                     " example) or None.")
  n -= n % 2
  return data_lib.Dataset(train.x[:n], train.y[:n], train.num_classes)


def scores_and_accuracy(apply_fn, stacked: Any, data: data_lib.Dataset,
                        chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
  """``(scores, correct)``: ``(N, n)`` logit confidences and correctness of every copy.

  The copies run in eval mode over ``data`` in chunks of ``chunk`` examples (the last
  one padded, so one compilation serves every chunk), all copies at once (``vmap``).
  A copy with a non-finite logit anywhere (finite weights whose outputs overflow)
  gets NaN for every score and False for every correctness.
  """
  n = len(data)
  size = min(chunk, n)
  chunks = []
  for start in range(0, n, size):
    x = data.x[start:start + size]
    pad = size - x.shape[0]
    if pad:
      x = jnp.concatenate([x, jnp.zeros((pad,) + x.shape[1:], x.dtype)])
    chunks.append(np.asarray(_logits(apply_fn, stacked, x), np.float64)[:, :size - pad])
  logits = np.concatenate(chunks, axis=1)
  labels = np.broadcast_to(np.asarray(data.y), logits.shape[:2])
  finite = np.isfinite(logits).reshape(logits.shape[0], -1).all(axis=1)
  scores = np.full(logits.shape[:2], np.nan)
  correct = np.zeros(logits.shape[:2], bool)
  if finite.any():
    scores[finite] = privacy.logit_confidence(logits[finite], labels[finite])
    correct[finite] = logits[finite].argmax(-1) == labels[finite]
  return scores, correct


@functools.partial(jax.jit, static_argnums=0)
def _logits(apply_fn, stacked, x):
  return jax.vmap(apply_fn, in_axes=(0, None))(stacked, x)


class _NoPairs(ValueError):
  """No example that two copies forgot."""


def _forgetting_quality(unlearned: np.ndarray, retrained: np.ndarray, forgotten: np.ndarray,
                        delta: float) -> tuple[float, int, np.ndarray]:
  """F over the examples at least two copies forgot: ``(F, skipped, epsilons)``."""
  eps = []
  skipped = 0
  for i in range(forgotten.shape[1]):
    who = forgotten[:, i]
    if who.sum() < 2:
      skipped += int(who.any())
      continue
    eps.append(privacy.per_example_epsilon(unlearned[who, i], retrained[who, i], delta))
  eps = np.asarray(eps, np.float64)
  if not eps.size:
    raise _NoPairs("no example was forgotten by two copies or more: raise"
                   " config.ulira.num_shadows or forget_size.")
  return float(np.mean(privacy.epsilon_score(eps))), skipped, eps


def _finite_copies(stacked: Any) -> np.ndarray:
  """``(N,)``: True where every weight of copy m is finite (a diverged copy is saved and
  restored with its non-finite weights)."""
  ok = None
  for leaf in jax.tree.leaves(stacked):
    a = np.isfinite(np.asarray(leaf)).reshape(np.shape(leaf)[0], -1).all(axis=1)
    ok = a if ok is None else ok & a
  return ok


def _row(name: str, stacked: Any, trained: np.ndarray, forgotten: np.ndarray, setup,
         seed: int) -> dict[str, Any]:
  """A row's scores, UA, RA, TA, MIA-efficacy and U-LiRA over its usable copies (finite
  weights and outputs); private fields start with ``_``. Every metric of a row with no
  usable copy is NaN, and U-LiRA is NaN with fewer than two."""
  pop, test, apply_fn, mia_cap = setup
  nan = float("nan")
  ok = _finite_copies(stacked)
  scores = np.full(trained.shape, np.nan)
  test_scores = np.full((trained.shape[0], len(test)), np.nan)
  correct = np.zeros(trained.shape, bool)
  test_correct = np.zeros(test_scores.shape, bool)
  if ok.any():
    finite = jax.tree.map(lambda a: a[np.flatnonzero(ok)], stacked)
    scores[ok], correct[ok] = scores_and_accuracy(apply_fn, finite, pop)
    test_scores[ok], test_correct[ok] = scores_and_accuracy(apply_fn, finite, test)
    ok &= np.isfinite(scores).all(1) & np.isfinite(test_scores).all(1)
  row = {"name": name, "diverged": int((~ok).sum()), "_ok": ok, "_params": stacked}
  if (~ok).any():
    logging.warning("%s: copies %s diverged (weights or outputs not finite); left out.",
                    name, np.flatnonzero(~ok).tolist())
  if not ok.any():
    return {**row, "ulira_accuracy": {"mean": nan, "std": nan}, "UA": nan, "RA": nan,
            "TA": nan, "MIA": {"mean": nan, "std": nan, "not_finite": 0}}
  scores, correct, test_scores = scores[ok], correct[ok], test_scores[ok]
  forget, retain = forgotten[ok], (trained & ~forgotten)[ok]
  ua = 100 - 100 * (correct & forget).sum(1) / forget.sum(1)
  ra = 100 * (correct & retain).sum(1) / retain.sum(1)
  mia = np.asarray([_mia(scores[j], test_scores[j], retain[j], forget[j], mia_cap, seed)
                    for j in range(len(scores))])
  ta = 100 * test_correct[ok].mean(1)
  row.update({"UA": float(ua.mean()), "RA": float(ra.mean()), "TA": float(ta.mean()),
              "MIA": _mean_std(mia), "mia_per_copy": mia.tolist(), "_scores": scores,
              "_ra": _expand(ra, ok), "_ta": _expand(ta, ok)})
  if ok.sum() < 2:
    logging.warning("%s: one usable copy; U-LiRA needs two.", name)
    row["ulira_accuracy"] = {"mean": nan, "std": nan}
    return row
  result = privacy.ulira(scores, trained[ok], forgotten[ok], seed=seed)
  row.update({"ulira_accuracy": {"mean": result.mean, "std": result.std},
              "ulira_per_target": result.accuracy.tolist(),
              "skipped_pairs": {"unlearned": result.skipped_unlearned,
                                "retrained": result.skipped_retrained},
              "_llr": result.llr, "_used": result.used, "_unlearned": result.unlearned_pairs})
  return row


def _mean_std(values: np.ndarray) -> dict[str, float]:
  """Mean and ``ddof=1`` std over the finite values, and how many were not finite."""
  v = np.asarray(values, np.float64)
  f = v[np.isfinite(v)]
  return {"mean": float(f.mean()) if f.size else float("nan"),
          "std": float(f.std(ddof=1)) if f.size > 1 else float("nan"),
          "not_finite": int(v.size - f.size)}


def _mia(scores, test_scores, retain, forget, cap: int, seed: int) -> float:
  """MIA-efficacy of one copy, as the pipeline's (:func:`ieu_jax._metrics.mia_efficacy`):
  its retain subset against the test split, applied to its forget subset, on the
  true-class probability ``sigmoid(logit confidence)``."""
  return _metrics.mia_efficacy(expit(scores[retain]), expit(test_scores), expit(scores[forget]),
                               max_per_class=cap, seed=seed)


def _add_challenge(row: dict[str, Any], reference: Mapping[str, Any], forgotten: np.ndarray,
                   delta: float) -> None:
  """``forgetting_quality``, ``challenge_score`` and ``examples_skipped`` of ``row``
  against the reference Retrain copies, over the copies usable in both, F and the
  accuracy ratios alike (NaN where no example is left that two such copies forgot)."""
  both = row["_ok"] & reference["_ok"]
  nan = float("nan")
  if not both.any():
    row.update(forgetting_quality=nan, challenge_score=nan, examples_skipped=None)
    return
  full = lambda r: _expand(r["_scores"], r["_ok"])  # pylint: disable=unnecessary-lambda-assignment
  try:
    fq, skipped, _ = _forgetting_quality(full(row)[both], full(reference)[both],
                                         forgotten[both], delta)
  except _NoPairs:  # the config guarantees pairs; the copies that diverged took them
    logging.warning("%s: too few usable copies for the challenge's epsilon.", row["name"])
    row.update(forgetting_quality=nan, challenge_score=nan, examples_skipped=None)
    return
  row["forgetting_quality"] = fq
  row["examples_skipped"] = skipped
  # The ratios over the same copies as F (all of them unless some diverged).
  mean = lambda r, k: float(np.mean(r[k][both]))  # pylint: disable=unnecessary-lambda-assignment
  row["challenge_score"] = privacy.challenge_score(fq, mean(row, "_ra"), mean(reference, "_ra"),
                                                   mean(row, "_ta"), mean(reference, "_ta"))


def _copy_split(pop: data_lib.Dataset, trained: np.ndarray,
                forgotten: np.ndarray) -> data_lib.ForgetSplit:
  """Copy m's forget split: its half, its forget subset and the rest of its half."""
  forget_idx = np.flatnonzero(forgotten)
  retain_idx = np.flatnonzero(trained & ~forgotten)
  train_idx = np.flatnonzero(trained)
  take = lambda idx: data_lib.Dataset(pop.x[idx], pop.y[idx], pop.num_classes)  # pylint: disable=unnecessary-lambda-assignment
  forget = take(forget_idx)
  return data_lib.ForgetSplit(
      forget=forget, retain=take(retain_idx), forget_indices=np.searchsorted(train_idx, forget_idx),
      retain_indices=np.searchsorted(train_idx, retain_idx), train=take(train_idx),
      forget_clean=forget, mode="random")


def _add_rcd(rows: list[dict[str, Any]], config: ml_collections.ConfigDict, splits,
             pop: data_lib.Dataset, trained: np.ndarray, forgotten: np.ndarray, apply_fn,
             originals: Any, copies: int) -> None:
  """RCD of every row on the first ``copies`` copies, each from its own forget subset.

  Copy m is a pipeline run of its own: its original copy, its forget subset and its
  retain subset; the row's RCD is the first attacker of ``config.rcd.attackers``
  (the pipeline's, with the pipeline's key), normalised by the Retrain row's copy m.
  A row gets ``RCD``: the restricted-mean steps and the normalised RCD, mean and std
  over the copies (censored trajectories count as the budget; ``censored_frac`` is
  the share censored over all the copies' trajectories), and ``rcd_per_copy``.
  """
  cfg = ml_collections.ConfigDict(config.to_dict())
  cfg.forget.mode = "random"  # the guard excludes no class
  cfg.rcd.attackers = tuple(config.rcd.attackers)[:1]
  by_name = {r["name"]: r for r in rows}
  ref = by_name["Retrain"]
  per_row = {r["name"]: [] for r in rows}
  missing = {"steps": float("nan"), "normalized": float("nan"), "censored_frac": float("nan")}
  for m in range(min(int(copies), trained.shape[0])):
    start = time.perf_counter()
    if not (by_name["Original"]["_ok"][m] and ref["_ok"][m]):  # no threshold, no unit
      for row in rows:
        per_row[row["name"]].append(dict(missing))
      continue
    fs = _copy_split(pop, trained[m], forgotten[m])
    original = _program.unstack(originals, m)
    attack = next(iter(attackers_lib.attacks(cfg, splits, fs, apply_fn, original,
                                             _program.unstack(ref["_params"], m)).values()))
    results = {
        row["name"]: experiment.relearn_attack(attack, apply_fn,
                                               _program.unstack(row["_params"], m), cfg, original)
        for row in rows if row["_ok"][m]}
    for row in rows:
      res = results.get(row["name"])
      if res is None:
        per_row[row["name"]].append(dict(missing))
        continue
      s = _rcd.rcd_summary(res, results.get(ref["name"]))
      per_row[row["name"]].append({"steps": s.steps_mean, "normalized": s.normalized,
                                   "censored_frac": s.censored_frac})
    logging.info("RCD on copy %d: %d rows in %.1fs", m, len(results), time.perf_counter() - start)
  for row in rows:
    done = per_row[row["name"]]
    censored = [c["censored_frac"] for c in done if np.isfinite(c["censored_frac"])]
    row["RCD"] = {"steps": _mean_std([c["steps"] for c in done]),
                  "normalized": _mean_std([c["normalized"] for c in done]),
                  "censored_frac": float(np.mean(censored)) if censored else float("nan"),
                  "copies": len(done)}
    row["rcd_per_copy"] = done


MEASURES = {
    # name: (how far a row is from forgetting like Retrain, from its JSON row and
    #        Retrain's; lower is better)
    "U-LiRA": lambda r, ref: abs(r["ulira_accuracy"]["mean"] - 50.0),
    "challenge score": lambda r, ref: -r["challenge_score"],
    "MIA-efficacy": lambda r, ref: abs(r["MIA"]["mean"] - ref["MIA"]["mean"]),
    "RCD": lambda r, ref: experiment.rcd_gap(r["RCD"]["steps"]["mean"],
                                             ref["RCD"]["steps"]["mean"]),
}
"""How each measure orders the methods, best first: U-LiRA's distance from chance, the
challenge score (higher is better), MIA-efficacy's distance from Retrain's, and RCD's
gap to Retrain's (:func:`ieu_jax.experiment.rcd_gap`)."""


def kendall_tau(a, b) -> float:
  """Kendall's tau-b of two score vectors (ties corrected); NaN with no untied pair."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape != b.shape or a.ndim != 1:
    raise ValueError(f"kendall_tau: shapes {a.shape} and {b.shape} must be the same 1-D shape.")
  i, j = np.triu_indices(a.size, k=1)
  da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
  pairs = float(i.size)
  untied_a, untied_b = pairs - np.sum(da == 0), pairs - np.sum(db == 0)
  if untied_a == 0 or untied_b == 0:
    return float("nan")
  return float(np.sum(da * db) / np.sqrt(untied_a * untied_b))


def rankings(methods: list[Mapping[str, Any]]) -> dict[str, Any]:
  """Each measure's order of the rows that are neither ``Original`` nor ``Retrain``.

  Returns ``{"order": {measure: [names, best first]}, "values": {measure: {name:
  value}}, "unranked": {measure: [names whose value is NaN, placed last]}, "tau":
  {"A vs B": Kendall's tau-b over the names both rank}, "agree": every tau is 1}``.
  """
  by_name = {m["name"]: m for m in methods}
  ref = by_name["Retrain"]
  names = [m["name"] for m in methods if m["name"] not in ROWS]
  values, order, unranked = {}, {}, {}
  for measure, far in MEASURES.items():
    v = {}
    for n in names:
      try:
        v[n] = float(far(by_name[n], ref))
      except (KeyError, TypeError):
        v[n] = float("nan")
    values[measure] = v
    finite = sorted((n for n in names if np.isfinite(v[n])), key=lambda n: v[n])
    unranked[measure] = [n for n in names if not np.isfinite(v[n])]
    order[measure] = finite + unranked[measure]
  tau = {}
  measures = list(MEASURES)
  for x in range(len(measures)):
    for y in range(x + 1, len(measures)):
      a, b = measures[x], measures[y]
      both = [n for n in names if np.isfinite(values[a][n]) and np.isfinite(values[b][n])]
      tau[f"{a} vs {b}"] = (kendall_tau([values[a][n] for n in both],
                                        [values[b][n] for n in both])
                            if len(both) > 1 else float("nan"))
  return {"order": order, "values": values, "unranked": unranked, "tau": tau,
          "agree": bool(tau) and all(t == 1.0 for t in tau.values())}


def _expand(rows: np.ndarray, ok: np.ndarray) -> np.ndarray:
  out = np.full((ok.shape[0],) + rows.shape[1:], np.nan)
  out[ok] = rows
  return out


@pipeline.locks_workdir
def run(config: ml_collections.ConfigDict, workdir: str, command: str | None = None,
        results_doc: str | None = None) -> dict[str, Any]:
  """Trains (or restores) the shadows, unlearns, scores; writes ``ulira.json``,
  ``ulira.md`` and ``ulira.png`` to ``workdir``, and with ``results_doc`` that
  page's U-LiRA block (:func:`write_results_doc`).

  Returns:
    The ``ulira.json`` object.
  """
  start = time.perf_counter()
  names = method_names(config)
  u = config.ulira
  num = int(u.num_shadows)
  root = jax.random.key(int(config.seed))
  splits, _, init_fn, apply_fn = experiment.data_and_model(config)
  pop = _population(splits.train, u.get("population"))
  trained, forgotten = privacy.inclusion(jax.random.fold_in(root, _KEY_INCLUSION), num,
                                         len(pop), int(u.forget_size))
  twice = int((forgotten.sum(0) >= 2).sum())
  if not twice:
    raise ValueError(f"config.ulira: no example is forgotten by two of the {num} copies"
                     f" (forget_size={u.forget_size} of halves of {len(pop) // 2}): raise"
                     " num_shadows or forget_size.")
  like = jax.eval_shape(lambda: jax.vmap(init_fn)(jax.random.split(jax.random.key(0), num)))
  recipe = config.train.to_dict()
  base = {"data": config.data, "model": config.model, "train": recipe, "seed": config.seed,
          "population": pop}
  ckpt = lambda name: os.path.join("ulira", name)  # pylint: disable=unnecessary-lambda-assignment
  strict = bool(config.get("strict_checkpoints", False))
  originals = shadow.cached_shadows(
      workdir, ckpt("original"), {**base, "what": "original"}, like,
      lambda: shadow.train_shadows(init_fn, apply_fn, pop, trained, recipe,
                                   jax.random.fold_in(root, _KEY_SHADOWS), name="Original"),
      {"trained": trained}, strict=strict)
  retrained = shadow.cached_shadows(
      workdir, ckpt("retrain"), {**base, "what": "retrain"}, like,
      lambda: shadow.retrain_shadows(init_fn, apply_fn, pop, trained, forgotten, recipe,
                                     jax.random.fold_in(root, _KEY_RETRAIN)),
      {"trained": trained, "forgotten": forgotten}, strict=strict)
  reference_set = shadow.cached_shadows(
      workdir, ckpt("retrain_reference"), {**base, "what": "retrain_reference"}, like,
      lambda: shadow.retrain_shadows(init_fn, apply_fn, pop, trained, forgotten, recipe,
                                     jax.random.fold_in(root, _KEY_REFERENCE)),
      {"trained": trained, "forgotten": forgotten}, strict=strict)
  setup = (pop, splits.test, apply_fn, int(config.eval.mia_max_per_class))
  problem = methods_lib.Problem(apply_fn=apply_fn, init_fn=init_fn, original=None, forget=None,
                                retain=None, num_classes=pop.num_classes, train=recipe)
  delta, seed = float(u.delta), int(config.seed)
  original = _row("Original", originals.params, trained, forgotten, setup, seed)
  retrain = _row("Retrain", retrained.params, trained, forgotten, setup, seed)
  reference = _row("Retrain (reference)", reference_set.params, trained, forgotten, setup, seed)
  rows = [original, retrain]
  for row, done in ((original, originals), (retrain, retrained), (reference, reference_set)):
    row.update(seconds=done.seconds, restored=done.restored)
  for name in names:
    hp = methods_lib.hparams(name, config.method[name])
    key = pipeline.method_key(root, _KEY_METHODS, name)
    done = shadow.cached_shadows(
        workdir, ckpt(f"unlearned/{name.replace('/', '_')}"),
        {**base, "what": "unlearned", "method": name, "hparams": hp.to_dict()}, like,
        lambda name=name, hp=hp, key=key: shadow.unlearn_shadows(
            name, problem, originals.params, trained, forgotten, hp, key, population=pop,
            name=name)[0],
        {"trained": trained, "forgotten": forgotten}, strict=strict)
    rows.append(_row(name, done.params, trained, forgotten, setup, seed))
    rows[-1].update(seconds=done.seconds, restored=done.restored)
  for row in rows:
    _add_challenge(row, reference, forgotten, delta)
  _add_rcd(rows, config, splits, pop, trained, forgotten, apply_fn, originals.params,
           int(u.rcd_copies))
  public = lambda r: {k: v for k, v in r.items() if not k.startswith("_")}  # pylint: disable=unnecessary-lambda-assignment
  methods = [public(r) for r in rows]
  out = {
      "command": command or "python -m experiments.ulira " + " ".join(sys.argv[1:]),
      "config": outputs.json_safe(config.to_dict()),
      "N": num, "population": len(pop), "forget_size": int(u.forget_size),
      "rcd_copies": min(int(u.rcd_copies), num),
      "methods": methods,
      "challenge_reference": {k: public(reference)[k] for k in
                              ("RA", "TA", "diverged", "seconds", "restored")},
      "rankings": rankings(outputs.json_safe(methods)),
      "devices": f"{jax.device_count()} {jax.default_backend()} device(s)",
      "wall_time_s": time.perf_counter() - start,
  }
  out = outputs.json_safe(out)
  write_report(out, rows, workdir)
  if results_doc:
    write_results_doc(out, results_doc, workdir)
  return out


def _rcd_text(rcd: Mapping[str, Any] | None, what: str, digits: int) -> str:
  if not rcd:
    return "n/a"
  text = outputs.fmt_mean_std(rcd[what]["mean"], rcd[what]["std"], digits)
  return f">= {text}" if rcd.get("censored_frac", 0) and text != "n/a" else text


def _table(out: Mapping[str, Any]) -> str:
  header = ["method", "U-LiRA acc. (%)", "forgetting quality", "challenge score",
            "MIA-efficacy", "RCD steps", "RCD norm.", "UA", "RA", "TA", "diverged"]
  table = [[m["name"], outputs.fmt_mean_std(m["ulira_accuracy"]["mean"],
                                            m["ulira_accuracy"]["std"]),
            outputs.fmt(m.get("forgetting_quality"), 3), outputs.fmt(m.get("challenge_score"), 3),
            outputs.fmt_mean_std(m["MIA"]["mean"], m["MIA"]["std"]),
            _rcd_text(m.get("RCD"), "steps", 1), _rcd_text(m.get("RCD"), "normalized", 2),
            outputs.fmt(m["UA"]), outputs.fmt(m["RA"]), outputs.fmt(m["TA"]), m["diverged"]]
           for m in out["methods"]]
  return outputs.markdown_table(header, table)


def _rankings_text(r: Mapping[str, Any]) -> str:
  lines = ["How each measure orders the methods, closest to Retrain first (U-LiRA: accuracy"
           " nearest 50; challenge score: highest; MIA-efficacy and RCD: nearest Retrain's;"
           " = marks a tie):",
           ""]
  for measure, order in r["order"].items():
    unranked = r["unranked"][measure]
    ranked = [n for n in order if n not in unranked]
    values = r["values"][measure]
    text = "".join((n if not k else (" = " if values[n] == values[ranked[k - 1]] else " > ") + n)
                   for k, n in enumerate(ranked))
    tail = f" (no value, last: {', '.join(unranked)})" if unranked else ""
    lines.append(f"* {measure}: {text}{tail}")
  lines += ["", "Kendall's tau-b between the orders (1: the same order, -1: reversed): "
            + "; ".join(f"{k} {outputs.fmt(v)}" for k, v in r["tau"].items()) + ".", ""]
  taus = [v for v in r["tau"].values() if v is not None and np.isfinite(v)]
  missing = len(r["tau"]) - len(taus)
  note = (f" ({missing} pair(s) not comparable: fewer than two methods ranked by both)"
          if missing else "")
  if r["agree"]:
    lines.append("The four measures rank the methods the same way.")
  elif not taus:
    lines.append("No two measures rank two methods in common: nothing to compare.")
  else:
    split = sum(v != 1.0 for v in taus)
    lines.append(f"The rankings do not agree: {split} of the {len(taus)} comparable pairs"
                 f" of measures order the methods differently{note}.")
  return "\n".join(lines) + "\n"


def _setting(out: Mapping[str, Any]) -> str:
  ref = out["challenge_reference"]
  trained = sum(m.get("seconds") or 0.0 for m in out["methods"]) + (ref.get("seconds") or 0.0)
  return (f"{out['N']} shadow copies, population {out['population']}, forget set"
          f" {out['forget_size']} per copy; {out['devices']}, {out['wall_time_s'] / 60:.1f} min"
          f" for this invocation (the copies' training and unlearning, restored or not, took"
          f" {trained / 60:.1f} min in all, as recorded when each set was computed)."
          " U-LiRA accuracy: mean and std over target copies (50: chance). Forgetting quality"
          " and challenge score against a second, independent set of Retrain copies (other"
          f" keys; RA {outputs.fmt(ref['RA'])}, TA {outputs.fmt(ref['TA'])}), so Retrain's own"
          " row measures how far two retrainings differ. MIA-efficacy: mean and std over every"
          " copy, each on its own retain, forget and test sets. RCD: the first attacker on the"
          f" first {out['rcd_copies']} copies, each normalised by the Retrain copy's own"
          " (>= : some trajectories censored, counted as the budget).\n")


def _markdown(out: Mapping[str, Any]) -> str:
  return (f"# U-LiRA and the challenge score\n\n`{out['command']}`\n\n{_setting(out)}\n"
          + _table(out) + "\n\n" + _rankings_text(out["rankings"]))


def write_results_doc(out: Mapping[str, Any], results_doc: str, workdir: str) -> None:
  """The page's U-LiRA block (``<!-- ulira: start -->`` to its end marker; the rest of
  the page stays), placed before the single-setting comparison's block when the page
  has none yet, and ``ulira.png`` copied beside it as ``figures/<page>_ulira.png``."""
  if not outputs.is_writer():
    return
  figure = comparison.page_figure(results_doc, os.path.join(workdir, "ulira.png"), "ulira")
  block = (f"Reproduce this section:\n\n    {out['command']}\n\n{_setting(out)}\n"
           + _table(out) + "\n\n" + _rankings_text(out["rankings"])
           + f"\n![U-LiRA]({figure})\n")
  comparison.write_block(results_doc, block, name="ulira", before=comparison.block_start())


def write_report(out: Mapping[str, Any], rows, workdir: str) -> None:
  """``ulira.json``, ``ulira.md`` and ``ulira.png`` in ``workdir``."""
  outputs.write_json(os.path.join(workdir, "ulira.json"), out)
  outputs.write_text(os.path.join(workdir, "ulira.md"), _markdown(out))
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(len(rows), 1, figsize=(7, 2.2 * len(rows)), squeeze=False)
  for ax, row in zip(axes[:, 0], rows):
    if "_llr" not in row:
      ax.set_title(f"{row['name']}: fewer than two usable copies", fontsize=9)
      continue
    llr, used = row["_llr"], row["_used"]
    unlearned = np.isfinite(llr) & used & row["_unlearned"]
    retrained_pairs = np.isfinite(llr) & used & ~unlearned
    finite = llr[np.isfinite(llr)]
    lo, hi = (np.percentile(finite, [1, 99]) if finite.size else (-1, 1))
    bins = np.linspace(lo, hi + 1e-9, 40)
    ax.hist(np.clip(llr[unlearned], lo, hi), bins, alpha=0.6, label="unlearned pairs")
    ax.hist(np.clip(llr[retrained_pairs], lo, hi), bins, alpha=0.6, label="retrained pairs")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_title(f"{row['name']}: U-LiRA {row['ulira_accuracy']['mean']:.1f}%", fontsize=9)
    ax.legend(fontsize=7)
  axes[-1, 0].set_xlabel("attack confidence (log-likelihood ratio; > 0: called unlearned)")
  fig.tight_layout()
  outputs.save_figure(fig, os.path.join(workdir, "ulira.png"), dpi=110)
