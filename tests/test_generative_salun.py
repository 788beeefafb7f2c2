"""SalUn on a diffusion model, as the reference DDPM code does it, on tiny stand-ins.

Each value is checked against an independent recomputation: a hand formula, a
loss written out in one go (float64), or a count.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ieu_jax import data as data_lib
from ieu_jax.generative import diffusion
from ieu_jax.generative import methods


def _problem(eps_fn, params, dtype=jnp.float32, n_forget=10):
  """Two-dimensional "images" of classes 0, 1, 2; class 1 is forgotten; label 3 is null."""
  x = jax.random.normal(jax.random.key(0), (20 + n_forget, 2), dtype)
  y = jnp.asarray(np.r_[np.zeros(10), np.ones(n_forget), 2 * np.ones(10)], jnp.int32)
  ds = data_lib.Dataset(x=x, y=y, num_classes=3)
  forget = ds.take(np.arange(10, 10 + n_forget))
  retain = ds.take(np.r_[0:10, 10 + n_forget:20 + n_forget])
  return methods.GenProblem(
      eps_fn=eps_fn, schedule=diffusion.linear_schedule(100), original=params, forget=forget,
      retain=retain, forget_class=1, retained_classes=(0, 2), null_label=3, label_drop=0.1)


def _linear(dtype=jnp.float32):
  """eps = x_t W + E[label], with E's rows set by hand."""
  eps_fn = lambda p, x, t, y: x @ p["w"] + p["e"][y]
  params = {"w": jnp.asarray([[0.5, 0.1], [-0.2, 0.3]], dtype),
            "e": jnp.asarray([[0.0, 0.0], [1.0, -2.0], [0.5, 0.5], [0.2, 0.1]], dtype)}
  return eps_fn, params


def _mlp():
  """A small non-linear stand-in whose weights all get gradients."""
  def eps_fn(p, x, t, y):
    h = jnp.tanh(x @ p["w1"] + 0.01 * t[:, None])
    return h @ p["w2"] + p["e"][y]
  k1, k2, k3 = jax.random.split(jax.random.key(5), 3)
  params = {"w1": jax.random.normal(k1, (2, 8)), "w2": jax.random.normal(k2, (8, 2)) / 3,
            "e": jax.random.normal(k3, (4, 2))}
  return eps_fn, params


# ----------------------------------------------------------------------------
# The pseudo-label.


def test_pseudo_label_is_c_plus_one_mod_ten_with_all_classes():
  for c in range(10):
    retained = [k for k in range(10) if k != c]
    assert methods.pseudo_label(c, retained) == (c + 1) % 10


def test_pseudo_label_skips_classes_outside_the_subset():
  # The `:small` config's classes: (1 + 1) % 10 = 2 is not trained, the next kept is 7.
  assert methods.pseudo_label(1, (0, 7, 8)) == 7
  assert methods.pseudo_label(8, (0, 1, 7)) == 0  # wraps around
  assert methods.pseudo_label(0, (1, 7, 8)) == 1
  assert methods.pseudo_label(1, (0, 7, 8), override=8) == 8
  with pytest.raises(ValueError, match="not a retained class"):
    methods.pseudo_label(1, (0, 7, 8), override=2)
  with pytest.raises(ValueError, match="not a retained class"):
    methods.pseudo_label(1, (0, 7, 8), override=1)  # the forget class itself
  with pytest.raises(ValueError, match="at least one retained class"):
    methods.pseudo_label(1, (1,))


def test_salun_refuses_a_pseudo_label_the_generator_does_not_keep():
  problem = _problem(*_linear())
  hp = methods.hparams("SalUn", dict(epochs=1, learning_rate=1e-3, pseudo_label=1))
  with pytest.raises(ValueError, match="not a retained class"):
    methods.get_method("SalUn").unlearn(problem, hp, jax.random.key(0))


def test_antithetic_timesteps_pair_t_with_T_minus_one_minus_t():
  t = np.asarray(methods.antithetic_timesteps(jax.random.key(3), 7, 100))
  assert t.shape == (7,) and t.min() >= 0 and t.max() < 100
  np.testing.assert_array_equal(t[4:], 99 - t[:3])  # m = 7 // 2 + 1 = 4 draws


# ----------------------------------------------------------------------------
# The forget term.


