"""Tests of ieu_jax.theory: every bound holds on random instances, and is tight."""

import json
import math
import os

import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ieu_jax import theory
from ieu_jax._transforms import ieu_transform
from ieu_jax.theory import bounds
from ieu_jax.theory import check
from ieu_jax.theory import problems

_SETTINGS = hypothesis.settings(max_examples=30, deadline=None,
                                derandomize=True)


def _orthogonal(rng, d):
  q, r = np.linalg.qr(rng.standard_normal((d, d)))
  return q * np.sign(np.diag(r))


def _aligned(rng, d, mu_r, l_r, l_f):
  """A, B sharing eigenvectors; B's top eigenvalue on A's bottom eigenvector."""
  q = _orthogonal(rng, d)
  a = np.concatenate([[mu_r], rng.uniform(mu_r, l_r, d - 2), [l_r]])
  b = np.concatenate([[l_f], rng.uniform(0, l_f, d - 2), [0.0]])
  return (q * a) @ q.T, (q * b) @ q.T, q


def _random_curvatures(rng, mu_range, gap_range):
  """A random strong-convexity constant and a smoothness constant above it."""
  mu = rng.uniform(*mu_range)
  return mu, mu + rng.uniform(*gap_range)


def _random_instance(rng, d):
  g = rng.standard_normal((d + 2, d))
  a_mat = g.T @ g / d + rng.uniform(0.1, 1.0) * np.eye(d)
  h = rng.standard_normal((rng.integers(1, d + 1), d))
  b_mat = h.T @ h / h.shape[0]
  return a_mat, b_mat


def _settings_that_hold(rng, c):
  """Random (eta, lambda, alpha_f) satisfying Theorem 1's conditions."""
  lam = rng.uniform(0, 1)
  alpha = rng.uniform(0, 0.99) * (lam + c.mu_R) / c.L_F
  eta = rng.uniform(0.05, 1.99) / (lam + c.L_R)
  return eta, lam, alpha


def _random_contraction(seed, d):
  """A random quadratic and a setting where Theorem 1's conditions hold.

  Args:
    seed: NumPy seed of the instance and the setting.
    d: number of parameters.

  Returns:
    ``(rng, A, B, c, (eta, lambda, alpha_f), rho, J)``: the generator (to draw
    more from), the Hessians, their constants, the setting, its contraction
    factor and the drift map's Jacobian.
  """
  rng = np.random.default_rng(seed)
  a_mat, b_mat = _random_instance(rng, d)
  c = theory.quadratic_constants(a_mat, b_mat)
  eta, lam, alpha = _settings_that_hold(rng, c)
  rho = theory.contraction_factor(eta, lam, alpha, *c)
  jac = theory.quadratic_ieu_jacobian(a_mat, b_mat, eta, lam, alpha)
  return rng, a_mat, b_mat, c, (eta, lam, alpha), rho, jac


# --------------------------------------------------------------------------
# Theorem 1.
# --------------------------------------------------------------------------


def test_contraction_factor_example_and_conditions():
  assert theory.contraction_factor(0.1, 1.0, 1.0, 1.0, 4.0, 1.5) == \
      pytest.approx(0.95)
  c = theory.contraction_conditions(0.1, 0.0, 1.0, 1.0, 4.0, 1.5)
  assert not c.decay_dominates and not c.hold
  assert theory.contraction_factor(0.1, 0.0, 1.0, 1.0, 4.0, 1.5) > 1
  c = theory.contraction_conditions(0.5, 1.0, 0.0, 1.0, 4.0, 1.5)
  assert c.decay_dominates and not c.step_small_enough
  assert theory.contraction_factor(0.5, 1.0, 0.0, 1.0, 4.0, 1.5) >= 1


@_SETTINGS
@hypothesis.given(st.integers(0, 2**31 - 1), st.integers(2, 7))
def test_phi_is_rho_lipschitz_on_random_quadratics(seed, d):
  rng, a_mat, b_mat, c, (eta, lam, alpha), rho, jac = _random_contraction(
      seed, d)
  assert theory.contraction_conditions(eta, lam, alpha, *c).hold and rho < 1
  assert theory.quadratic_exact_contraction(a_mat, b_mat, eta, lam,
                                            alpha) <= rho * (1 + 1e-12)
  x, y = rng.standard_normal((2, d))
  assert np.linalg.norm(jac @ (x - y)) <= rho * np.linalg.norm(x - y) * (
      1 + 1e-12)


