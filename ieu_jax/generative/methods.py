"""Unlearning a class from a conditional diffusion model: FT, GA-plain, SalUn, SalUn-frozen, IEU.

Every method has the classifier methods' shape (:mod:`ieu_jax.methods`): a frozen
dataclass of hyperparameters and ``unlearn(problem, hparams, key, *, name) ->
params``, registered in :data:`METHODS` (:func:`hparams` builds a method's
hyperparameters from a config and refuses unknown keys). A step is an objective
plus an optax transformation, turned into a jitted step by :mod:`ieu_jax.training`
(descent) or :func:`ieu_jax.make_unlearn_step` (IEU's ascent and retain terms).

IEU and GA-plain (IEU's ascent alone) use the classifier's IEU hyperparameters
(:class:`ieu_jax.methods.ieu.IEUHParams`): one class, one set of defaults, and
``max_grad_norm`` with its one meaning (each gradient clipped on its own before
the transformation).

SalUn on a DDPM, as the SalUn authors' DDPM code does it (read in its public
repository, ``DDPM/runners/diffusion.py``, methods ``generate_mask`` and
``saliency_unlearn`` with ``--method rl``; ``DDPM/functions/losses.py``;
``DDPM/configs/cifar10_saliency_unlearn.yml``; the DDPM README's commands):

* **Forget term.** A forget batch is noised once, ``x_t = sqrt(ab_t) x_0 +
  sqrt(1 - ab_t) e``, with antithetic timesteps (``n//2 + 1`` uniform draws ``t``,
  then ``T-1-t``, the first ``n`` kept; :func:`antithetic_timesteps`). The model
  being unlearned is called twice on the same ``x_t, t``: with the forget label
  (differentiated) and with the fixed pseudo-label ``(c_f + 1) % 10``, whose output
  is detached. The loss is the mean squared error over all elements between the
  two (``torch.nn.MSELoss``). The target is the model's *own* current output, not
  the original's. Both calls run in the model's train mode, so each drops its
  label to the null class with the training probability (0.1), independently;
  :class:`SalUnHParams` ``forget_label_drop`` keeps that (default) or turns it off.
* **Retain term.** The training loss on a retain batch (antithetic timesteps,
  label dropout 0.1), summed over pixels and averaged over the batch, weighted by
  ``--alpha`` (the README's command: ``1e-3``; the argument's default: 1). The two
  terms are on different scales (the forget term is a per-element mean), and
  ``retain_scale`` here is that ``alpha`` with the same units.
* **Step.** Adam (lr ``1e-4``, betas ``(0.9, 0.999)``, eps ``1e-8``, no weight
  decay), the gradient clipped to global norm 1 first, then multiplied by the
  mask, then Adam. 1000 steps of batch 128 (forget and retain loaders cycled);
  here, ``epochs`` passes over the forget set, retain batches drawn with
  replacement.
* **Mask.** At the original weights (eval mode: no dropout), for every batch of
  the forget set (one pass, batch 128): the training loss against the true noise
  ``e`` of the *guided* prediction ``(1 + w) eps(x_t, c_f) - w eps(x_t, null)``,
  with ``w`` the ``--cond_scale`` argument (default 2, not passed by the README's
  command), summed over pixels and averaged over the batch; each batch's
  gradient is clipped to global norm 1 (the config's ``grad_clip``) and the
  clipped gradients are summed. The mask keeps the top half (a hard-coded 0.5;
  the ``--mask_ratio`` argument is not read) of all weights by ``|summed
  gradient|``, ranked globally, exactly ``int(0.5 * total)`` of them.

What differs here, on purpose or by necessity: the pseudo-label rule is the next
*retained* class in cyclic label order (:func:`pseudo_label`), which is
``(c_f + 1) % 10`` when all ten classes are present and a real class of the
subset otherwise; the mask keeps ``round(fraction * total)`` weights (half up)
rather than truncating, ties broken by position
(:func:`ieu_jax.methods.salun.saliency_mask`); the mask's forget batches are the
forget set in order, not shuffled, and ``mask_draws`` may draw several timesteps
and noises per example (the reference: one); the small UNet has no dropout, so
train and eval mode are the same network. Not verified: the SalUn paper's own
DDPM settings (only the code and its README were read), and whether the results
it reports were run with exactly this code's defaults (e.g. ``cond_scale`` 2 in
the mask).

``SalUn-frozen`` is the method this package called SalUn before (kept because
every generative table in ``docs/generative.md`` was produced with it, and because
its target differs in kind): the target is the *original* model's output for a
random retained label, the mask comes from one batch of up to 256 forget images
with one draw of uniform timesteps and noise, and the retain term is the
per-element mean training loss.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax

from ieu_jax import _steps
from ieu_jax import data as data_lib
from ieu_jax import training
from ieu_jax.generative import diffusion
from ieu_jax.hparams import HParams
from ieu_jax.methods import base
from ieu_jax.methods import ieu as ieu_method
from ieu_jax.methods import salun as salun_method

__all__ = ["FTHParams", "GenProblem", "METHODS", "SalUnFrozenHParams", "SalUnHParams",
           "antithetic_timesteps", "forget_saliency", "get_method", "hparams", "pseudo_label",
           "saliency_mask", "self_match_loss"]


@dataclasses.dataclass(frozen=True)
class GenProblem:
  """Everything a generative unlearning method may use.

  Attributes:
    eps_fn: ``eps_fn(params, x_t, t, labels) -> eps``.
    schedule: the training noise schedule.
    original: the original generator's params.
    forget: the forget-class images (in ``[-1, 1]``) with their label.
    retain: the other training images.
    forget_class: the class to forget.
    retained_classes: the classes to keep (those present in ``retain``).
    null_label: the "no class" label of classifier-free guidance.
    label_drop: the label dropout of training.
  """

  eps_fn: diffusion.EpsFn
  schedule: diffusion.Schedule
  original: Any
  forget: data_lib.Dataset
  retain: data_lib.Dataset
  forget_class: int
  retained_classes: tuple[int, ...]
  null_label: int
  label_drop: float

  def forget_loss(self, params, x, y, key):
    """The diffusion loss of the forget class, conditioned on its label."""
    return diffusion.diffusion_loss(self.eps_fn, params, self.schedule, x, y, key)

  def retain_loss(self, params, x, y, key):
    """The training loss (with label dropout) on retain images."""
    return diffusion.diffusion_loss(
        self.eps_fn, params, self.schedule, x, y, key,
        label_drop=self.label_drop, null_label=self.null_label)

  def forget_objective(self, params, batch, key):
    """:meth:`forget_loss` as an objective ``(params, (x, y), key)``."""
    return self.forget_loss(params, *batch, key)

  def retain_objective(self, params, batch, key):
    """:meth:`retain_loss` as an objective ``(params, (x, y), key)``."""
    return self.retain_loss(params, *batch, key)


@dataclasses.dataclass(frozen=True, kw_only=True)
class FTHParams(HParams):
  """FT on a diffusion model: Adam on the retain set's training loss.

  Attributes:
    epochs: passes over the retain set.
    learning_rate: Adam's step size.
    batch_size: images per step.
  """

  epochs: int
  learning_rate: float
  batch_size: int = 64


@dataclasses.dataclass(frozen=True, kw_only=True)
class SalUnHParams(HParams):
  """SalUn as the reference DDPM code does it (see the module docstring, :func:`_salun`).

  Attributes:
    epochs: passes over the forget set.
    learning_rate: Adam's step size (the reference: 1e-4).
    retain_scale: the reference's ``alpha``, the weight of the retain set's training
      loss summed over pixels (the reference's command: 1e-3; 0: no retain term).
    mask_fraction: share of weights the saliency mask keeps (the reference: 0.5;
      1: no mask).
    batch_size: images per forget batch, and per retain batch (the reference: 128).
    max_grad_norm: the step's gradient is clipped to this global norm before the
      mask, and so is each mask batch's gradient (the reference: 1; 0: none).
    pseudo_label: the label whose detached output the forget images are matched
      to; None: :func:`pseudo_label`'s rule. Must be a retained class.
    forget_label_drop: both calls of the forget term drop their label with the
      training probability, independently, as the reference's train-mode calls do.
    mask_batch_size: forget images per saliency batch (the reference: 128).
    mask_draws: timestep/noise draws per forget image for the mask (the reference: 1).
    mask_guidance: the guidance scale ``w`` of the mask's prediction (the
      reference: 2; 0: the plain conditional prediction).
  """

  epochs: int
  learning_rate: float
  retain_scale: float = 1e-3
  mask_fraction: float = 0.5
  batch_size: int = 128
  max_grad_norm: float = 1.0
  pseudo_label: int | None = None
  forget_label_drop: bool = True
  mask_batch_size: int = 128
  mask_draws: int = 1
  mask_guidance: float = 2.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class SalUnFrozenHParams(HParams):
  """SalUn-frozen, this package's former SalUn-style method (see :func:`_salun_frozen`).

  Attributes:
    epochs: passes over the forget set.
    learning_rate: Adam's step size.
    retain_scale: the weight of the retain set's training loss (0: none).
    mask_fraction: share of weights the saliency mask keeps (1: no mask).
    batch_size: images per forget batch, and per retain batch.
  """

  epochs: int
  learning_rate: float
  retain_scale: float = 1.0
  mask_fraction: float = 0.5
  batch_size: int = 64


def _fit(problem, hp, tx, loss_and_update, key, data, name, aux=()):
  step = training.make_indexed_step(loss_and_update)
  params, _ = training.fit(
      problem.original, tx.init(problem.original), step, (data.x, data.y),
      epochs=hp.epochs, batch_size=hp.batch_size, key=key, name=name, aux=aux)
  return params


def _ieu(problem: GenProblem, hp: ieu_method.IEUHParams, key, *, name: str = "IEU"):
  """IEU (and GA-plain, its ascent-only setting) on the diffusion loss of the forget class.

  Each step's key splits into the forget loss's key and the retain term's; the
  latter draws the retain batch and the loss's noise.
  """
  noise_key, data_key = jax.random.split(key)
  tx = ieu_method.make_transform(hp, noise_key)
  step = _steps.make_unlearn_step(
      None, tx, objective=problem.forget_objective, retain_objective=problem.retain_objective,
      max_grad_norm=hp.max_grad_norm or None, jit=False)

  def loss_and_update(params, opt_state, batch, step_key, retain_x, retain_y):
    f_key, r_key = jax.random.split(step_key)
    retain_batch, retain_key = None, None
    if hp.retain_scale:
      batch_key, retain_key = jax.random.split(r_key)
      retain_batch = training.sample_batch(batch_key, (retain_x, retain_y), hp.batch_size)
    params, opt_state, metrics = step(params, opt_state, batch, retain_batch,
                                      keys=(f_key, retain_key))
    return params, opt_state, metrics.forget_loss

  return _fit(problem, hp, tx, loss_and_update, data_key, problem.forget, name,
              aux=(problem.retain.x, problem.retain.y))


def _ft(problem: GenProblem, hp: FTHParams, key, *, name: str = "FT"):
  """FT: keep training on the retain set only (Adam), hoping the class fades."""
  tx = optax.adam(hp.learning_rate)
  return _fit(problem, hp, tx, training.descent_on(problem.retain_objective, tx), key,
              problem.retain, name)


def saliency_mask(problem: GenProblem, key, fraction: float, batch_size: int = 256):
  """SalUn-frozen's weight saliency: 1 on the top ``fraction`` of ``|grad forget loss|``.

  The gradient is taken at the original weights on the first ``batch_size`` forget
  images (one draw of uniform timesteps and noise from ``key``); the threshold is
  the ``1 - fraction`` quantile, over all weights together. :class:`SalUnHParams`'s
  mask is :func:`forget_saliency` instead.
  """

  @jax.jit  # one program; op by op, the UNet's backward pass compiles each op
  def mask(params, x, y, key):
    grads = jax.grad(problem.forget_loss)(params, x, y, key)
    flat = jnp.concatenate([jnp.abs(g).ravel() for g in jax.tree.leaves(grads)])
    threshold = jnp.quantile(flat, 1.0 - fraction)
    return jax.tree.map(lambda g: (jnp.abs(g) >= threshold).astype(g.dtype), grads)

  return mask(problem.original, problem.forget.x[:batch_size], problem.forget.y[:batch_size], key)


def _salun_frozen(problem: GenProblem, hp: SalUnFrozenHParams, key, *,
                  name: str = "SalUn-frozen"):
  """SalUn-frozen: on forget images, condition on the forget label but match the
  original model's output for another (random retained) label; plus the
  training loss on retain batches; gradients masked by weight saliency
  (:func:`ieu_jax.methods.salun.keep_masked` before Adam)."""
  mask_key, data_key = jax.random.split(key)
  tx = optax.adam(hp.learning_rate)
  if hp.mask_fraction < 1.0:
    tx = optax.chain(salun_method.keep_masked(saliency_mask(problem, mask_key, hp.mask_fraction)),
                     tx)
  others = jnp.asarray(problem.retained_classes, jnp.int32)

  def objective(params, batch, step_key, retain_x, retain_y, original):
    x0, y = batch
    n_key, c_key, r_key = jax.random.split(step_key, 3)
    x_t, t, _ = diffusion.noisy_batch(problem.schedule, x0, n_key)
    other = others[jax.random.randint(c_key, y.shape, 0, others.shape[0])]
    target = jax.lax.stop_gradient(problem.eps_fn(original, x_t, t, other))
    forget = diffusion.eps_loss(problem.eps_fn, params, x_t, t, y, target)
    if not hp.retain_scale:
      return forget
    rx, ry = training.sample_batch(r_key, (retain_x, retain_y), hp.batch_size)
    return forget + hp.retain_scale * problem.retain_loss(params, rx, ry,
                                                          jax.random.fold_in(r_key, 1))

  return _fit(problem, hp, tx, training.descent_on(objective, tx), data_key, problem.forget,
              name, aux=(problem.retain.x, problem.retain.y, problem.original))


def antithetic_timesteps(key, n: int, num_steps: int) -> jax.Array:
  """``n`` timesteps drawn as the reference does: ``m = n//2 + 1`` uniform ``t`` in
  ``[0, T)``, then ``T-1-t``; the first ``n`` of ``[t, T-1-t]``."""
  half = jax.random.randint(key, (n // 2 + 1,), 0, num_steps)
  return jnp.concatenate([half, num_steps - 1 - half])[:n]


def _antithetic_noisy(schedule: diffusion.Schedule, x0, key):
  """``(x_t, t, noise)``: antithetic timesteps from ``split(key)[0]``, noise from ``[1]``."""
  t_key, n_key = jax.random.split(key)
  t = antithetic_timesteps(t_key, x0.shape[0], schedule.num_steps)
  noise = jax.random.normal(n_key, x0.shape, x0.dtype)
  return diffusion.q_sample(schedule, x0, t, noise), t, noise


def pseudo_label(forget_class: int, retained_classes, override: int | None = None) -> int:
  """SalUn's fixed pseudo-label: the next retained class after ``forget_class``.

  The reference hard-codes ``(c_f + 1) % 10``. Here the label must be a class the
  generator keeps, so the rule is the smallest retained class above ``c_f``, or,
  if none is, the smallest retained class (cyclic order). With all ten classes
  this is ``(c_f + 1) % 10``; with a subset it skips the classes left out (e.g.
  classes ``(0, 1, 7, 8)``, ``c_f = 1``: 7).

  Args:
    forget_class: the class being forgotten.
    retained_classes: the classes the generator keeps.
    override: a label to use instead of the rule; it must be retained.

  Raises:
    ValueError: ``override`` is not a retained class, or no class is retained.
  """
  retained = sorted({int(c) for c in retained_classes} - {int(forget_class)})
  if not retained:
    raise ValueError("SalUn's pseudo-label needs at least one retained class.")
  if override is not None:
    if int(override) not in retained:
      raise ValueError(f"pseudo_label={override} is not a retained class {tuple(retained)}.")
    return int(override)
  above = [c for c in retained if c > forget_class]
  return above[0] if above else retained[0]


def self_match_loss(problem: GenProblem, params, x0, labels, pseudo: int, key, *,
                    label_drop: float = 0.0) -> jax.Array:
  """SalUn's forget term: the model's output for ``labels`` against its own detached
  output for ``pseudo``, on the same ``x_t, t``; mean squared error over all elements.

  ``key`` splits into three: ``x_t``'s draw (:func:`antithetic_timesteps` and the
  noise), the label dropout of the differentiated call, and that of the detached
  call (each with probability ``label_drop``; 0 drops nothing).
  """
  n_key, d_key, p_key = jax.random.split(key, 3)
  x_t, t, _ = _antithetic_noisy(problem.schedule, x0, n_key)
  cond = labels
  other = jnp.full_like(labels, pseudo)
  if label_drop:
    cond = diffusion.drop_labels(d_key, cond, label_drop, problem.null_label)
    other = diffusion.drop_labels(p_key, other, label_drop, problem.null_label)
  target = jax.lax.stop_gradient(problem.eps_fn(params, x_t, t, other))
  return diffusion.eps_loss(problem.eps_fn, params, x_t, t, cond, target)


def _pixel_sum_loss(problem: GenProblem, params, x0, labels, key) -> jax.Array:
  """The reference's training loss: antithetic timesteps, label dropout, the squared
  error summed over each image's elements and averaged over the batch. ``key``
  splits into ``x_t``'s draw and the label dropout's."""
  n_key, d_key = jax.random.split(key)
  x_t, t, noise = _antithetic_noisy(problem.schedule, x0, n_key)
  labels = diffusion.drop_labels(d_key, labels, problem.label_drop, problem.null_label)
  err = jnp.square(problem.eps_fn(params, x_t, t, labels) - noise)
  return jnp.mean(jnp.sum(err.reshape(err.shape[0], -1), axis=1))


def forget_saliency(problem: GenProblem, params, key, *, batch_size: int = 128, draws: int = 1,
                    guidance: float = 2.0, max_grad_norm: float = 0.0):
  """SalUn's saliency gradient over the whole forget set, batch by batch.

  The forget set is taken in order in batches of ``batch_size`` (the last one may
  be short). Batch ``b`` repeats each of its images ``draws`` times (image by
  image: ``jnp.repeat``) and draws ``x_t`` from ``fold_in(key, b)`` as
  :func:`self_match_loss` does (antithetic timesteps over the repeated batch). Its
  loss is the mean over those rows of ``sum((noise - eps_w)**2)`` over each
  image's elements, ``eps_w`` the prediction guided with scale ``guidance``
  (:func:`diffusion.guided_eps`; 0: the conditional prediction, no extra call).
  Each batch's gradient is clipped to global norm ``max_grad_norm`` (0: not
  clipped), and the result is their sum. Without clipping it is the gradient of
  the sum of the batch losses.

  Returns:
    A pytree of ``params``' structure.
  """
  x, y = problem.forget.x, problem.forget.y
  n = x.shape[0]
  nb = -(-n // batch_size)
  pad = nb * batch_size - n
  xb = jnp.concatenate([x, jnp.zeros((pad,) + x.shape[1:], x.dtype)])
  yb = jnp.concatenate([y, jnp.zeros((pad,), y.dtype)])
  wb = jnp.concatenate([jnp.ones((n,), x.dtype), jnp.zeros((pad,), x.dtype)])
  xb = xb.reshape((nb, batch_size) + x.shape[1:])
  yb, wb = yb.reshape(nb, batch_size), wb.reshape(nb, batch_size)

  def batch_loss(p, xs, ys, ws, k):
    xs, ys, ws = (jnp.repeat(a, draws, axis=0) for a in (xs, ys, ws))
    x_t, t, noise = _antithetic_noisy(problem.schedule, xs, k)
    if guidance:
      eps = diffusion.guided_eps(problem.eps_fn, p, x_t, t, ys, guidance, problem.null_label)
    else:
      eps = problem.eps_fn(p, x_t, t, ys)
    per = jnp.sum(jnp.square(noise - eps).reshape(xs.shape[0], -1), axis=1)
    return jnp.sum(ws * per) / jnp.sum(ws)

  @jax.jit
  def accumulate(p, xb, yb, wb, key):
    def body(acc, inputs):
      b, xs, ys, ws = inputs
      g = jax.grad(batch_loss)(p, xs, ys, ws, jax.random.fold_in(key, b))
      if max_grad_norm:
        norm = optax.tree.norm(g)
        g = jax.tree.map(lambda v: v * jnp.minimum(1.0, max_grad_norm / norm), g)
      return jax.tree.map(jnp.add, acc, g), None

    zero = jax.tree.map(jnp.zeros_like, p)
    total, _ = jax.lax.scan(body, zero, (jnp.arange(nb), xb, yb, wb))
    return total

  return accumulate(params, xb, yb, wb, key)


def _salun(problem: GenProblem, hp: SalUnHParams, key, *, name: str = "SalUn"):
  """SalUn as the reference DDPM code does it (module docstring).

  ``key`` splits into the mask's key and the passes'; each step's key into the
  forget term's (:func:`self_match_loss`) and the retain term's, which splits
  again into the retain batch's draw and its loss's.
  """
  mask_key, data_key = jax.random.split(key)
  pseudo = pseudo_label(problem.forget_class, problem.retained_classes, hp.pseudo_label)
  parts = []
  if hp.max_grad_norm:
    parts.append(optax.clip_by_global_norm(hp.max_grad_norm))
  if hp.mask_fraction < 1.0:
    saliency = forget_saliency(problem, problem.original, mask_key, batch_size=hp.mask_batch_size,
                               draws=hp.mask_draws, guidance=hp.mask_guidance,
                               max_grad_norm=hp.max_grad_norm)
    parts.append(salun_method.keep_masked(salun_method.saliency_mask(saliency, hp.mask_fraction)))
  tx = optax.chain(*parts, optax.adam(hp.learning_rate))
  label_drop = problem.label_drop if hp.forget_label_drop else 0.0

  def objective(params, batch, step_key, retain_x, retain_y):
    f_key, r_key = jax.random.split(step_key)
    loss = self_match_loss(problem, params, *batch, pseudo, f_key, label_drop=label_drop)
    if not hp.retain_scale:
      return loss
    b_key, l_key = jax.random.split(r_key)
    rx, ry = training.sample_batch(b_key, (retain_x, retain_y), hp.batch_size)
    return loss + hp.retain_scale * _pixel_sum_loss(problem, params, rx, ry, l_key)

  return _fit(problem, hp, tx, training.descent_on(objective, tx), data_key, problem.forget,
              name, aux=(problem.retain.x, problem.retain.y))


METHODS: dict[str, base.Method] = {
    "FT": base.Method(_ft, FTHParams),
    # GA-plain is IEU's ascent alone (plain SGD): configured with no decay, noise or retain
    # term. The classifier's GA baseline (momentum, weight decay) has no generative twin here.
    "GA-plain": base.Method(_ieu, ieu_method.IEUHParams),
    "SalUn": base.Method(_salun, SalUnHParams),
    # The former SalUn-style method: the original's output for a random retained label as
    # the target, a one-batch mask (see the module docstring).
    "SalUn-frozen": base.Method(_salun_frozen, SalUnFrozenHParams),
    "IEU": base.Method(_ieu, ieu_method.IEUHParams),
}
"""Generative unlearning methods; Retrain is the cached reference, not listed."""


def get_method(name: str) -> base.Method:
  """The generative method called ``name``; the error names the known ones."""
  if name not in METHODS:
    raise ValueError(f"unknown generative method {name!r}: known are {sorted(METHODS)}.")
  return METHODS[name]


def hparams(name: str, values: Any = None) -> HParams:
  """Method ``name``'s hyperparameters from ``values``; unknown keys are refused."""
  return get_method(name).hparams_class.from_config(values, method=name)
