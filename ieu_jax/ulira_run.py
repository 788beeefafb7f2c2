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

All three kinds are cached in ``workdir/checkpoints/ulira`` (orbax) under a
fingerprint of everything they depend on, so a rerun restores them.

Per row: the score of copy m on example i is ``privacy.logit_confidence`` of its
logits; U-LiRA (:func:`ieu_jax.privacy.ulira`) gives the per-target accuracies
(``ulira_accuracy``: their mean and std, percent). The challenge's forgetting
quality compares, for each example i, the outputs of the row's copies that forgot
it with those of the Retrain copies that forgot it (the same copies retrained
without their forget subsets): :func:`ieu_jax.privacy.per_example_epsilon`, then
:func:`~ieu_jax.privacy.epsilon_score`, averaged over the examples that at least
two copies forgot (the others are counted); the challenge score multiplies it by
the ratios of the mean RA (each copy on its own retain subset) and TA (the test
split) to Retrain's copies' (:func:`ieu_jax.privacy.challenge_score`).

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

from ieu_jax import data as data_lib
from ieu_jax import experiment
from ieu_jax import methods as methods_lib
from ieu_jax import outputs
from ieu_jax import pipeline
from ieu_jax import privacy
from ieu_jax import shadow

__all__ = ["ROWS", "method_names", "run", "scores_and_accuracy", "write_report"]

ROWS = ("Original", "Retrain")
"""The rows every run has before its methods."""