@_SETTINGS
@hypothesis.given(st.integers(0, 2**31 - 1), st.integers(2, 7))
def test_contraction_rate_attained_by_extreme_eigenvector(seed, d):
  """On aligned quadratics rho is the exact rate, on one extreme eigenvector."""
  rng = np.random.default_rng(seed)
  mu_r, l_r = _random_curvatures(rng, (0.1, 2), (0.5, 10))
  l_f = rng.uniform(0.1, 5)
  a_mat, b_mat, q = _aligned(rng, d, mu_r, l_r, l_f)
  c = theory.quadratic_constants(a_mat, b_mat)
  np.testing.assert_allclose(c, (mu_r, l_r, l_f), rtol=1e-12)
  eta, lam, alpha = _settings_that_hold(rng, c)
  rho = theory.contraction_factor(eta, lam, alpha, *c)
  assert theory.quadratic_exact_contraction(
      a_mat, b_mat, eta, lam, alpha) == pytest.approx(rho, rel=1e-12)
  jac = theory.quadratic_ieu_jacobian(a_mat, b_mat, eta, lam, alpha)
  # The eigenvector attaining rho: Q[:, 0] (curvature m) or Q[:, -1] (M).
  low = abs(1 - eta * (lam + mu_r - alpha * l_f))
  high = abs(1 - eta * (lam + l_r))
  v = q[:, 0] if low >= high else q[:, -1]
  e = v.copy()
  for t in range(1, 30):
    e = jac @ e
    assert np.linalg.norm(e) == pytest.approx(rho**t, rel=1e-10)


def test_wrong_eigenvalue_is_caught():
  """Using mu_R instead of mu_R - alpha_f L_F gives a 'bound' that fails."""
  rng = np.random.default_rng(0)
  a_mat, b_mat, q = _aligned(rng, 5, 1.0, 10.0, 4.0)
  eta, lam, alpha = 0.05, 1.0, 0.25
  wrong = max(abs(1 - eta * (lam + 10.0)), abs(1 - eta * (lam + 1.0)))
  jac = theory.quadratic_ieu_jacobian(a_mat, b_mat, eta, lam, alpha)
  assert np.linalg.norm(jac @ q[:, 0]) > wrong * 1.01


def _logistic(rng, n, d):
  x = rng.standard_normal((n, d))
  y = np.where(x @ rng.standard_normal(d) + rng.standard_normal(n) > 0, 1.,
               -1.)
  return x, y


def _logistic_grad(theta, x, y, l2):
  z = y * (x @ theta)
  return -(x.T @ (y * 0.5 * (1 - np.tanh(0.5 * z)))) / len(y) + l2 * theta


def _logistic_hess(theta, x, y, l2):
  s = 0.5 * (1 + np.tanh(0.5 * (x @ theta)))
  return (x.T * (s * (1 - s))) @ x / len(y) + l2 * np.eye(x.shape[1])


@_SETTINGS
@hypothesis.given(st.integers(0, 2**31 - 1))
def test_logistic_constants_bound_the_hessian(seed):
  rng = np.random.default_rng(seed)
  x, y = _logistic(rng, 30, 4)
  l2 = rng.uniform(0, 1)
  mu, lip = theory.logistic_curvature_bounds(x, l2)
  for scale in (0.0, 1.0, 10.0):
    eig = np.linalg.eigvalsh(_logistic_hess(scale * rng.standard_normal(4), x,
                                            y, l2))
    assert eig[0] >= mu * (1 - 1e-12) and eig[-1] <= lip * (1 + 1e-12)
  # Smoothness attained at theta = 0, where every s_i (1 - s_i) = 1/4.
  assert np.linalg.eigvalsh(_logistic_hess(np.zeros(4), x, y, l2))[-1] == \
      pytest.approx(lip, rel=1e-12)


@_SETTINGS
@hypothesis.given(st.integers(0, 2**31 - 1))
def test_phi_is_rho_lipschitz_on_logistic_regression(seed):
  rng = np.random.default_rng(seed)
  xr, yr = _logistic(rng, 40, 4)
  xf, yf = _logistic(rng, 10, 4)
  c = theory.logistic_ieu_constants(xr, xf, retain_l2=rng.uniform(0, 0.5))
  eta, lam, alpha = _settings_that_hold(rng, c)
  rho = theory.contraction_factor(eta, lam, alpha, *c)

  def phi(th):
    return (1 - eta * lam) * th - eta * (_logistic_grad(th, xr, yr, c.mu_R)
                                         - alpha * _logistic_grad(th, xf, yf,
                                                                  0.0))

  for _ in range(5):
    u, v = 3 * rng.standard_normal((2, 4))
    assert np.linalg.norm(phi(u) - phi(v)) <= rho * np.linalg.norm(u - v) * (
        1 + 1e-12)


