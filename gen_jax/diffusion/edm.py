"""The EDM formulation (Karras et al. 2022, Table 1): a network F becomes the denoiser
D(x, sigma) = c_skip x + c_out F(c_in x, c_noise), trained at log-normal noise levels,
ln sigma ~ N(P_mean, P_std^2), with the weight lambda(sigma) = 1 / c_out^2 that gives F's
inputs and targets unit variance; and EDM's VPPrecond for discrete-time eps-prediction
models, so that a DDPM checkpoint runs under the samplers of `sigma_samplers`.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gen_jax.diffusion.schedules import Schedule
from gen_jax.diffusion.sigma_samplers import DenoiseFn

# (c_in x [B, ...], c_noise [B]) -> F's output [B, ...]
NetworkFn = Callable[[jax.Array, jax.Array], jax.Array]
# (x_t [B, ...], t [B], fractional timesteps allowed) -> the network's eps, x0 or v [B, ...]
PredictionFn = Callable[[jax.Array, jax.Array], jax.Array]


class Preconditioning(NamedTuple):
  """EDM's scalings at noise levels sigma [B], each [B]."""
  c_skip: jax.Array
  c_out: jax.Array
  c_in: jax.Array
  c_noise: jax.Array


def preconditioning(sigma: jax.Array, sigma_data: float) -> Preconditioning:
  """c_skip = sd^2 / (sigma^2 + sd^2), c_out = sigma sd / sqrt(sigma^2 + sd^2),
  c_in = 1 / sqrt(sigma^2 + sd^2), c_noise = ln(sigma) / 4 for data std sd."""
  total = sigma ** 2 + sigma_data ** 2
  return Preconditioning(sigma_data ** 2 / total, sigma * sigma_data * jax.lax.rsqrt(total),
                         jax.lax.rsqrt(total), jnp.log(sigma) / 4)


def loss_weight(sigma: jax.Array, sigma_data: float) -> jax.Array:
  """lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2, [B]."""
  return (sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data) ** 2


def _per_example(values: jax.Array, x: jax.Array) -> jax.Array:
  return values.reshape(values.shape + (1,) * (x.ndim - values.ndim))


def denoise(network_fn: NetworkFn, x: jax.Array, sigma: jax.Array,
            sigma_data: float) -> jax.Array:
  """D(x, sigma) = c_skip x + c_out F(c_in x, c_noise), [B, ...] for x [B, ...], sigma [B]."""
  c = preconditioning(sigma, sigma_data)
  out = network_fn(_per_example(c.c_in, x) * x, c.c_noise)
  return _per_example(c.c_skip, x) * x + _per_example(c.c_out, x) * out


def training_sigmas(keys: jax.Array, p_mean: float, p_std: float) -> jax.Array:
  """ln sigma ~ N(P_mean, P_std^2), each from its example's key [B] (stream 0): [B]."""
  return jnp.exp(p_mean + p_std * jax.vmap(
      lambda k: jax.random.normal(jax.random.fold_in(k, 0)))(keys))


def vp_sigmas(s: Schedule) -> jax.Array:
  """The noise level of each timestep of a variance-preserving schedule, x_t / sqrt(abar_t)
  = x0 + sigma_t eps: sigma_t = sqrt((1 - abar_t) / abar_t), increasing, [T]."""
  return jnp.sqrt((1 - s.alphas_cumprod) / s.alphas_cumprod)


def vp_timestep(s: Schedule, sigma: jax.Array) -> jax.Array:
  """The fractional timestep of noise levels sigma [B]: log sigma interpolated linearly
  between the schedule's timesteps (k-diffusion's discrete-schedule wrapper), [B]."""
  return jnp.interp(jnp.log(sigma), jnp.log(vp_sigmas(s)),
                    jnp.arange(s.num_steps, dtype=jnp.float32))


def vp_denoiser(predict_fn: PredictionFn, s: Schedule, prediction: str = 'eps') -> DenoiseFn:
  """EDM's VPPrecond for a model trained in discrete time: the network sees x_t = alpha x
  at the fractional timestep t(sigma), with alpha = 1 / sqrt(1 + sigma^2) = sqrt(abar), and
  D(x, sigma) = x - sigma eps for an eps-prediction (c_skip = 1, c_out = -sigma), the
  prediction itself for x0, alpha x_t - sigma alpha v for v (Salimans & Ho 2022); for
  sigma within the schedule's range [sigma_0, sigma_{T-1}]."""
  def denoise_fn(x, sigma):
    alpha = _per_example(jax.lax.rsqrt(1 + sigma ** 2), x)
    xt = alpha * x
    out = predict_fn(xt, vp_timestep(s, sigma))
    sigma = _per_example(sigma, x)
    return {'eps': lambda: x - sigma * out, 'x0': lambda: out,
            'v': lambda: alpha * xt - sigma * alpha * out}[prediction]()
  return denoise_fn
