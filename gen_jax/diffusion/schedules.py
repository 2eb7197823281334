"""Noise schedules and the Gaussian forward process of DDPM (Ho et al. 2020).

The `Schedule` fields carry the names of Ho et al.'s reference code
(diffusion_utils_2.py); they are computed in float64 with numpy and stored as float32.
Timesteps are 0-based: t = 0 is the first noising step, alphas_cumprod[t] = prod_{s<=t}
(1 - betas[s]).
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

SCHEDULES = ('linear', 'cosine', 'sigmoid')


def linear_betas(num_steps: int, start: float = 1e-4, end: float = 0.02) -> np.ndarray:
  """Ho et al.: betas evenly spaced from `start` to `end` (1e-4 to 0.02 for T = 1000)."""
  return np.linspace(start, end, num_steps, dtype=np.float64)


def cosine_betas(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
  """Nichol & Dhariwal 2021: alphas_cumprod[t] = f(t + 1) / f(0) with
  f(t) = cos((t / T + s) / (1 + s) * pi / 2)^2, each beta clipped at `max_beta`."""
  f = lambda t: math.cos((t / num_steps + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
  return np.array([min(1 - f(t + 1) / f(t), max_beta) for t in range(num_steps)],
                  dtype=np.float64)


def sigmoid_betas(num_steps: int, start: float = 1e-4, end: float = 0.02,
                  width: float = 6.0) -> np.ndarray:
  """betas = start + (end - start) * sigmoid(linspace(-width, width, T)): the sigmoid
  schedule of GeoDiff (Xu et al. 2022), slow at both ends."""
  x = np.linspace(-width, width, num_steps, dtype=np.float64)
  return start + (end - start) / (1 + np.exp(-x))


class Schedule(NamedTuple):
  """Per-timestep constants, each float32 [T]."""
  betas: jax.Array
  alphas_cumprod: jax.Array
  alphas_cumprod_prev: jax.Array
  sqrt_alphas_cumprod: jax.Array
  sqrt_one_minus_alphas_cumprod: jax.Array
  sqrt_recip_alphas_cumprod: jax.Array
  sqrt_recipm1_alphas_cumprod: jax.Array
  posterior_variance: jax.Array
  posterior_log_variance_clipped: jax.Array
  posterior_mean_coef1: jax.Array
  posterior_mean_coef2: jax.Array

  @property
  def num_steps(self) -> int:
    return self.betas.shape[0]


def make_schedule(betas: np.ndarray) -> Schedule:
  """All constants of the forward process and its posterior from betas [T] (float64 maths)."""
  betas = np.asarray(betas, np.float64)
  if betas.ndim != 1 or np.any(betas <= 0) or np.any(betas >= 1):
    raise ValueError(f'betas must be a vector in (0, 1), got shape {betas.shape}, '
                     f'range [{betas.min()}, {betas.max()}]')
  alphas_cumprod = np.cumprod(1.0 - betas)
  prev = np.append(1.0, alphas_cumprod[:-1])
  posterior_variance = betas * (1.0 - prev) / (1.0 - alphas_cumprod)
  values = dict(
      betas=betas, alphas_cumprod=alphas_cumprod, alphas_cumprod_prev=prev,
      sqrt_alphas_cumprod=np.sqrt(alphas_cumprod),
      sqrt_one_minus_alphas_cumprod=np.sqrt(1.0 - alphas_cumprod),
      sqrt_recip_alphas_cumprod=np.sqrt(1.0 / alphas_cumprod),
      sqrt_recipm1_alphas_cumprod=np.sqrt(1.0 / alphas_cumprod - 1.0),
      posterior_variance=posterior_variance,
      # The variance is 0 at t = 0; the log is clipped to its value at t = 1.
      posterior_log_variance_clipped=np.log(np.append(posterior_variance[1],
                                                      posterior_variance[1:])),
      posterior_mean_coef1=betas * np.sqrt(prev) / (1.0 - alphas_cumprod),
      posterior_mean_coef2=(1.0 - prev) * np.sqrt(1.0 - betas) / (1.0 - alphas_cumprod))
  return Schedule(**{k: jnp.asarray(v, jnp.float32) for k, v in values.items()})


def get_schedule(name: str, num_steps: int) -> Schedule:
  """The schedule `name` (one of SCHEDULES) with `num_steps` steps."""
  makers = {'linear': linear_betas, 'cosine': cosine_betas, 'sigmoid': sigmoid_betas}
  if name not in makers:
    raise ValueError(f'schedule {name!r}: expected one of {SCHEDULES}')
  return make_schedule(makers[name](num_steps))


def _at(values: jax.Array, t: jax.Array, x: jax.Array) -> jax.Array:
  """values[t] [B] broadcast against x [B, ...]."""
  return values[t].reshape(t.shape + (1,) * (x.ndim - t.ndim))


def q_sample(s: Schedule, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
  """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise, for x0, noise [B, ...] and t [B]."""
  return _at(s.sqrt_alphas_cumprod, t, x0) * x0 + _at(s.sqrt_one_minus_alphas_cumprod, t,
                                                      x0) * noise


def q_posterior(s: Schedule, x0: jax.Array, xt: jax.Array, t: jax.Array
                ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x_0), each like x0."""
  mean = _at(s.posterior_mean_coef1, t, x0) * x0 + _at(s.posterior_mean_coef2, t, x0) * xt
  ones = jnp.ones_like(x0)
  return (mean, _at(s.posterior_variance, t, x0) * ones,
          _at(s.posterior_log_variance_clipped, t, x0) * ones)


