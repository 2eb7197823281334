"""Samplers against ground truth: for Gaussian data N(mu, sigma^2) the optimal noise
predictor is known in closed form, so the samplers must reproduce mu and sigma."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.diffusion import samplers
from gen_jax.diffusion.schedules import get_schedule

MU, SIGMA, N = 0.4, 0.3, 20000


def optimal_eps(s):
  """E[eps | x_t] for x_0 ~ N(MU, SIGMA^2): sqrt(1 - abar) (x_t - sqrt(abar) MU) / Var[x_t]."""
  def eps_fn(x, t):
    abar = s.alphas_cumprod[t].reshape(-1, *([1] * (x.ndim - 1)))
    return jnp.sqrt(1 - abar) * (x - jnp.sqrt(abar) * MU) / (abar * SIGMA ** 2 + 1 - abar)
  return eps_fn


def keys(n=N):
  return jax.vmap(lambda i: jax.random.fold_in(jax.random.key(0), i))(jnp.arange(n))


def exact_moments(betas, pairs, step_noise_var, eta=None):
  """Mean and variance of the sampler's output, propagated exactly (float64): with the
  optimal predictor every step is affine in x, x' = a (x - sqrt(abar) MU) + c + noise.

  pairs: (t, t_prev) in the order visited; step_noise_var(t, t_prev) -> the added variance.
  """
  abar = np.cumprod(1 - np.asarray(betas, np.float64))
  mean, var = 0.0, 1.0  # x_T ~ N(0, 1)
  for t, t_prev in pairs:
    ab, abp = abar[t], (abar[t_prev] if t_prev >= 0 else 1.0)
    v_t = ab * SIGMA ** 2 + 1 - ab
    c_x0, c_eps = np.sqrt(ab) * SIGMA ** 2 / v_t, np.sqrt(1 - ab) / v_t
    if eta is None:  # DDPM: posterior mean of (x0_hat, x)
      coef1 = betas[t] * np.sqrt(abp) / (1 - ab)
      coef2 = (1 - abp) * np.sqrt(1 - betas[t]) / (1 - ab)
      a, c = coef1 * c_x0 + coef2, coef1 * MU + coef2 * np.sqrt(ab) * MU
    else:
      sigma2 = eta ** 2 * (1 - abp) / (1 - ab) * (1 - ab / abp)
      a = np.sqrt(abp) * c_x0 + np.sqrt(1 - abp - sigma2) * c_eps
      c = np.sqrt(abp) * MU
    mean, var = c + a * (mean - np.sqrt(ab) * MU), a ** 2 * var + step_noise_var(t, t_prev)
  return mean, var


def assert_moments(x, mean, var):
  """Sample moments of N draws equal (mean, var) within 4 standard errors."""
  assert float(jnp.mean(x)) == pytest.approx(mean, abs=4 * np.sqrt(var / N))
  assert float(jnp.var(x)) == pytest.approx(var, abs=4 * var * np.sqrt(2 / N))


def exact_variance(s):
  """A ModelFn with the optimal eps and the true reverse variance of Gaussian data,
  beta~_t + coef1^2 Var[x_0 | x_t], as a learned variance would give it (log, [B, 1])."""
  def model_fn(x, t):
    ab = s.alphas_cumprod[t][:, None]
    x0_var = SIGMA ** 2 * (1 - ab) / (ab * SIGMA ** 2 + 1 - ab)
    var = s.posterior_variance[t][:, None] + s.posterior_mean_coef1[t][:, None] ** 2 * x0_var
    return optimal_eps(s)(x, t), jnp.log(var)
  return model_fn


@pytest.mark.parametrize('variance', ['small', 'large', 'exact'])
def test_ddpm_reproduces_the_gaussian(variance):
  s = get_schedule('linear', 1000)
  model_fn = (exact_variance(s) if variance == 'exact'
              else samplers.with_fixed_variance(optimal_eps(s), s, variance))
  x = jax.jit(lambda k: samplers.ddpm_sample(model_fn, s, k, (1,), clip=False))(keys())
  betas = np.linspace(1e-4, 0.02, 1000)
  abar = np.cumprod(1 - betas)
  abar_prev = np.append(1.0, abar[:-1])
  small = np.append(0.0, betas[1:] * (1 - abar[:-1]) / (1 - abar[1:]))
  x0_var = SIGMA ** 2 * (1 - abar) / (abar * SIGMA ** 2 + 1 - abar)
  exact = small + (betas * np.sqrt(abar_prev) / (1 - abar)) ** 2 * x0_var
  noise = {'small': small, 'large': np.append(0.0, betas[1:]), 'exact': exact}[variance]
  noise[0] = 0.0  # the last step adds no noise
  mean, var = exact_moments(betas, [(t, t - 1) for t in range(999, -1, -1)],
                            lambda t, _: noise[t])
  assert_moments(x, mean, var)
  # The true reverse step has a variance between beta~_t and beta_t (Ho et al. sec. 3.2),
  # so fixed-small under-disperses a little and fixed-large over-disperses; the exact
  # (learnable) variance gives the data's.
  assert mean == pytest.approx(MU, abs=1e-3)
  if variance == 'small':
    assert 0.97 * SIGMA ** 2 < var < SIGMA ** 2
  elif variance == 'large':
    assert SIGMA ** 2 < var < 1.1 * SIGMA ** 2
  else:  # short only by Var[x_0 | x_1] ~ 1e-4: the last step returns the decoder's mean
    assert var == pytest.approx(SIGMA ** 2 - x0_var[0], rel=1e-4)


@pytest.mark.parametrize('eta', [0.0, 1.0])
@pytest.mark.parametrize('steps', [10, 50, 1000])
def test_ddim_matches_its_exact_moments_and_converges(eta, steps):
  s = get_schedule('linear', 1000)
  ts = samplers.timesteps(1000, steps, 'uniform')
  x = jax.jit(lambda k: samplers.ddim_sample(optimal_eps(s), s, k, (1,), ts, eta,
                                             clip=False))(keys())
  betas = np.linspace(1e-4, 0.02, 1000)
  abar = np.cumprod(1 - betas)
  pairs = list(zip(ts[::-1], np.append(-1, ts[:-1])[::-1]))

  def noise(t, t_prev):
    abp = abar[t_prev] if t_prev >= 0 else 1.0
    return eta ** 2 * (1 - abp) / (1 - abar[t]) * (1 - abar[t] / abp)

  mean, var = exact_moments(betas, pairs, noise, eta)
  assert_moments(x, mean, var)
  # Big strides shrink the variance; with all 1000 steps eta = 0 follows the ODE closely
  # and eta = 1 is DDPM with the small variance (3% under, as above).
  assert mean == pytest.approx(MU, abs=0.01)
  assert abs(var / SIGMA ** 2 - 1) < {10: 0.7, 50: 0.3, 1000: 0.01 + 0.02 * eta}[steps]


def test_each_step_goes_to_the_previous_timestep():
  """Record the (t, t_prev) pairs the DDIM loop uses through an eps_fn that logs t."""
  s = get_schedule('linear', 1000)
  seen = []
  eps_fn = lambda x, t: (jax.debug.callback(lambda t: seen.append(int(t[0])), t),  # noqa: E731
                         jnp.zeros_like(x))[1]
  ts = samplers.timesteps(1000, 10, 'trailing')
  samplers.ddim_sample(eps_fn, s, keys(2), (1,), ts)
  assert seen == list(ts[::-1])
  assert list(ts) == [99, 199, 299, 399, 499, 599, 699, 799, 899, 999]
  assert list(samplers.timesteps(1000, 10, 'uniform')) == list(range(0, 1000, 100))
  quadratic = samplers.timesteps(1000, 5, 'quadratic')
  assert list(quadratic) == [0, 50, 200, 450, 800]
  with pytest.raises(ValueError, match='expected 1 to 1000'):
    samplers.timesteps(1000, 0, 'uniform')


def test_samples_do_not_depend_on_the_batch():
  s = get_schedule('cosine', 50)
  ks = keys(6)
  ts = samplers.timesteps(50, 10, 'uniform')
  whole = samplers.ddim_sample(optimal_eps(s), s, ks, (2,), ts, eta=1.0)
  part = samplers.ddim_sample(optimal_eps(s), s, ks[3:], (2,), ts, eta=1.0)
  np.testing.assert_allclose(whole[3:], part, rtol=1e-6)