def _product_run(a_mat, a, b_mat, b, theta0, keys, eta, lam, alpha, sigma,
                 steps):
  """IEU trajectories through ieu_transform, vmapped over keys, float64."""
  a_mat, a, b_mat, b, theta0 = map(jnp.asarray, (a_mat, a, b_mat, b, theta0))

  def one(key):
    tx = ieu_transform(eta, ascent_scale=alpha, retain_scale=1.0,
                       weight_decay=lam, noise_std=sigma, key=key)

    def body(carry, _):
      th, state = carry
      upd, state = tx.update(b_mat @ (th - b), state, th,
                             retain_grads=a_mat @ (th - a))
      th = optax.apply_updates(th, upd)
      return (th, state), th

    _, path = jax.lax.scan(body, (theta0, tx.init(theta0)), None,
                           length=steps)
    return jnp.concatenate([theta0[None], path])

  return np.asarray(jax.jit(jax.vmap(one))(keys))


def test_product_trajectory_matches_numpy_and_attains_rho():
  rng = np.random.default_rng(3)
  a_mat, b_mat, q = _aligned(rng, 5, 1.0, 10.0, 4.0)
  a, b = rng.standard_normal((2, 5))
  eta, lam, alpha = 0.05, 1.0, 0.25
  rho = theory.contraction_factor(eta, lam, alpha, 1.0, 10.0, 4.0)
  bar = theory.quadratic_ieu_fixed_point(a_mat, a, b_mat, b, lam, alpha)
  start = bar + q[:, 0]
  with jax.enable_x64(True):
    path = _product_run(a_mat, a, b_mat, b, start,
                        jax.random.split(jax.random.key(0), 1), eta, lam,
                        alpha, 0.0, 40)[0]
  assert path.dtype == np.float64
  ref = [start]
  for _ in range(40):
    th = ref[-1]
    ref.append((1 - eta * lam) * th - eta * (a_mat @ (th - a)
                                             - alpha * b_mat @ (th - b)))
  np.testing.assert_allclose(path, np.array(ref), rtol=1e-12, atol=1e-13)
  dist = np.linalg.norm(path - bar, axis=1)
  np.testing.assert_allclose(dist, rho ** np.arange(41), rtol=1e-10)


# --------------------------------------------------------------------------
# Theorem 2.
# --------------------------------------------------------------------------


def _covariance_recursion(jac, e0, sigma, steps):
  """Independent reference: mean and covariance pushed through the recursion."""
  d = len(e0)
  mean, cov, out = e0.copy(), np.zeros((d, d)), []
  for _ in range(steps + 1):
    out.append(mean @ mean + np.trace(cov))
    mean = jac @ mean
    cov = jac @ cov @ jac.T + sigma**2 * np.eye(d)
  return np.array(out)


@_SETTINGS
@hypothesis.given(st.integers(0, 2**31 - 1), st.integers(2, 6))
def test_noisy_bound_holds_for_exact_expectation(seed, d):
  rng, _, _, _, _, rho, jac = _random_contraction(seed, d)
  sigma = rng.uniform(0.01, 1)
  e0 = rng.standard_normal(d)
  t = np.arange(60)
  exact = theory.quadratic_expected_sq_distance(t, jac, e0, sigma)
  np.testing.assert_allclose(exact, _covariance_recursion(jac, e0, sigma, 59),
                             rtol=1e-10)
  bound = theory.noisy_sq_distance_bound(t, rho, e0 @ e0, sigma, d)
  spec = theory.noisy_sq_distance_bound(t, rho, e0 @ e0, sigma, d,
                                        finite_horizon=False)
  assert np.all(exact <= bound * (1 + 1e-10))
  assert np.all(bound <= spec * (1 + 1e-12))
  assert theory.quadratic_stationary_sq_distance(jac, sigma) <= \
      theory.stationary_sq_distance_bound(rho, sigma, d) * (1 + 1e-12)


