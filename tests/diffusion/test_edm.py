"""The EDM formulation against its closed forms: the preconditioning of Karras et al. (2022,
Table 1 and Appendix B.6), the loss weight, the training noise levels, and the VP wrapper,
which must turn the closed-form eps-model of Gaussian data into the optimal denoiser."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.diffusion import edm
from gen_jax.diffusion.schedules import get_schedule
from tests.diffusion.test_sigma_samplers import MU, S, gaussian_denoiser

SIGMA_DATA = 0.5


def test_preconditioning_is_the_papers():
  sigma = jnp.array([0.002, 0.5, 1.0, 80.0])
  c = edm.preconditioning(sigma, SIGMA_DATA)
  # sigma = sigma_data: c_skip = 1/2, c_out = c_in^-1 / 2 = sd / sqrt(2), c_noise = ln(sd)/4.
  assert float(c.c_skip[1]) == pytest.approx(0.5)
  assert float(c.c_out[1]) == pytest.approx(SIGMA_DATA / np.sqrt(2))
  assert float(c.c_in[1]) == pytest.approx(1 / (SIGMA_DATA * np.sqrt(2)))
  np.testing.assert_allclose(c.c_noise, np.log(sigma) / 4, rtol=1e-6)
  # What the coefficients are derived from (Appendix B.6), for data of std sigma_data:
  # the network's input has unit variance, c_skip minimises the variance of its target,
  # that variance is then 1, and lambda(sigma) c_out^2 = 1.
  sigma = np.asarray(sigma, np.float64)
  np.testing.assert_allclose(c.c_in ** 2 * (SIGMA_DATA ** 2 + sigma ** 2), 1, rtol=1e-5)

  def target_var(c_skip):
    return ((1 - c_skip) ** 2 * SIGMA_DATA ** 2 + c_skip ** 2 * sigma ** 2) / c.c_out ** 2

  np.testing.assert_allclose(target_var(np.asarray(c.c_skip)), 1, rtol=1e-5)
  assert np.all(target_var(np.asarray(c.c_skip) + 1e-3) > target_var(np.asarray(c.c_skip)))
  assert np.all(target_var(np.asarray(c.c_skip) - 1e-3) > target_var(np.asarray(c.c_skip)))
  np.testing.assert_allclose(edm.loss_weight(sigma, SIGMA_DATA) * c.c_out ** 2, 1, rtol=1e-5)


def test_target_has_unit_variance_by_monte_carlo():
  """F's regression target (x0 - c_skip x) / c_out over draws of data of std sigma_data."""
  key_data, key_noise = jax.random.split(jax.random.key(0))
  x0 = SIGMA_DATA * jnp.sign(jax.random.normal(key_data, (200000,)))  # non-Gaussian, std sd
  for sigma in (0.01, 0.5, 20.0):
    c = edm.preconditioning(jnp.float32(sigma), SIGMA_DATA)
    x = x0 + sigma * jax.random.normal(key_noise, x0.shape)
    assert float(jnp.var(c.c_in * x)) == pytest.approx(1, abs=0.02)
    assert float(jnp.var((x0 - c.c_skip * x) / c.c_out)) == pytest.approx(1, abs=0.02)


def test_denoise_with_the_optimal_network_is_the_optimal_denoiser():
  """F* = (D* - c_skip x) / c_out, written in the network's own inputs (c_in x, c_noise)."""
  def network_fn(x_in, c_noise):
    sigma = jnp.exp(4 * c_noise)
    x = x_in * jnp.sqrt(sigma ** 2 + SIGMA_DATA ** 2)[:, None]
    c = edm.preconditioning(sigma, SIGMA_DATA)
    return (gaussian_denoiser()(x, sigma) - c.c_skip[:, None] * x) / c.c_out[:, None]

  x = 3 * jax.random.normal(jax.random.key(1), (5, len(MU)))
  sigma = jnp.array([0.01, 0.3, 1.0, 5.0, 60.0])
  np.testing.assert_allclose(edm.denoise(network_fn, x, sigma, SIGMA_DATA),
                             gaussian_denoiser()(x, sigma), rtol=1e-4, atol=1e-5)


def test_vp_wrapper_turns_the_optimal_eps_model_into_the_optimal_denoiser():
  s = get_schedule('cosine', 1000)
  log_sig = jnp.log(edm.vp_sigmas(s))

  def eps_fn(xt, t):
    """E[eps | x_t] of N(MU, S^2) data, x_t = sqrt(abar) x0 + sqrt(1 - abar) eps, with
    abar(t) between timesteps from log sigma interpolated linearly in t."""
    abar = 1 / (1 + jnp.exp(2 * jnp.interp(t, jnp.arange(1000.0), log_sig)))[:, None]
    var = abar * S ** 2 + 1 - abar
    return jnp.sqrt(1 - abar) * (xt - jnp.sqrt(abar) * MU) / var

  sigma = jnp.array([0.01, 0.37, 1.0, 7.3, 60.0])  # mostly between timesteps
  assert float(edm.vp_sigmas(s)[0]) < 0.01 and float(edm.vp_sigmas(s)[-1]) > 60
  x = MU + jnp.sqrt(S ** 2 + sigma[:, None] ** 2) * jax.random.normal(jax.random.key(2),
                                                                      (5, len(MU)))
  np.testing.assert_allclose(edm.vp_denoiser(eps_fn, s)(x, sigma),
                             gaussian_denoiser()(x, sigma), rtol=1e-4, atol=1e-4)
  # At the schedule's own levels the timestep is the integer one.
  np.testing.assert_allclose(edm.vp_timestep(s, edm.vp_sigmas(s)[jnp.array([0, 5, 999])]),
                             [0, 5, 999], atol=1e-3)


def test_training_sigmas_are_log_normal_per_example():
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(3), i))(jnp.arange(50000))
  log_sigma = np.log(np.asarray(edm.training_sigmas(keys, -1.2, 1.2), np.float64))
  assert log_sigma.mean() == pytest.approx(-1.2, abs=4 * 1.2 / np.sqrt(50000))
  assert log_sigma.std() == pytest.approx(1.2, abs=4 * 1.2 / np.sqrt(2 * 50000))
  np.testing.assert_array_equal(edm.training_sigmas(keys[7:9], -1.2, 1.2),
                                edm.training_sigmas(keys, -1.2, 1.2)[7:9])
