"""The sigma-space samplers against ground truth. For Gaussian data N(MU, S^2) (independent
dimensions) the optimal denoiser is D(x, sigma) = MU + S^2 / (S^2 + sigma^2) (x - MU), and
the probability-flow ODE has the exact solution x(sigma) - MU = sqrt(S^2 + sigma^2) /
sqrt(S^2 + sigma_0^2) (x(sigma_0) - MU): the deterministic samplers must converge to it at
their order, the stochastic one must reproduce the data's moments."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.diffusion import edm, samplers, sigma_samplers
from gen_jax.diffusion.schedules import get_schedule

MU = np.array([0.3, -0.2, 0.0, 0.5])
S = np.array([0.1, 0.5, 1.0, 2.0])
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0


def gaussian_denoiser(mu=MU, s=S):
  """The optimal D(x, sigma) of N(mu, s^2) data, x [B, D], sigma [B]."""
  def denoise_fn(x, sigma):
    shrink = s ** 2 / (s ** 2 + sigma[:, None] ** 2)
    return mu + shrink * (x - mu)
  return denoise_fn


def exact_flow(x, sigma_from, sigma_to, mu=MU, s=S):
  """The probability-flow ODE's solution at sigma_to from x [B, D] at sigma_from."""
  return mu + np.sqrt(s ** 2 + sigma_to ** 2) / np.sqrt(s ** 2 + sigma_from ** 2) * (x - mu)


def start(n, sigma=SIGMA_MAX, dtype=jnp.float64):
  return sigma * jax.random.normal(jax.random.key(1), (n, len(MU)), dtype)


def run(solver, sigmas, x):
  fn = {'euler': sigma_samplers.euler_sample, 'heun': sigma_samplers.heun_sample,
        'dpmpp_2m': sigma_samplers.dpmpp_2m_sample}[solver]
  return jax.jit(lambda x: fn(gaussian_denoiser(), sigmas, x))(x)


@pytest.mark.parametrize('spacing', ['karras', 'logsnr'])
@pytest.mark.parametrize('solver,order', [('euler', 1), ('heun', 2), ('dpmpp_2m', 2)])
def test_deterministic_samplers_converge_to_the_ode_solution_at_their_order(
    solver, order, spacing):
  with jax.enable_x64(True):
    x = start(64)
    exact = exact_flow(np.asarray(x), SIGMA_MAX, SIGMA_MIN)
    errors = []
    for n in (16, 32, 64, 128):
      # Stop at sigma_min: the jump to 0 is the same last step for every n.
      sigmas = sigma_samplers.make_sigmas(spacing, n, SIGMA_MIN, SIGMA_MAX)[:-1]
      errors.append(np.max(np.abs(np.asarray(run(solver, sigmas, x)) - exact)))
  orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
  np.testing.assert_allclose(orders[-1], order, atol=0.15)
  assert np.all(orders > order - 0.3), orders


def test_euler_is_ddim_through_the_vp_wrapper():
  """DDIM (eta = 0) on a DDPM schedule's timesteps is the Euler step in sigma: the existing
  discrete sampler and the sigma sampler agree on the same grid and starting noise."""
  s = get_schedule('linear', 1000)
  ts = samplers.timesteps(1000, 20, 'trailing')
  abar = s.alphas_cumprod[ts]
  sig = np.asarray(edm.vp_sigmas(s))

  def eps_fn(xt, t):  # optimal eps of N(MU, S^2) at (fractional) t
    sigma = jnp.exp(jnp.interp(t, jnp.arange(1000.0), jnp.log(sig)))[:, None]
    x = xt * jnp.sqrt(1 + sigma ** 2)
    return (x - gaussian_denoiser()(x, sigma[:, 0])) / sigma

  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(0), i))(jnp.arange(256))
  ddim = samplers.ddim_sample(eps_fn, s, keys, (len(MU),), ts, eta=0.0, clip=False)
  x_start = samplers.example_noise(keys, 1000, (len(MU),)) / jnp.sqrt(abar[-1])
  sigmas = np.append(sig[ts][::-1], 0.0)
  euler = sigma_samplers.euler_sample(edm.vp_denoiser(eps_fn, s), sigmas, x_start)
  np.testing.assert_allclose(euler, ddim, rtol=1e-4, atol=1e-4)