def test_noisy_bound_is_exact_on_isotropic_quadratic_and_needs_noise_term():
  d, rho, sigma = 4, 0.75, 0.1
  jac = rho * np.eye(d)
  e0 = np.ones(d)
  t = np.arange(50)
  exact = theory.quadratic_expected_sq_distance(t, jac, e0, sigma)
  bound = theory.noisy_sq_distance_bound(t, rho, e0 @ e0, sigma, d)
  np.testing.assert_allclose(exact, bound, rtol=1e-12)
  assert theory.quadratic_stationary_sq_distance(jac, sigma) == pytest.approx(
      theory.stationary_sq_distance_bound(rho, sigma, d), rel=1e-12)
  # Without the noise term (Theorem 1's bound squared) the bound fails.
  assert np.any(exact > theory.noisy_sq_distance_bound(t, rho, e0 @ e0, 0.0,
                                                       d) * 1.5)
  with pytest.raises(ValueError):
    theory.noisy_sq_distance_bound(t, 1.0, 1.0, sigma, d)


def test_product_noise_matches_exact_expectation():
  """Monte Carlo through ieu_transform agrees with the exact expectation."""
  d, k, steps = 4, 400, 30
  a_mat, b_mat = 3.0 * np.eye(d), np.eye(d)
  a, b = np.ones(d), -np.ones(d)
  eta, lam, alpha, sigma = 0.1, 0.5, 1.0, 0.1
  c = theory.quadratic_constants(a_mat, b_mat)
  rho = theory.contraction_factor(eta, lam, alpha, *c)
  bar = theory.quadratic_ieu_fixed_point(a_mat, a, b_mat, b, lam, alpha)
  start = bar + np.ones(d)
  with jax.enable_x64(True):
    paths = _product_run(a_mat, a, b_mat, b, start,
                         jax.random.split(jax.random.key(1), k), eta, lam,
                         alpha, sigma, steps)
  sq = np.sum((paths - bar) ** 2, axis=2)
  mean, se = sq.mean(0)[1:], sq.std(0, ddof=1)[1:] / math.sqrt(k)
  t = np.arange(1, steps + 1)
  jac = theory.quadratic_ieu_jacobian(a_mat, b_mat, eta, lam, alpha)
  exact = theory.quadratic_expected_sq_distance(t, jac, start - bar, sigma)
  assert np.max(np.abs(mean - exact) / se) < 5
  # Half the noise scale (d sigma^2 / 4) would be rejected by far.
  half = theory.noisy_sq_distance_bound(t, rho, 1.0 * d, sigma / 2, d)
  assert np.max((mean - half) / se) > 10


# --------------------------------------------------------------------------
# Theorem 3.
# --------------------------------------------------------------------------


def test_relearn_steps_bounds_edge_cases():
  assert theory.relearn_steps_bounds(1.0, 1e-3, 0.5, 0.1, 1.0) == (10, 135)
  assert theory.relearn_steps_bounds(0.5, 1.0, 0.5, 0.1, 1.0) == (0, 0)
  lo, hi = theory.relearn_steps_bounds(1.0, 1e-3, 1.0, 0.1, 1.0)
  assert lo == 1 and hi == math.ceil(math.log(1e3) / math.log(1 / 0.9))
  assert theory.relearn_steps_bounds(1.0, 1e-3, 1.0, 1.0, 1.0) == (1, 1)
  with pytest.raises(ValueError):
    theory.relearn_steps_bounds(1.0, 1e-3, 1.5, 0.1, 1.0)
  with pytest.raises(ValueError):
    theory.relearn_steps_bounds(1.0, 1e-3, 0.5, 0.0, 1.0)


def _gd_steps_to(b_mat, start, eta_r, eps, max_steps=5000):
  e = start.copy()
  for k in range(max_steps):
    if np.linalg.norm(e) <= eps:
      return k
    e = e - eta_r * (b_mat @ e)
  return None