def test_forget_term_at_the_start_is_the_hand_computed_value():
  """Linear stand-in, no label dropout: eps(c_f) - eps(pseudo) = E[1] - E[2] for every
  x_t, so the loss is mean((1 - 0.5)^2, (-2 - 0.5)^2) and its gradient is
  2 (E[1] - E[2]) / 2 on E[1], nothing on E[2] (detached)."""
  eps_fn, params = _linear()
  problem = _problem(eps_fn, params)
  x, y = problem.forget.x, problem.forget.y
  loss_fn = lambda p: methods.self_match_loss(problem, p, x, y, 2, jax.random.key(1))
  assert float(loss_fn(params)) == pytest.approx(((1 - 0.5) ** 2 + (-2 - 0.5) ** 2) / 2,
                                                 rel=1e-6)
  grads = jax.grad(loss_fn)(params)
  np.testing.assert_allclose(grads["e"][1], [1.0 - 0.5, -2.0 - 0.5], rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(grads["e"])[[0, 2, 3]], 0.0)


@pytest.mark.parametrize("label_drop", [0.0, 0.5])
def test_forget_term_gradient_flows_only_through_the_forget_label_branch(label_drop):
  """Against the loss written with two parameter copies, one per call, in float64:
  the method's gradient is the first copy's alone; differentiating both calls
  differs (the second copy's gradient is not zero)."""
  with jax.enable_x64(True):
    eps_fn, params = _mlp()
    params = jax.tree.map(lambda v: jnp.asarray(v, jnp.float64), params)
    problem = _problem(eps_fn, params, jnp.float64)
    x, y = problem.forget.x, problem.forget.y
    key = jax.random.key(2)

    def two_copies(p_cond, p_pseudo):  # the documented draws, written out
      n_key, d_key, p_key = jax.random.split(key, 3)
      t_key, e_key = jax.random.split(n_key)
      m = x.shape[0] // 2 + 1
      half = jax.random.randint(t_key, (m,), 0, 100)
      t = jnp.concatenate([half, 99 - half])[:x.shape[0]]
      noise = jax.random.normal(e_key, x.shape, x.dtype)
      ab = problem.schedule.alpha_bars[t][:, None].astype(x.dtype)
      x_t = jnp.sqrt(ab) * x + jnp.sqrt(1 - ab) * noise
      cond = jnp.where(jax.random.bernoulli(d_key, label_drop, y.shape), 3, y)
      other = jnp.where(jax.random.bernoulli(p_key, label_drop, y.shape), 3, jnp.full_like(y, 2))
      return jnp.mean((eps_fn(p_cond, x_t, t, cond) - eps_fn(p_pseudo, x_t, t, other)) ** 2)

    ours = lambda p: methods.self_match_loss(problem, p, x, y, 2, key, label_drop=label_drop)
    assert float(ours(params)) == pytest.approx(float(two_copies(params, params)), rel=1e-12)
    g = jax.grad(ours)(params)
    g_cond, g_pseudo = jax.grad(two_copies, argnums=(0, 1))(params, params)
    g_both = jax.grad(lambda p: two_copies(p, p))(params)
    for name in params:
      np.testing.assert_allclose(g[name], g_cond[name], rtol=1e-10, atol=1e-14)
      np.testing.assert_allclose(g_both[name], g_cond[name] + g_pseudo[name], rtol=1e-10,
                                 atol=1e-14)
    assert float(jnp.abs(g_pseudo["w1"]).max()) > 1e-3  # both branches would differ


# ----------------------------------------------------------------------------
# The mask.


