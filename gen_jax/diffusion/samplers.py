"""DDPM ancestral and DDIM samplers, each one compiled `lax.scan` over the timesteps.

`eps_fn(x_t [B, ...], t [B]) -> predicted noise [B, ...]`; the DDPM sampler takes a `ModelFn`
that also gives the reverse log-variance. Every sample has its own key:
its start x_T and the noise of each step come from fold_in(key, t), so a sample does not
depend on its batch or on the number of devices.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax.diffusion.schedules import Schedule, fixed_log_variance, x0_from_eps

EpsFn = Callable[[jax.Array, jax.Array], jax.Array]
# (x_t, t) -> (predicted noise, log-variance of p(x_{t-1} | x_t)), each [B, ...]
ModelFn = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]
SPACINGS = ('uniform', 'trailing', 'quadratic')


def example_noise(keys: jax.Array, step: jax.Array | int, shape: tuple[int, ...]) -> jax.Array:
  """Standard normal noise [B, *shape], sample b's from fold_in(keys[b], step)."""
  return jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, step), shape))(keys)


def _maybe_clip(x0: jax.Array, clip: bool) -> jax.Array:
  return jnp.clip(x0, -1.0, 1.0) if clip else x0


def with_fixed_variance(eps_fn: EpsFn, s: Schedule, variance: str) -> ModelFn:
  """An eps_fn with the fixed 'small' or 'large' reverse variance, as a ModelFn."""
  log_var = fixed_log_variance(s, variance)
  return lambda x, t: (eps_fn(x, t), log_var[t].reshape(t.shape + (1,) * (x.ndim - 1)))


def ddpm_sample(model_fn: ModelFn, s: Schedule, keys: jax.Array, shape: tuple[int, ...],
                clip: bool = True) -> jax.Array:
  """Ancestral sampling through all T steps: x_{t-1} ~ N(mu(x_t, x0_hat), exp(log_var)), with
  the variance the model gives (fixed with `with_fixed_variance`, or learned).
  Returns x_0 [B, *shape]."""
  t_max = s.num_steps

  def step(x, t):
    tb = jnp.full((x.shape[0],), t)
    eps, log_var = model_fn(x, tb)
    x0 = _maybe_clip(x0_from_eps(s, x, tb, eps), clip)
    mean = s.posterior_mean_coef1[t] * x0 + s.posterior_mean_coef2[t] * x
    noise = jnp.where(t > 0, jnp.exp(0.5 * log_var), 0.0) * example_noise(keys, t, shape)
    return mean + noise, None

  x_t = example_noise(keys, t_max, shape)
  x0, _ = jax.lax.scan(step, x_t, jnp.arange(t_max - 1, -1, -1))
  return x0


def timesteps(num_train_steps: int, num_steps: int, spacing: str) -> np.ndarray:
  """The `num_steps` timesteps a strided sampler visits, ascending, in [0, T).

  uniform: 0, T/S, 2T/S, ... (DDIM's linear selection); trailing: ..., T-1 (Lin et al. 2023,
  ending at the last timestep); quadratic: (i * sqrt(0.8 T) / (S-1))^2 (DDIM on CIFAR-10).
  """
  t, n = num_train_steps, num_steps
  if not 1 <= n <= t:
    raise ValueError(f'sample.steps={n}: expected 1 to {t}')
  if spacing == 'uniform':
    out = np.arange(n) * t // n
  elif spacing == 'trailing':
    out = np.round(np.arange(t, 0, -t / n)).astype(np.int64)[::-1] - 1
  elif spacing == 'quadratic':
    out = (np.linspace(0, np.sqrt(t * 0.8), n) ** 2).astype(np.int64)
  else:
    raise ValueError(f'sample.spacing={spacing!r}: expected one of {SPACINGS}')
  if len(np.unique(out)) != n:
    raise ValueError(f'{spacing} spacing of {n} steps over {t} repeats timesteps')
  return out


def ddim_sample(eps_fn: EpsFn, s: Schedule, keys: jax.Array, shape: tuple[int, ...],
                steps: np.ndarray, eta: float = 0.0, clip: bool = True) -> jax.Array:
  """DDIM (Song et al. 2021) over the ascending timesteps `steps`, visited in reverse; each
  step goes from steps[i] to steps[i - 1] (to 'before 0', alphas_cumprod = 1, at i = 0).
  eta = 0: deterministic; eta = 1: the DDPM posterior variance. Returns x_0 [B, *shape]."""
  steps = jnp.asarray(steps)
  prev_steps = jnp.concatenate([jnp.array([-1]), steps[:-1]])

  def step(x, ts):
    t, t_prev = ts
    tb = jnp.full((x.shape[0],), t)
    eps = eps_fn(x, tb)
    x0 = _maybe_clip(x0_from_eps(s, x, tb, eps), clip)
    if clip:  # the noise direction consistent with the clipped x0
      eps = (x - jnp.sqrt(s.alphas_cumprod[t]) * x0) / jnp.sqrt(1 - s.alphas_cumprod[t])
    abar, abar_prev = s.alphas_cumprod[t], jnp.where(t_prev >= 0, s.alphas_cumprod[t_prev], 1.0)
    sigma = eta * jnp.sqrt((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev))
    x = (jnp.sqrt(abar_prev) * x0 + jnp.sqrt(jnp.maximum(1 - abar_prev - sigma ** 2, 0)) * eps
         + sigma * example_noise(keys, t, shape))
    return x, None

  x_t = example_noise(keys, s.num_steps, shape)
  x0, _ = jax.lax.scan(step, x_t, (steps[::-1], prev_steps[::-1]))
  return x0