# Key streams of the seed's root key.
_KEY_INCLUSION, _KEY_SHADOWS, _KEY_RETRAIN, _KEY_METHODS = 41, 42, 43, 44


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
  """
  n = len(data)
  size = min(chunk, n)
  scores, correct = [], []
  for start in range(0, n, size):
    x = data.x[start:start + size]
    y = np.asarray(data.y[start:start + size])
    pad = size - x.shape[0]
    if pad:
      x = jnp.concatenate([x, jnp.zeros((pad,) + x.shape[1:], x.dtype)])
    logits = np.asarray(_logits(apply_fn, stacked, x), np.float64)[:, :size - pad]
    labels = np.broadcast_to(y, logits.shape[:2])
    scores.append(privacy.logit_confidence(logits, labels))
    correct.append(logits.argmax(-1) == labels)
  return np.concatenate(scores, axis=1), np.concatenate(correct, axis=1)


@functools.partial(jax.jit, static_argnums=0)
def _logits(apply_fn, stacked, x):
  return jax.vmap(apply_fn, in_axes=(0, None))(stacked, x)


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
    raise ValueError("no example was forgotten by two copies or more: raise"
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
  """A row's scores, RA, TA and U-LiRA (over its finite copies); private fields start
  with ``_``. A row whose every copy diverged has NaN metrics."""
  pop, test, apply_fn = setup
  ok = _finite_copies(stacked)
  if not ok.any():
    logging.warning("%s: every copy diverged; its row has no metric.", name)
    nan = float("nan")
    return {"name": name, "ulira_accuracy": {"mean": nan, "std": nan}, "RA": nan, "TA": nan,
            "diverged": int(ok.size), "_ok": ok}
  stacked = jax.tree.map(lambda a: a[np.flatnonzero(ok)], stacked)
  scores, correct = scores_and_accuracy(apply_fn, stacked, pop)
  _, test_correct = scores_and_accuracy(apply_fn, stacked, test)
  retain = (trained & ~forgotten)[ok]
  ra = 100 * (correct & retain).sum(1) / retain.sum(1)
  result = privacy.ulira(scores, trained[ok], forgotten[ok], seed=seed)
  return {"name": name, "ulira_accuracy": {"mean": result.mean, "std": result.std},
          "ulira_per_target": result.accuracy.tolist(),
          "RA": float(ra.mean()), "TA": float(100 * test_correct.mean()),
          "diverged": int((~ok).sum()),
          "skipped_pairs": {"unlearned": result.skipped_unlearned,
                            "retrained": result.skipped_retrained},
          "_ok": ok, "_scores": scores, "_llr": result.llr, "_used": result.used,
          "_unlearned": result.unlearned_pairs}


def _add_challenge(row: dict[str, Any], reference: Mapping[str, Any], forgotten: np.ndarray,
                   delta: float) -> None:
  """``forgetting_quality``, ``challenge_score`` and ``examples_skipped`` of ``row``
  against the Retrain copies, over the copies finite in both (NaN without any)."""
  if not (row["_ok"] & reference["_ok"]).any():
    row.update(forgetting_quality=float("nan"), challenge_score=float("nan"),
               examples_skipped=None)
    return
  full = lambda r: _expand(r["_scores"], r["_ok"])  # pylint: disable=unnecessary-lambda-assignment
  both = row["_ok"] & reference["_ok"]
  fq, skipped, _ = _forgetting_quality(full(row)[both], full(reference)[both], forgotten[both],
                                       delta)
  row["forgetting_quality"] = fq
  row["examples_skipped"] = skipped
  row["challenge_score"] = privacy.challenge_score(fq, row["RA"], reference["RA"], row["TA"],
                                                   reference["TA"])


def _expand(rows: np.ndarray, ok: np.ndarray) -> np.ndarray:
  out = np.full((ok.shape[0],) + rows.shape[1:], np.nan)
  out[ok] = rows
  return out


@pipeline.locks_workdir
def run(config: ml_collections.ConfigDict, workdir: str,
        command: str | None = None) -> dict[str, Any]:
  """Trains (or restores) the shadows, unlearns, scores; writes ``ulira.json``,
  ``ulira.md`` and ``ulira.png`` to ``workdir``.

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
  setup = (pop, splits.test, apply_fn)
  problem = methods_lib.Problem(apply_fn=apply_fn, init_fn=init_fn, original=None, forget=None,
                                retain=None, num_classes=pop.num_classes, train=recipe)
  delta, seed = float(u.delta), int(config.seed)
  reference = _row("Retrain", retrained.params, trained, forgotten, setup, seed)
  original = _row("Original", originals.params, trained, forgotten, setup, seed)
  rows = [original, reference]
  for row, done in ((original, originals), (reference, retrained)):
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
  out = {
      "command": command or "python -m experiments.ulira " + " ".join(sys.argv[1:]),
      "config": outputs.json_safe(config.to_dict()),
      "N": num, "population": len(pop), "forget_size": int(u.forget_size),
      "methods": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows],
      "devices": f"{jax.device_count()} {jax.default_backend()} device(s)",
      "wall_time_s": time.perf_counter() - start,
  }
  out = outputs.json_safe(out)
  write_report(out, rows, workdir)
  return out


def _markdown(out: Mapping[str, Any]) -> str:
  header = ["method", "U-LiRA acc. (%)", "forgetting quality", "challenge score", "RA", "TA",
            "diverged"]
  table = [[m["name"], outputs.fmt_mean_std(m["ulira_accuracy"]["mean"],
                                            m["ulira_accuracy"]["std"]),
            outputs.fmt(m.get("forgetting_quality"), 3), outputs.fmt(m.get("challenge_score"), 3),
            outputs.fmt(m["RA"]), outputs.fmt(m["TA"]), m["diverged"]] for m in out["methods"]]
  return (f"# U-LiRA and the challenge score\n\n`{out['command']}`\n\n"
          f"{out['N']} shadow copies, population {out['population']}, forget set"
          f" {out['forget_size']} per copy; {out['devices']}, {out['wall_time_s'] / 60:.1f} min."
          " U-LiRA accuracy: mean and std over target copies (50: chance). Forgetting quality"
          " and challenge score against the Retrain copies.\n\n"
          + outputs.markdown_table(header, table) + "\n")


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
      ax.set_title(f"{row['name']}: every copy diverged", fontsize=9)
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
