"""Schedules and the forward process against hand-computed closed forms."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.diffusion import schedules as sch


def test_linear_schedule_constants_by_hand():
  s = jax.tree.map(np.asarray, sch.get_schedule('linear', 1000))
  assert s.betas.shape == (1000,)
  np.testing.assert_allclose(s.betas[[0, 999]], [1e-4, 0.02], rtol=1e-6)
  beta1 = 1e-4 + (0.02 - 1e-4) / 999
  np.testing.assert_allclose(s.alphas_cumprod[1], (1 - 1e-4) * (1 - beta1), rtol=1e-7)
  np.testing.assert_allclose(s.alphas_cumprod_prev[[0, 1]], [1.0, 1 - 1e-4], rtol=1e-7)
  # log abar_T = sum log(1 - beta_t); ~4.04e-5 for Ho et al.'s schedule.
  expected = math.exp(sum(math.log(1 - b) for b in np.linspace(1e-4, 0.02, 1000)))
  np.testing.assert_allclose(s.alphas_cumprod[-1], expected, rtol=1e-5)
  assert 4.0e-5 < expected < 4.1e-5
  np.testing.assert_allclose(s.sqrt_alphas_cumprod ** 2 + s.sqrt_one_minus_alphas_cumprod ** 2,
                             1.0, rtol=1e-6)
  # Posterior at t = 1: beta_1 (1 - abar_0) / (1 - abar_1); clipped log at t = 0 copies t = 1.
  var1 = beta1 * 1e-4 / (1 - (1 - 1e-4) * (1 - beta1))
  np.testing.assert_allclose(s.posterior_variance[[0, 1]], [0.0, var1], rtol=1e-6, atol=1e-12)
  np.testing.assert_allclose(s.posterior_log_variance_clipped[[0, 1]], [math.log(var1)] * 2,
                             rtol=1e-6)


def test_cosine_alphas_cumprod_is_the_squared_cosine():
  s = sch.get_schedule('cosine', 1000)
  f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
  for t in (0, 10, 500, 900):
    np.testing.assert_allclose(s.alphas_cumprod[t], f(t + 1) / f(0), rtol=1e-5)
  assert float(jnp.max(s.betas)) == pytest.approx(0.999)  # clipped at the end


def test_sigmoid_schedule_is_symmetric_and_bounded():
  betas = sch.sigmoid_betas(101)
  np.testing.assert_allclose(betas + betas[::-1], 1e-4 + 0.02, rtol=1e-12)
  assert betas[50] == pytest.approx((1e-4 + 0.02) / 2) and np.all(np.diff(betas) > 0)


def test_posterior_is_the_gaussian_conditional():
  """q(x_{t-1} | x_t, x_0) from the joint Gaussian of (x_{t-1}, x_t) given x_0."""
  s = sch.get_schedule('linear', 1000)
  betas = sch.linear_betas(1000)  # float64: the reference must not inherit float32 rounding
  for t in (1, 10, 500, 999):
    abar_prev = float(np.prod(1 - betas[:t]))
    alpha, beta = 1 - betas[t], betas[t]
    x0, xt = 0.3, -0.7
    c11, c12 = 1 - abar_prev, math.sqrt(alpha) * (1 - abar_prev)
    c22 = alpha * (1 - abar_prev) + beta
    mean = math.sqrt(abar_prev) * x0 + c12 / c22 * (xt - math.sqrt(alpha * abar_prev) * x0)
    var = c11 - c12 ** 2 / c22
    got_mean, got_var, _ = sch.q_posterior(s, jnp.array([x0]), jnp.array([xt]), jnp.array([t]))
    np.testing.assert_allclose(got_mean, [mean], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_var, [var], rtol=1e-5)
    np.testing.assert_allclose(c22, 1 - np.prod(1 - betas[:t + 1]), rtol=1e-9)


def test_q_sample_moments_and_parameterisation_round_trips():
  s = sch.get_schedule('cosine', 1000)
  key_x, key_n = jax.random.split(jax.random.key(0))
  t = jnp.full((20000,), 300)
  x0 = jnp.full((20000, 1), 0.5)
  xt = sch.q_sample(s, x0, t, jax.random.normal(key_n, x0.shape))
  np.testing.assert_allclose(jnp.mean(xt), 0.5 * s.sqrt_alphas_cumprod[300], atol=0.02)
  np.testing.assert_allclose(jnp.var(xt), 1 - s.alphas_cumprod[300], rtol=0.03)

  x0 = jax.random.normal(key_x, (8, 4, 4, 3))
  eps = jax.random.normal(key_n, x0.shape)
  t = (jnp.arange(8) + 1) * 110
  xt = sch.q_sample(s, x0, t, eps)
  np.testing.assert_allclose(sch.x0_from_eps(s, xt, t, eps), x0, atol=2e-3)
  np.testing.assert_allclose(sch.eps_from_x0(s, xt, t, x0), eps, atol=2e-3)
  v = sch.v_from_eps_x0(s, t, eps, x0)
  np.testing.assert_allclose(sch.x0_from_v(s, xt, t, v), x0, atol=1e-4)
  np.testing.assert_allclose(sch.eps_from_v(s, xt, t, v), eps, atol=1e-4)


def test_bad_schedules_are_refused():
  with pytest.raises(ValueError, match="schedule 'quadratic'"):
    sch.get_schedule('quadratic', 10)
  with pytest.raises(ValueError, match='betas must be a vector in \\(0, 1\\)'):
    sch.make_schedule(np.array([0.1, 1.0]))


def test_variances_by_hand():
  s = sch.get_schedule('linear', 1000)
  betas = np.linspace(1e-4, 0.02, 1000)
  abar = np.cumprod(1 - betas)
  small_1 = betas[1] * (1 - abar[0]) / (1 - abar[1])
  np.testing.assert_allclose(np.asarray(sch.fixed_log_variance(s, 'small'))[[0, 1]],
                             np.log([small_1, small_1]), rtol=1e-5)
  np.testing.assert_allclose(np.asarray(sch.fixed_log_variance(s, 'large'))[[0, 1, 999]],
                             np.log([small_1, betas[1], betas[999]]), rtol=1e-5)
  # Learned range: v = -1 is beta~_t, v = 1 is beta_t, v = 0 their geometric mean.
  t = jnp.array([1, 500, 999])
  v = jnp.ones((3, 2))
  log_small = np.log(betas * np.append(1.0, 1 - abar[:-1]) / (1 - abar))[t][:, None]
  log_beta = np.log(betas)[t][:, None]
  for value, expected in ((-1, log_small), (1, log_beta), (0, (log_small + log_beta) / 2)):
    np.testing.assert_allclose(sch.learned_range_log_variance(s, t, value * v),
                               np.broadcast_to(expected, (3, 2)), rtol=1e-5)
