"""Log-densities and KL divergences in nats, elementwise (sum over axes at the call site)."""

import jax
import jax.numpy as jnp
import numpy as np


def gaussian_log_density(x: jax.Array, mean: jax.Array, logvar: jax.Array) -> jax.Array:
  """log N(x; mean, exp(logvar)), elementwise."""
  return -0.5 * (np.log(2 * np.pi) + logvar + (x - mean) ** 2 * jnp.exp(-logvar))


def gaussian_kl(mean1: jax.Array, logvar1: jax.Array, mean2: jax.Array,
                logvar2: jax.Array) -> jax.Array:
  """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))), elementwise."""
  return 0.5 * (logvar2 - logvar1 - 1.0 + jnp.exp(logvar1 - logvar2)
                + (mean1 - mean2) ** 2 * jnp.exp(-logvar2))


def kl_to_standard_normal(mean: jax.Array, logvar: jax.Array) -> jax.Array:
  """KL(N(mean, exp(logvar)) || N(0, 1)), elementwise."""
  return gaussian_kl(mean, logvar, 0.0, 0.0)


def _log_sub_exp(a: jax.Array, b: jax.Array) -> jax.Array:
  """log(exp(a) - exp(b)) for a >= b."""
  return a + jnp.log(-jnp.expm1(b - a))


def discretized_gaussian_log_likelihood(x: jax.Array, mean: jax.Array, log_scale: jax.Array,
                                        num_bins: int = 256) -> jax.Array:
  """log P(x) of N(mean, exp(log_scale)^2) discretized into `num_bins` bins on [-1, 1]
  (Ho et al.'s decoder); the edge bins take the tails. Elementwise.

  A bin's mass Phi(a) - Phi(b) is taken in log space from the side of the smaller tail, so
  it stays accurate far from the mean.
  """
  half_bin = 1.0 / (num_bins - 1)
  inv_scale = jnp.exp(-log_scale)
  upper = inv_scale * (x - mean + half_bin)
  lower = inv_scale * (x - mean - half_bin)
  log_ndtr = jax.scipy.special.log_ndtr
  log_mass = jnp.where(lower > 0, _log_sub_exp(log_ndtr(-lower), log_ndtr(-upper)),
                       _log_sub_exp(log_ndtr(upper), log_ndtr(lower)))
  edge = 1.0 - half_bin
  return jnp.where(x < -edge, log_ndtr(upper), jnp.where(x > edge, log_ndtr(-lower), log_mass))


def bernoulli_log_likelihood(x01: jax.Array, logits: jax.Array) -> jax.Array:
  """log Bernoulli(x01; sigmoid(logits)) for x01 in {0, 1}, elementwise."""
  return x01 * logits - jax.nn.softplus(logits)


def discretized_logistic_log_likelihood(x: jax.Array, mean: jax.Array, log_scale: jax.Array,
                                        num_bins: int = 256) -> jax.Array:
  """log P(x) of a logistic(mean, exp(log_scale)) discretized into `num_bins` bins on [-1, 1].

  `x` holds bin centres -1 + 2k / (num_bins - 1). The edge bins take the tails (-inf, ...]
  and [..., inf), so the probabilities of all bins sum to one. The middle bins use
  log(sigmoid(a) - sigmoid(b)) = a - softplus(a) - softplus(b) + log(1 - exp(b - a)),
  which stays accurate in the tails. Elementwise.
  """
  half_bin = 1.0 / (num_bins - 1)
  inv_scale = jnp.exp(-log_scale)
  upper = inv_scale * (x - mean + half_bin)
  lower = inv_scale * (x - mean - half_bin)
  log_cdf_upper = upper - jax.nn.softplus(upper)
  log_sf_lower = -jax.nn.softplus(lower)
  log_mass = (upper - jax.nn.softplus(upper) - jax.nn.softplus(lower)
              + jnp.log(-jnp.expm1(lower - upper)))
  edge = 1.0 - half_bin
  return jnp.where(x < -edge, log_cdf_upper, jnp.where(x > edge, log_sf_lower, log_mass))
