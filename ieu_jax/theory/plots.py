"""The PNG plots of :func:`ieu_jax.theory.check.run_theory_check`.

One figure per theorem, one panel per setting, three panels to a row; each
figure is written through :func:`ieu_jax.outputs.save_figure` (atomic, process
0 only). A curve is a tuple ``(title, *data, conditions_hold)``; ``data`` is
what the theorem's panel function draws.
"""

from __future__ import annotations

import math
import os
from typing import Callable, Sequence

import numpy as np

from ieu_jax import outputs

__all__ = [
    "draw_contraction",
    "draw_noisy_sq_distance",
    "draw_relearn_steps",
    "plot_panels",
    "write_plots",
]


def plot_panels(curves: Sequence[tuple], path: str, *, title: str,
                draw: Callable[..., None], xlabel: str,
                ylabel: str | None = None) -> bool:
  """One panel per curve, titled ``[conditions fail]`` where they fail.

  Args:
    curves: tuples ``(title, *data, conditions_hold)``.
    path: the PNG to write.
    title: the figure's title.
    draw: ``draw(ax, *data)`` draws one curve's panel, with legend labels.
    xlabel: every panel's x label.
    ylabel: every panel's y label, if any.

  Returns:
    Whether this process wrote the file (process 0 only).
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  cols = min(3, len(curves))
  rows = int(math.ceil(len(curves) / cols))
  fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.4 * rows),
                           squeeze=False)
  for ax, (name, *data, hold) in zip(axes.flat, curves):
    draw(ax, *data)
    ax.set_title(("" if hold else "[conditions fail] ") + name, fontsize=8)
    ax.set_xlabel(xlabel)
    if ylabel is not None:
      ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
  for ax in list(axes.flat)[len(curves):]:
    ax.axis("off")
  fig.suptitle(title)
  fig.tight_layout()
  return outputs.save_figure(fig, path, dpi=80)


def draw_contraction(ax, t, observed, bound) -> None:
  """Theorem 1: the distance to the fixed point and ``rho**t`` times its start.

  Without a fixed point (``bound`` is None) ``observed`` is the distance from
  the start.
  """
  ax.semilogy(t, np.maximum(observed, 1e-300), label="||theta_t - theta_bar||"
              if bound is not None else "||theta_t - theta_0||")
  if bound is not None:
    ax.semilogy(t, bound, "--", label="rho^t ||theta_0 - theta_bar||")


def draw_noisy_sq_distance(ax, t, mean, stderr, exact, bound, spec, *,
                           z_threshold: float) -> None:
  """Theorem 2: the Monte-Carlo mean against the bound.

  The mean has a band of ``z_threshold`` standard errors; the exact expectation
  is drawn where known (not None), both forms of the bound where the conditions
  hold (``bound`` not None).
  """
  ax.semilogy(t, mean, label="Monte-Carlo mean")
  ax.fill_between(t, np.maximum(mean - z_threshold * stderr, 1e-300),
                  mean + z_threshold * stderr, alpha=0.3)
  if exact is not None:
    ax.semilogy(t, exact, ":", label="exact expectation")
  if bound is not None:
    ax.semilogy(t, bound, "--", label="bound (finite horizon)")
    ax.semilogy(t, spec, "-.", label="bound (SPEC form)")


def draw_relearn_steps(ax, eps, observed, lower, upper, d0) -> None:
  """Theorem 3: observed relearning steps (None: censored) and their bounds."""
  x = np.log(d0 / eps)
  ys = [o if o is not None else np.nan for o in observed]
  ax.plot(x, ys, "o-", label="observed T")
  if lower is not None:
    ax.step(x, lower, "--", where="mid", label="lower bound")
    ax.step(x, upper, "--", where="mid", label="upper bound")


def write_plots(workdir: str, curves1: Sequence[tuple],
                curves2: Sequence[tuple], curves3: Sequence[tuple], *,
                z_threshold: float) -> list[str]:
  """Writes ``theorem{1,2,3}.png`` to ``workdir``.

  Args:
    workdir: the output directory.
    curves1: Theorem 1's curves ``(title, t, observed, bound, hold)``.
    curves2: Theorem 2's curves
      ``(title, t, mean, stderr, exact, bound, spec_bound, hold)``.
    curves3: Theorem 3's curves ``(title, eps, observed, lower, upper, d0,
      hold)``.
    z_threshold: the width, in standard errors, of Theorem 2's band.

  Returns:
    The file names, in order.
  """
  figures = (
      ("theorem1.png", curves1, dict(
          title="Theorem 1: noiseless IEU contracts at rate rho",
          draw=draw_contraction, xlabel="step")),
      ("theorem2.png", curves2, dict(
          title="Theorem 2: E||theta_t - theta_bar||^2 with weight noise",
          draw=lambda ax, *data: draw_noisy_sq_distance(
              ax, *data, z_threshold=z_threshold),
          xlabel="step")),
      ("theorem3.png", curves3, dict(
          title="Theorem 3: relearning steps vs weight-space distance",
          draw=draw_relearn_steps,
          xlabel="log(||theta_u - theta_F*|| / eps)", ylabel="steps")),
  )
  for name, curves, spec in figures:
    plot_panels(curves, os.path.join(workdir, name), **spec)
  return [name for name, _, _ in figures]
