"""The variational bound against the true NLL of Gaussian data.

For x_0 ~ N(MU, SIGMA^2) the true reverse step q(x_{t-1} | x_t) is Gaussian in closed form.
A model that uses it exactly has p(x_{0:T}) = q(x_{0:T}) (up to the prior's mismatch), so its
bound equals the true discretized NLL up to the prior KL and the decoder's discretization;
the usual fixed-small variance gives a looser bound."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from gen_jax.diffusion import likelihood
from gen_jax.diffusion.schedules import get_schedule

MU, SIGMA, N = 0.1, 0.2, 2000


def exact_reverse(s, learned_variance: bool):
  """p(x_{t-1} | x_t) = q(x_{t-1} | x_t): the posterior mean of E[x_0 | x_t], and the
  posterior variance plus coef1^2 Var[x_0 | x_t] (or the posterior variance alone)."""
  def model(xt, t):
    ab = s.alphas_cumprod[t][:, None]
    v_t = ab * SIGMA ** 2 + 1 - ab
    x0_mean = MU + jnp.sqrt(ab) * SIGMA ** 2 / v_t * (xt - jnp.sqrt(ab) * MU)
    x0_var = SIGMA ** 2 * (1 - ab) / v_t
    coef1, coef2 = s.posterior_mean_coef1[t][:, None], s.posterior_mean_coef2[t][:, None]
    if learned_variance:
      var = s.posterior_variance[t][:, None] + coef1 ** 2 * x0_var
    else:  # Ho et al.'s fixed-small variance, log clipped at t = 0
      var = jnp.exp(s.posterior_log_variance_clipped[t])[:, None]
    return coef1 * x0_mean + coef2 * xt, jnp.log(var)
  return model


def data():
  x = np.random.default_rng(0).normal(MU, SIGMA, (N, 1))
  return jnp.asarray(np.clip(np.round((x + 1) * 127.5) / 127.5 - 1, -1, 1), jnp.float32)


def true_nll(x0):
  """-log P(bin of x_0) under N(MU, SIGMA^2), edge bins taking the tails: [N]."""
  dist = stats.norm(MU, SIGMA)
  x = np.asarray(x0, np.float64)[:, 0]
  upper = np.where(x > 0.999, np.inf, x + 1 / 255)
  lower = np.where(x < -0.999, -np.inf, x - 1 / 255)
  return -np.log(dist.cdf(upper) - dist.cdf(lower))


def test_bound_of_the_exact_reverse_process_is_the_true_nll():
  s = get_schedule('linear', 1000)
  x0 = data()
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(1), i))(jnp.arange(N))
  bound = jax.jit(lambda x, k: likelihood.nll_bound(s, exact_reverse(s, True), x, k))(x0, keys)
  prior = likelihood.prior_kl(s, x0)
  truth = true_nll(x0)
  # Per example the terms are single-sample estimates; their mean is the bound in expectation.
  gap = float(jnp.mean(bound)) - float(np.mean(truth))
  assert float(jnp.mean(prior)) < 1e-4
  assert abs(gap) < 0.02, f'bound {float(jnp.mean(bound)):.4f} vs true NLL {np.mean(truth):.4f}'

  loose = jax.jit(lambda x, k: likelihood.nll_bound(s, exact_reverse(s, False), x, k))(x0, keys)
  assert float(jnp.mean(loose)) > float(jnp.mean(bound)) + 0.02


def test_terms_are_kls_and_a_decoder_nll():
  s = get_schedule('cosine', 20)
  x0 = data()[:8]
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(2), i))(jnp.arange(8))
  terms, prior = likelihood.vlb_terms(s, exact_reverse(s, True), x0, keys)
  assert terms.shape == (8, 20) and prior.shape == (8,)
  assert bool(jnp.all(terms[:, 1:] >= -1e-6))  # KLs
  assert bool(jnp.all(terms[:, 0] > 0))  # -log of a probability below 1
  np.testing.assert_allclose(likelihood.nll_bound(s, exact_reverse(s, True), x0, keys),
                             terms.sum(1) + prior, rtol=1e-6)