def test_stochastic_sampler_reproduces_the_data_moments():
  n = 20000
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(2), i))(jnp.arange(n))
  # 256 steps: with 64 the discretisation alone moves the variance of the narrowest
  # dimension by about 7 standard errors.
  sigmas = sigma_samplers.make_sigmas('karras', 256, SIGMA_MIN, SIGMA_MAX)
  x = jax.jit(lambda x: sigma_samplers.heun_sample(
      gaussian_denoiser(), sigmas, x, keys, churn=40.0, s_tmin=0.05, s_tmax=50.0))(
          start(n, dtype=jnp.float32))
  mean, var = np.mean(np.asarray(x, np.float64), 0), np.var(np.asarray(x, np.float64), 0)
  np.testing.assert_array_less(np.abs(mean - MU), 4 * S / np.sqrt(n))
  np.testing.assert_array_less(np.abs(var - S ** 2), 4 * S ** 2 * np.sqrt(2 / n))
  assert np.all(sigma_samplers.churn_gammas(sigmas, 40.0, 0.05, 50.0)[[0, -1]] == 0)


def test_stochastic_samples_do_not_depend_on_the_batch():
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(3), i))(jnp.arange(6))
  sigmas = sigma_samplers.make_sigmas('karras', 8, SIGMA_MIN, SIGMA_MAX)
  x = start(6, dtype=jnp.float32)
  sample = lambda k, x: sigma_samplers.heun_sample(gaussian_denoiser(), sigmas, x, k,  # noqa: E731
                                                   churn=10.0)
  np.testing.assert_allclose(sample(keys, x)[3:], sample(keys[3:], x[3:]), rtol=1e-5)


def test_network_evaluations_per_sampler():
  """Heun takes 2N - 1 evaluations for N steps to 0 (EDM's 35 for N = 18); Euler and
  DPM-Solver++ one per step."""
  calls = []

  def counting(x, sigma):
    jax.debug.callback(lambda: calls.append(1))
    return gaussian_denoiser()(x, sigma)

  sigmas = sigma_samplers.make_sigmas('karras', 18, SIGMA_MIN, SIGMA_MAX)
  for fn, expected in ((sigma_samplers.heun_sample, 35), (sigma_samplers.euler_sample, 18),
                       (sigma_samplers.dpmpp_2m_sample, 18)):
    calls.clear()
    jax.block_until_ready(fn(counting, sigmas, start(2, dtype=jnp.float32)))
    assert len(calls) == expected, fn.__name__


def test_sigma_grids():
  karras = sigma_samplers.make_sigmas('karras', 18, SIGMA_MIN, SIGMA_MAX, rho=7.0)
  assert karras[0] == pytest.approx(SIGMA_MAX) and karras[-2] == pytest.approx(SIGMA_MIN)
  assert karras[-1] == 0 and np.all(np.diff(karras) < 0)
  # rho = 1 is uniform in sigma; logsnr is uniform in log sigma.
  np.testing.assert_allclose(np.diff(sigma_samplers.karras_sigmas(5, 1.0, 9.0, 1.0)[:-1]), -2)
  logsnr = sigma_samplers.make_sigmas('logsnr', 5, 0.01, 100.0)
  np.testing.assert_allclose(np.log10(logsnr[:-1]), [2, 1, 0, -1, -2], atol=1e-12)
  with pytest.raises(ValueError, match='sigma_min=100'):
    sigma_samplers.make_sigmas('karras', 5, 100.0, 1.0)
  with pytest.raises(ValueError, match='expected at least two, decreasing'):
    sigma_samplers.euler_sample(gaussian_denoiser(), np.array([1.0, 2.0]), start(1))
