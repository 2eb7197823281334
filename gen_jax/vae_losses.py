"""The VAE's objectives per example, in nats, from the decoder's log-likelihoods and the
diagonal-Gaussian posterior q(z | x) = N(mean, exp(logvar)) with an N(0, I) prior: the
(beta-weighted) negative ELBO (Kingma & Welling 2014; Higgins et al. 2017) and the
importance-weighted bound on -log p(x) (Burda et al. 2016)."""

import math

import jax
import jax.numpy as jnp

from gen_jax import distributions


def elbo_terms(log_px: jax.Array, mean: jax.Array, logvar: jax.Array) -> dict[str, jax.Array]:
  """{'recon': -log p(x | z), 'kl': KL(q(z | x) || p(z)), 'elbo': their difference}, each [B],
  for log p(x | z) [B] at one z ~ q(z | x) and the posterior's mean, logvar [B, L]."""
  kl = distributions.kl_to_standard_normal(mean, logvar).sum(axis=-1)
  return {'recon': -log_px, 'kl': kl, 'elbo': log_px - kl}


def beta_loss(terms: dict[str, jax.Array], beta: float) -> jax.Array:
  """The beta-VAE objective recon + beta * KL, [B]; beta = 1 is the negative ELBO."""
  return terms['recon'] + beta * terms['kl']


def importance_log_weights(log_px: jax.Array, z: jax.Array, mean: jax.Array,
                           logvar: jax.Array) -> jax.Array:
  """log p(x | z_k) + log p(z_k) - log q(z_k | x), [B, K], for log p(x | z_k) [B, K], the
  latents z [B, K, L] and the posterior's mean, logvar [B, L]."""
  log_pz = distributions.gaussian_log_density(z, 0.0, 0.0).sum(-1)
  log_qz = distributions.gaussian_log_density(z, mean[:, None], logvar[:, None]).sum(-1)
  return log_px + log_pz - log_qz


def importance_weighted_nll(log_weights: jax.Array) -> jax.Array:
  """-log (1/K sum_k w_k) for log-weights [B, K]: an upper bound on -log p(x), [B], that
  tightens as K grows."""
  return -(jax.nn.logsumexp(log_weights, axis=-1) - math.log(log_weights.shape[-1]))


def reparameterize(mean: jax.Array, logvar: jax.Array, eps: jax.Array) -> jax.Array:
  """z = mean + exp(logvar / 2) * eps, broadcasting mean and logvar over eps's leading axes."""
  return mean + jnp.exp(0.5 * logvar) * eps