@_SETTINGS
@hypothesis.given(st.integers(0, 2**31 - 1), st.integers(2, 6))
def test_relearn_steps_within_bounds_and_attained(seed, d):
  rng = np.random.default_rng(seed)
  mu, lip = _random_curvatures(rng, (0.05, 1), (0.1, 5))
  q = _orthogonal(rng, d)
  eig = np.concatenate([[mu], rng.uniform(mu, lip, d - 2), [lip]])
  b_mat = (q * eig) @ q.T
  mu_c, lip_c = theory.hessian_extremes(b_mat)
  eta_r = rng.uniform(0.1, 1.0) / lip_c
  eps = 10 ** rng.uniform(-4, -0.5)
  start = rng.standard_normal(d)
  lo, hi = theory.relearn_steps_bounds(np.linalg.norm(start), eps, eta_r,
                                       mu_c, lip_c)
  assert lo <= _gd_steps_to(b_mat, start, eta_r, eps) <= hi
  # The slowest eigenvector attains the upper bound, the fastest the lower.
  for vec, which in ((q[:, 0], 1), (q[:, -1], 0)):
    bounds = theory.relearn_steps_bounds(1.0, eps, eta_r, mu_c, lip_c)
    steps = _gd_steps_to(b_mat, vec, eta_r, eps)
    # Exactly, except when D_k lands within rounding of eps.
    assert abs(steps - bounds[which]) <= 1
    assert bounds[0] <= steps <= bounds[1]


def test_spec_real_valued_upper_bound_needs_ceiling():
  """T can exceed log(D/eps)/log(1/q): the upper bound needs the ceiling."""
  b_mat = np.diag([0.5, 2.0])
  eta_r, eps = 0.5, 0.3
  start = np.array([1.0, 0.0])  # slowest direction: D_k = 0.75**k
  steps = _gd_steps_to(b_mat, start, eta_r, eps)
  real = math.log(1 / eps) / math.log(1 / 0.75)
  assert steps > real
  assert steps == theory.relearn_steps_bounds(1.0, eps, eta_r, 0.5, 2.0)[1]


# --------------------------------------------------------------------------
# The checker end to end, and its ability to fail.
# --------------------------------------------------------------------------


@pytest.mark.slow
def test_run_theory_check_quick(tmp_path):
  result = check.run_theory_check(str(tmp_path), quick=True)
  assert result["all_respected"], check.format_summary(result)
  with open(tmp_path / "theory.json") as f:
    saved = json.load(f)
  assert saved["all_respected"]
  for name in ("theorem1.png", "theorem2.png", "theorem3.png"):
    assert os.path.getsize(tmp_path / name) > 1000
  for name, bound in saved["bounds"].items():
    assert bound["n_conditions_hold"] >= 3, name
    assert bound["n_settings"] > bound["n_conditions_hold"], name
    for s in bound["settings"]:
      if s["conditions_hold"]:
        assert s["holds"] is True and s["worst_margin"] is not None
      else:
        assert s["holds"] is None and s["what_happens"]["verdict"]
  verdicts = [s["what_happens"]["verdict"]
              for s in saved["bounds"]["theorem1_contraction"]["settings"]
              if not s["conditions_hold"]]
  assert any(v.startswith("diverges") for v in verdicts)
  assert any(v.startswith("converges anyway") for v in verdicts)
  # The tight setting attains the bound to rounding.
  tight = [s for s in saved["bounds"]["theorem1_contraction"]["settings"]
           if "tight" in s["setting"]]
  assert tight and abs(tight[0]["worst_margin"]) < 1e-9


@pytest.mark.parametrize("broken", ["rho", "noise", "relearn"])
def test_checker_detects_broken_bounds(monkeypatch, broken):
  # The checker calls the bounds through ieu_jax.theory.bounds.
  if broken == "rho":
    right = bounds.contraction_factor
    monkeypatch.setattr(bounds, "contraction_factor",
                        lambda *a: 0.98 * right(*a))
  elif broken == "noise":
    right = bounds.noisy_sq_distance_bound
    monkeypatch.setattr(
        bounds, "noisy_sq_distance_bound",
        lambda t, rho, e0, sigma, d, **kw: right(t, rho, e0, 0.0, d, **kw))
  else:
    right = bounds.relearn_steps_bounds
    monkeypatch.setattr(bounds, "relearn_steps_bounds",
                        lambda *a: tuple(x + 1 for x in right(*a)))
  with jax.enable_x64(True):
    ieu_problems = problems.ieu_problems(True)
    if broken == "rho":
      summary, _ = check.check_theorem1(ieu_problems, True, 60)
    elif broken == "noise":
      summary, _ = check.check_theorem2(ieu_problems, True, 40, 200)
    else:
      summary, _ = check.check_theorem3(ieu_problems, True, 300)
  assert not summary["all_respected"]
  if broken != "relearn":  # Theorem 3's step counts are off by whole steps.
    assert summary["worst_margin"] < -1e-6
