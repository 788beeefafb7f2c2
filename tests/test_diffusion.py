"""The diffusion functions against closed forms.

* the schedule's ``alpha_bars`` is the float64 cumulative product of ``1 - betas``;
* the forward chain ``x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) z``, simulated
  step by step, has the marginal moments of :func:`q_sample`: mean
  ``sqrt(alpha_bar_t) x_0`` and variance ``1 - alpha_bar_t``;
* with the exact noise predictor of a point mass at ``m`` (``eps = (x_t -
  sqrt(ab) m) / sqrt(1 - ab)``), DDIM (``eta = 0``, any number of steps) and
  ancestral DDPM return ``m`` exactly;
* guidance: ``(1 + w) eps_c - w eps_u`` of two point-mass predictors is the
  predictor of the point ``(1 + w) m_c - w m_u``, so the guided sampler lands
  exactly there;
* for Gaussian data ``N(mu, s^2)``, the exact predictor transports ``N(0, 1)`` to
  ``N(mu, s^2)`` (DDIM with many steps, DDPM);
* DDIM with ``eta = 1`` on every timestep is DDPM, draw for draw.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ieu_jax.generative import diffusion

T = 1000


@pytest.fixture(scope="module")
def schedule():
  return diffusion.linear_schedule(T)


def point_mass_eps(schedule, means):
  """The exact noise predictor when class ``c``'s data is the single point ``means[c]``."""

  def eps_fn(params, x_t, t, labels):
    del params
    ab = schedule.alpha_bars[t].reshape((-1,) + (1,) * (x_t.ndim - 1))
    return (x_t - jnp.sqrt(ab) * means[labels]) / jnp.sqrt(1.0 - ab)

  return eps_fn


def gaussian_eps(schedule, mu, s):
  """``E[eps | x_t]`` for data ``N(mu, s^2)`` (independent coordinates)."""

  def eps_fn(params, x_t, t, labels):
    del params, labels
    ab = schedule.alpha_bars[t].reshape((-1,) + (1,) * (x_t.ndim - 1))
    return jnp.sqrt(1.0 - ab) * (x_t - jnp.sqrt(ab) * mu) / (ab * s**2 + 1.0 - ab)

  return eps_fn


def test_schedule_matches_float64_cumulative_product(schedule):
  betas = np.linspace(1e-4, 0.02, T, dtype=np.float64)
  np.testing.assert_allclose(schedule.betas, betas, rtol=1e-6)
  np.testing.assert_allclose(schedule.alpha_bars, np.cumprod(1.0 - betas), rtol=1e-4, atol=1e-9)
  cos = diffusion.cosine_schedule(T)
  assert np.all(np.diff(np.asarray(cos.alpha_bars)) < 0) and cos.alpha_bars[0] > 0.999


def test_q_sample_is_the_closed_form(schedule):
  t = jnp.array([0, 10, 500, 999])
  x0 = jnp.array([1.0, -2.0, 0.5, 3.0])
  ab = np.cumprod(1.0 - np.linspace(1e-4, 0.02, T))[np.asarray(t)]
  np.testing.assert_allclose(
      diffusion.q_sample(schedule, x0, t, jnp.zeros(4)), np.sqrt(ab) * np.asarray(x0), rtol=1e-5)
  np.testing.assert_allclose(
      diffusion.q_sample(schedule, jnp.zeros(4), t, jnp.ones(4)), np.sqrt(1 - ab), rtol=1e-5,
      atol=1e-6)  # float32: 1 - alpha_bar_0 = 1e-4 carries ~1e-8 absolute error


def test_forward_chain_has_the_marginal_moments(schedule):
  """Step-by-step forward noising, 40k chains: moments within 5 standard errors."""
  n, x0 = 40_000, 1.5
  checkpoints = np.array([0, 20, 200, 999])

  def step(x, inputs):
    beta, k = inputs
    x = jnp.sqrt(1.0 - beta) * x + jnp.sqrt(beta) * jax.random.normal(k, x.shape)
    return x, x

  keys = jax.random.split(jax.random.key(0), T)
  _, path = jax.lax.scan(step, jnp.full((n,), x0), (schedule.betas, keys))
  ab = np.asarray(schedule.alpha_bars)[checkpoints]
  chain = np.asarray(path)[checkpoints]  # x_t after steps 0..t
  closed = np.asarray(diffusion.q_sample(
      schedule, jnp.full((4, n), x0), jnp.asarray(checkpoints),
      jax.random.normal(jax.random.key(1), (4, n))))
  for samples in (chain, closed):
    mean, var = samples.mean(1), samples.var(1)
    true_var = 1.0 - ab
    assert np.all(np.abs(mean - np.sqrt(ab) * x0) < 5 * np.sqrt(true_var / n)), mean
    assert np.all(np.abs(var - true_var) < 5 * true_var * np.sqrt(2.0 / n)), var


@pytest.mark.parametrize("num_steps", [1, 7, 50])
def test_ddim_recovers_point_masses(schedule, num_steps):
  means = jax.random.uniform(jax.random.key(0), (3, 4, 4, 1), minval=-1, maxval=1)
  labels = jnp.array([0, 1, 2, 2, 1])
  out = diffusion.ddim_sample(
      point_mass_eps(schedule, means), None, schedule, jax.random.key(1), labels, (4, 4, 1),
      num_steps=num_steps)
  np.testing.assert_allclose(out, means[labels], atol=2e-4)


