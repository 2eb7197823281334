"""The variational bound of a diffusion model (Ho et al. 2020, eq. 5), in nats per example.

L = KL(q(x_T | x_0) || N(0, I)) + sum_{t >= 1} KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))
    - log p(x_0 | x_1),
with p(x_0 | x_1) a Gaussian discretized to the 256 levels of the data. Every timestep's
term is computed (no sampling of t), one x_t per term.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

from gen_jax import distributions
from gen_jax.diffusion.schedules import Schedule, q_posterior, q_sample

# (x_t [B, ...], t [B]) -> mean and log-variance of p(x_{t-1} | x_t), each [B, ...]
MeanLogVarFn = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


def _sum(x: jax.Array) -> jax.Array:
  return x.reshape(x.shape[0], -1).sum(axis=1)


def prior_kl(s: Schedule, x0: jax.Array) -> jax.Array:
  """KL(q(x_T | x_0) || N(0, I)) per example, [B]."""
  t = jnp.full((x0.shape[0],), s.num_steps - 1)
  mean = s.sqrt_alphas_cumprod[t].reshape(-1, *[1] * (x0.ndim - 1)) * x0
  logvar = jnp.log(1.0 - s.alphas_cumprod[-1]) * jnp.ones_like(x0)
  return _sum(distributions.kl_to_standard_normal(mean, logvar))


def vlb_term(s: Schedule, x0: jax.Array, xt: jax.Array, t: jax.Array, mean: jax.Array,
             logvar: jax.Array) -> jax.Array:
  """Term t of the bound per example, [B] nats: the decoder NLL -log p(x_0 | x_1) where
  t = 0, else KL(q(x_{t-1} | x_t, x_0) || N(mean, exp(logvar))). x0, xt, mean, logvar
  [B, ...]; t [B]."""
  true_mean, _, true_logvar = q_posterior(s, x0, xt, t)
  kl = _sum(distributions.gaussian_kl(true_mean, true_logvar, mean, logvar))
  # The decoder term is computed for every example; where t > 0 it gets a harmless N(x0, 1)
  # so that its unused value cannot put a NaN into the gradient through the `where`.
  first = (t == 0).reshape(t.shape + (1,) * (x0.ndim - 1))
  decoder_nll = -_sum(distributions.discretized_gaussian_log_likelihood(
      x0, jnp.where(first, mean, x0), 0.5 * jnp.where(first, logvar, 0.0)))
  return jnp.where(t == 0, decoder_nll, kl)


def vlb_terms(s: Schedule, model: MeanLogVarFn, x0: jax.Array, keys: jax.Array
              ) -> tuple[jax.Array, jax.Array]:
  """Returns (terms [B, T]: term t is the decoder NLL at t = 0 and the KL at t >= 1,
  prior KL [B]); all in nats. x0 [B, ...] in [-1, 1] on the 256-level grid; keys [B]."""

  def term(_, t):
    tb = jnp.full((x0.shape[0],), t)
    noise = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, t), x0.shape[1:]))(keys)
    xt = q_sample(s, x0, tb, noise)
    return None, vlb_term(s, x0, xt, tb, *model(xt, tb))

  _, terms = jax.lax.scan(term, None, jnp.arange(s.num_steps))
  return terms.T, prior_kl(s, x0)


def nll_bound(s: Schedule, model: MeanLogVarFn, x0: jax.Array, keys: jax.Array) -> jax.Array:
  """The whole bound on -log p(x_0), nats per example [B]."""
  terms, prior = vlb_terms(s, model, x0, keys)
  return terms.sum(axis=1) + prior
