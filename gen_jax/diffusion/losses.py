"""The DDPM training losses, per example: the regression loss in the parameterisation the
network predicts (L_simple for eps, Ho et al. 2020), min-SNR-gamma weighting (Hang et al.
2023), and the variational term of L_hybrid (Nichol & Dhariwal 2021)."""

import math

import jax
import jax.numpy as jnp

from gen_jax.diffusion import likelihood
from gen_jax.diffusion import schedules as sch

PREDICTIONS = ('eps', 'x0', 'v')


def target(s: sch.Schedule, prediction: str, x0: jax.Array, t: jax.Array,
           eps: jax.Array) -> jax.Array:
  """What a network predicting `prediction` should output at x_t = q_sample(x0, t, eps):
  eps, x0 or v (Salimans & Ho 2022), [B, ...]."""
  return {'eps': lambda: eps, 'x0': lambda: x0,
          'v': lambda: sch.v_from_eps_x0(s, t, eps, x0)}[prediction]()


def to_eps(s: sch.Schedule, prediction: str, xt: jax.Array, t: jax.Array,
           output: jax.Array) -> jax.Array:
  """The eps that a network output of kind `prediction` implies at (x_t, t), [B, ...]."""
  return {'eps': lambda: output, 'x0': lambda: sch.eps_from_x0(s, xt, t, output),
          'v': lambda: sch.eps_from_v(s, xt, t, output)}[prediction]()


def min_snr_weight(snr: jax.Array, prediction: str, gamma: float) -> jax.Array:
  """Per-example weights [B] for the SNRs [B] of the sampled timesteps: each prediction's
  MSE times its weight is min(SNR, gamma) times the x0-space MSE (Hang et al. 2023); ones
  when gamma is 0. (The eps-MSE is SNR times the x0-MSE, the v-MSE SNR + 1 times.)"""
  if not gamma:
    return jnp.ones_like(snr)
  clipped = jnp.minimum(snr, gamma)
  return {'eps': clipped / snr, 'x0': clipped, 'v': clipped / (snr + 1)}[prediction]


def regression_loss(output: jax.Array, goal: jax.Array, weight: jax.Array) -> jax.Array:
  """weight [B] times the mean squared error of output against goal over each example, [B]."""
  return weight * jnp.mean((output - goal) ** 2, axis=tuple(range(1, output.ndim)))


def vlb_bits_per_dim(s: sch.Schedule, x0: jax.Array, xt: jax.Array, t: jax.Array,
                     eps: jax.Array, v: jax.Array) -> jax.Array:
  """Term t of the variational bound in bits/dim, [B], for p(x_{t-1} | x_t) with the mean
  that `eps` implies and the learned-range variance of the network's output `v`. L_hybrid
  passes a stopped-gradient eps, so that this term trains only the variance."""
  x0_hat = sch.x0_from_eps(s, xt, t, eps)
  mean, _, _ = sch.q_posterior(s, x0_hat, xt, t)
  logvar = sch.learned_range_log_variance(s, t, v)
  num_dims = math.prod(x0.shape[1:])
  return likelihood.vlb_term(s, x0, xt, t, mean, logvar) / (num_dims * math.log(2))