def x0_from_eps(s: Schedule, xt: jax.Array, t: jax.Array, eps: jax.Array) -> jax.Array:
  return _at(s.sqrt_recip_alphas_cumprod, t, xt) * xt - _at(s.sqrt_recipm1_alphas_cumprod,
                                                            t, xt) * eps


def eps_from_x0(s: Schedule, xt: jax.Array, t: jax.Array, x0: jax.Array) -> jax.Array:
  return (_at(s.sqrt_recip_alphas_cumprod, t, xt) * xt - x0) / _at(
      s.sqrt_recipm1_alphas_cumprod, t, xt)


def v_from_eps_x0(s: Schedule, t: jax.Array, eps: jax.Array, x0: jax.Array) -> jax.Array:
  """v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0 (Salimans & Ho 2022)."""
  return _at(s.sqrt_alphas_cumprod, t, x0) * eps - _at(s.sqrt_one_minus_alphas_cumprod, t,
                                                       x0) * x0


def x0_from_v(s: Schedule, xt: jax.Array, t: jax.Array, v: jax.Array) -> jax.Array:
  return _at(s.sqrt_alphas_cumprod, t, xt) * xt - _at(s.sqrt_one_minus_alphas_cumprod, t,
                                                      xt) * v


def eps_from_v(s: Schedule, xt: jax.Array, t: jax.Array, v: jax.Array) -> jax.Array:
  return _at(s.sqrt_one_minus_alphas_cumprod, t, xt) * xt + _at(s.sqrt_alphas_cumprod, t,
                                                                xt) * v


VARIANCES = ('small', 'large')


def fixed_log_variance(s: Schedule, variance: str) -> jax.Array:
  """log var of p(x_{t-1} | x_t) for each t, [T]: 'small' is the posterior variance beta~_t
  (log clipped at t = 0), 'large' is beta_t with beta~_1 at t = 0, as in the reference code."""
  if variance == 'small':
    return s.posterior_log_variance_clipped
  if variance == 'large':
    return jnp.log(jnp.append(s.posterior_variance[1], s.betas[1:]))
  raise ValueError(f'variance {variance!r}: expected one of {VARIANCES}')


def learned_range_log_variance(s: Schedule, t: jax.Array, v: jax.Array) -> jax.Array:
  """Nichol & Dhariwal's (2021) learned range: log var = f log beta_t + (1 - f) log beta~_t
  with f = (v + 1) / 2, for the network's raw output v [B, ...] and t [B]."""
  frac = (v + 1) / 2
  return (frac * _at(jnp.log(s.betas), t, v)
          + (1 - frac) * _at(s.posterior_log_variance_clipped, t, v))