def _one_go(problem, params, key, batch_size, draws, guidance):
  """The per-batch losses' draws, recomputed from the documented keys; returns the
  list of (rows' x_t, t, noise, labels) of the real images of each batch."""
  x, y = problem.forget.x, problem.forget.y
  n = x.shape[0]
  pieces = []
  for b in range(-(-n // batch_size)):
    xs, ys = x[b * batch_size:(b + 1) * batch_size], y[b * batch_size:(b + 1) * batch_size]
    real = xs.shape[0] * draws
    pad = batch_size - xs.shape[0]
    xs = jnp.concatenate([xs, jnp.zeros((pad, 2), x.dtype)])
    ys = jnp.concatenate([ys, jnp.zeros((pad,), y.dtype)])
    xs, ys = jnp.repeat(xs, draws, axis=0), jnp.repeat(ys, draws, axis=0)
    t_key, e_key = jax.random.split(jax.random.fold_in(key, b))
    rows = batch_size * draws
    half = jax.random.randint(t_key, (rows // 2 + 1,), 0, 100)
    t = jnp.concatenate([half, 99 - half])[:rows]
    noise = jax.random.normal(e_key, xs.shape, xs.dtype)
    ab = problem.schedule.alpha_bars[t][:, None].astype(x.dtype)
    x_t = jnp.sqrt(ab) * xs + jnp.sqrt(1 - ab) * noise
    pieces.append((x_t[:real], t[:real], noise[:real], ys[:real]))
  return pieces


def _batch_loss(eps_fn, p, piece, guidance):
  x_t, t, noise, ys = piece
  eps_w = (1 + guidance) * eps_fn(p, x_t, t, ys) - guidance * eps_fn(p, x_t, t, jnp.full_like(ys, 3))
  return jnp.mean(jnp.sum((noise - eps_w) ** 2, axis=1))


@pytest.mark.parametrize("batch_size,draws,guidance", [(4, 2, 2.0), (10, 1, 0.0), (3, 3, 1.0)])
def test_mask_gradient_is_the_gradient_of_the_summed_batch_losses(batch_size, draws, guidance):
  with jax.enable_x64(True):
    eps_fn, params = _mlp()
    params = jax.tree.map(lambda v: jnp.asarray(v, jnp.float64), params)
    problem = _problem(eps_fn, params, jnp.float64)
    key = jax.random.key(4)
    got = methods.forget_saliency(problem, params, key, batch_size=batch_size, draws=draws,
                                  guidance=guidance)
    pieces = _one_go(problem, params, key, batch_size, draws, guidance)
    total = lambda p: sum(_batch_loss(eps_fn, p, piece, guidance) for piece in pieces)
    want = jax.grad(total)(params)
    for name in params:
      np.testing.assert_allclose(got[name], want[name], rtol=1e-10, atol=1e-12)


def test_mask_gradient_clips_each_batch_before_the_sum():
  with jax.enable_x64(True):
    eps_fn, params = _mlp()
    params = jax.tree.map(lambda v: jnp.asarray(v, jnp.float64), params)
    problem = _problem(eps_fn, params, jnp.float64)
    key = jax.random.key(4)
    got = methods.forget_saliency(problem, params, key, batch_size=4, draws=2, guidance=2.0,
                                  max_grad_norm=0.5)
    want = {name: np.zeros(np.shape(v)) for name, v in params.items()}
    for piece in _one_go(problem, params, key, 4, 2, 2.0):
      g = jax.grad(lambda p: _batch_loss(eps_fn, p, piece, 2.0))(params)
      norm = np.sqrt(sum(np.sum(np.asarray(v) ** 2) for v in g.values()))
      assert norm > 0.5  # the clipping acts
      for name in want:
        want[name] += np.asarray(g[name]) * min(1.0, 0.5 / norm)
    for name in params:
      np.testing.assert_allclose(got[name], want[name], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("fraction", [0.25, 0.5])
def test_salun_moves_exactly_the_masked_share_of_weights(fraction):
  """Every weight of the stand-in gets a gradient during unlearning, so the weights
  that move are the mask's: round(fraction * 40) of them, the largest saliencies."""
  eps_fn, params = _mlp()
  problem = _problem(eps_fn, params)
  hp = methods.hparams("SalUn", dict(epochs=1, learning_rate=1e-2, mask_fraction=fraction,
                                     batch_size=4, mask_batch_size=4, retain_scale=0.1))
  out = methods.get_method("SalUn").unlearn(problem, hp, jax.random.key(6))
  moved = np.concatenate([np.ravel(np.asarray(out[k]) != np.asarray(params[k]))
                          for k in sorted(params)])
  assert moved.sum() == round(fraction * moved.size)
  saliency = methods.forget_saliency(problem, params, jax.random.split(jax.random.key(6))[0],
                                     batch_size=4, max_grad_norm=1.0)
  flat = np.concatenate([np.abs(np.ravel(saliency[k])) for k in sorted(params)])
  assert flat[moved].min() >= flat[~moved].max()