def test_ddpm_recovers_point_masses(schedule):
  means = jnp.array([[-0.7], [0.3]])
  labels = jnp.array([0, 1, 1, 0])
  out = diffusion.ddpm_sample(
      point_mass_eps(schedule, means), None, schedule, jax.random.key(2), labels, (1,))
  np.testing.assert_allclose(out, means[labels], atol=2e-4)


def test_cfg_combine_closed_form():
  c, u = jnp.array([1.0, -2.0]), jnp.array([0.5, 4.0])
  np.testing.assert_allclose(diffusion.cfg_combine(c, u, 0.0), c)
  np.testing.assert_allclose(diffusion.cfg_combine(c, u, 2.0), 3.0 * c - 2.0 * u)


@pytest.mark.parametrize("w", [0.0, 1.0, 3.0])
def test_guided_sampler_lands_on_the_guided_point(schedule, w):
  """Point masses per label and at the null label: guidance extrapolates between them."""
  null = 2
  means = jnp.array([[0.4, -0.2], [-0.6, 0.1], [0.1, 0.3]])  # rows 0, 1 classes; row 2 null
  labels = jnp.array([0, 1, 1])
  eps_fn = point_mass_eps(schedule, means)
  out = diffusion.ddim_sample(
      eps_fn, None, schedule, jax.random.key(3), labels, (2,), num_steps=20,
      guidance_scale=w, null_label=null)
  expected = (1.0 + w) * means[labels] - w * means[null]
  np.testing.assert_allclose(out, expected, atol=1e-3)
  x, t = jnp.ones((3, 2)), jnp.array([5, 500, 900])
  np.testing.assert_allclose(
      diffusion.guided_eps(eps_fn, None, x, t, labels, w, null),
      (1 + w) * eps_fn(None, x, t, labels) - w * eps_fn(None, x, t, jnp.full(3, null)),
      rtol=1e-5, atol=1e-6)


def test_samplers_transport_noise_to_gaussian_data(schedule):
  mu, s, n = 0.7, 0.3, 20_000
  eps_fn = gaussian_eps(schedule, mu, s)
  labels = jnp.zeros((n,), jnp.int32)
  ddim = diffusion.ddim_sample(eps_fn, None, schedule, jax.random.key(4), labels, (), num_steps=T)
  ddpm = diffusion.ddpm_sample(eps_fn, None, schedule, jax.random.key(5), labels, ())
  for out in (np.asarray(ddim), np.asarray(ddpm)):
    assert abs(out.mean() - mu) < 5 * s / np.sqrt(n)
    assert abs(out.std() / s - 1.0) < 0.03, out.std()


def test_ddim_with_eta_one_on_every_step_is_ddpm(schedule):
  """Any predictor (here a fixed nonlinear one): the two samplers agree draw for draw."""
  eps_fn = lambda p, x, t, y: jnp.tanh(x + 0.001 * t.astype(jnp.float32)[:, None])
  labels = jnp.zeros((6,), jnp.int32)
  key = jax.random.key(6)
  ddim = diffusion.ddim_sample(eps_fn, None, schedule, key, labels, (3,), num_steps=T, eta=1.0)
  ddpm = diffusion.ddpm_sample(eps_fn, None, schedule, key, labels, (3,))
  np.testing.assert_allclose(ddim, ddpm, rtol=1e-3, atol=1e-3)


def test_loss_of_the_exact_predictor_is_zero(schedule):
  means = jnp.array([[0.2, -0.4]])
  x0, labels = jnp.tile(means, (16, 1)), jnp.zeros((16,), jnp.int32)
  loss = diffusion.diffusion_loss(point_mass_eps(schedule, means), None, schedule, x0, labels,
                                  jax.random.key(7))
  assert float(loss) < 1e-8
  zero = lambda p, x, t, y: jnp.zeros_like(x)
  big = jnp.zeros((20_000, 1))
  loss = diffusion.diffusion_loss(zero, None, schedule, big, jnp.zeros(20_000, jnp.int32),
                                  jax.random.key(8))
  assert abs(float(loss) - 1.0) < 5 * np.sqrt(2 / 20_000)  # E[z^2] = 1


def test_label_dropout_rate():
  labels = jnp.zeros((50_000,), jnp.int32)
  dropped = diffusion.drop_labels(jax.random.key(9), labels, 0.1, 10)
  share = float(jnp.mean(dropped == 10))
  assert abs(share - 0.1) < 5 * np.sqrt(0.09 / 50_000)
  assert set(np.unique(dropped).tolist()) == {0, 10}


def test_ddim_timesteps():
  ts = np.asarray(diffusion.ddim_timesteps(T, 20))
  assert ts[0] == T - 1 and ts[-1] == 0 and len(ts) == 20 and np.all(np.diff(ts) < 0)
  with pytest.raises(ValueError):
    diffusion.ddim_timesteps(T, T + 1)
