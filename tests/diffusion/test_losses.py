"""The DDPM losses alone, against closed forms."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.diffusion import losses
from gen_jax.diffusion import schedules as sch

SCHEDULE = sch.get_schedule('cosine', 100)


def _draw(shape=(6, 4, 4, 2)):
  keys = jax.random.split(jax.random.key(0), 4)
  x0 = jnp.clip(jax.random.normal(keys[0], shape) * 0.5, -1, 1)
  eps = jax.random.normal(keys[1], shape)
  t = jax.random.randint(keys[2], (shape[0],), 0, SCHEDULE.num_steps)
  return x0, eps, t, sch.q_sample(SCHEDULE, x0, t, eps), keys[3]


@pytest.mark.parametrize('prediction', losses.PREDICTIONS)
@pytest.mark.parametrize('gamma', [0.0, 5.0])
def test_min_snr_weighted_loss_is_min_snr_times_the_x0_error(prediction, gamma):
  """A network that is wrong by d in x0 space at (x_t, t): each parameterisation's weighted
  loss is min(SNR, gamma) (or SNR with gamma 0, plain eps-MSE) times mean(d^2)."""
  x0, eps, t, xt, key = _draw()
  x0_hat = x0 + 0.1 * jax.random.normal(key, x0.shape)
  eps_hat = sch.eps_from_x0(SCHEDULE, xt, t, x0_hat)  # the same wrong denoiser
  output = {'eps': eps_hat, 'x0': x0_hat, 'v': sch.v_from_eps_x0(SCHEDULE, t, eps_hat, x0_hat)}
  snr = (SCHEDULE.alphas_cumprod / (1 - SCHEDULE.alphas_cumprod))[t]
  weight = losses.min_snr_weight(snr, prediction, gamma)
  got = losses.regression_loss(output[prediction],
                               losses.target(SCHEDULE, prediction, x0, t, eps), weight)
  x0_mse = np.mean(np.asarray(x0_hat - x0, np.float64) ** 2, axis=(1, 2, 3))
  snr = np.asarray(snr, np.float64)
  factor = {'eps': snr, 'x0': np.ones_like(snr), 'v': snr + 1}[prediction]
  want = (np.minimum(snr, gamma) if gamma else factor) * x0_mse
  np.testing.assert_allclose(got, want, rtol=2e-3)


@pytest.mark.parametrize('prediction', losses.PREDICTIONS)
def test_to_eps_inverts_the_target(prediction):
  x0, eps, t, xt, _ = _draw()
  goal = losses.target(SCHEDULE, prediction, x0, t, eps)
  np.testing.assert_allclose(losses.to_eps(SCHEDULE, prediction, xt, t, goal), eps,
                             atol=2e-3 if prediction == 'x0' else 1e-4)


def test_vlb_term_is_the_gaussian_kl_in_bits_per_dim():
  """With v = -1 the learned range is the posterior variance beta~_t, so for t >= 1 the term
  is |mean error|^2 / (2 beta~_t), over D ln 2; it is 0 for the true eps."""
  x0, eps, t, xt, key = _draw()
  t = jnp.maximum(t, 1)
  xt = sch.q_sample(SCHEDULE, x0, t, eps)
  v = -jnp.ones_like(x0)
  np.testing.assert_allclose(losses.vlb_bits_per_dim(SCHEDULE, x0, xt, t, eps, v), 0.0,
                             atol=1e-4)
  eps_hat = eps + 0.2 * jax.random.normal(key, eps.shape)
  got = losses.vlb_bits_per_dim(SCHEDULE, x0, xt, t, eps_hat, v)

  def mean(e):
    return sch.q_posterior(SCHEDULE, sch.x0_from_eps(SCHEDULE, xt, t, e), xt, t)[0]

  error = np.sum(np.asarray(mean(eps_hat) - mean(eps), np.float64) ** 2, axis=(1, 2, 3))
  variance = np.exp(np.asarray(SCHEDULE.posterior_log_variance_clipped, np.float64))[t]
  dims = math.prod(x0.shape[1:])
  np.testing.assert_allclose(got, error / (2 * variance) / (dims * math.log(2)), rtol=1e-3)
