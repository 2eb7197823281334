"""Samplers over noise levels sigma, in the convention of Karras et al. (2022, "EDM"):
x = x0 + sigma n, a denoiser D(x, sigma) estimates x0, and the probability-flow ODE is
dx/dsigma = (x - D(x, sigma)) / sigma.

Each sampler is one `lax.scan` over the decreasing noise levels `sigmas` [N + 1], from the
start x [B, ...] (noise scaled by sigmas[0]) to sigmas[N] (0, or a small sigma to stop at).
Step coefficients are computed once in float64 with numpy. Euler is DDIM with eta = 0 (and
first-order DPM-Solver++); every random draw comes from its sample's key, as in `samplers`.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax.diffusion.samplers import example_noise

# (x [B, ...], sigma [B]) -> the denoised estimate of x0 [B, ...]
DenoiseFn = Callable[[jax.Array, jax.Array], jax.Array]
SOLVERS = ('euler', 'heun', 'dpmpp_2m')
SIGMA_SPACINGS = ('karras', 'logsnr')


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> np.ndarray:
  """EDM's eq. 5: n levels (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) -
  sigma_max^(1/rho)))^rho for i = 0..n-1, then 0: float64 [n + 1]."""
  ramp = np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(1)
  inv_rho = 1.0 / rho
  levels = (sigma_max ** inv_rho + ramp * (sigma_min ** inv_rho - sigma_max ** inv_rho)) ** rho
  return np.append(levels, 0.0)


def logsnr_sigmas(n: int, sigma_min: float, sigma_max: float) -> np.ndarray:
  """n levels uniform in log sigma (so in log-SNR, -2 log sigma: DPM-Solver's spacing) from
  sigma_max to sigma_min, then 0: float64 [n + 1]."""
  return np.append(np.exp(np.linspace(np.log(sigma_max), np.log(sigma_min), n)), 0.0)


def make_sigmas(spacing: str, n: int, sigma_min: float, sigma_max: float,
                rho: float = 7.0) -> np.ndarray:
  """The `spacing` (one of SIGMA_SPACINGS) grid of n levels and a final 0, [n + 1]."""
  if n < 1 or not 0 < sigma_min < sigma_max:
    raise ValueError(f'{n} noise levels from sigma_max={sigma_max} to sigma_min={sigma_min}: '
                     'expected n >= 1 and 0 < sigma_min < sigma_max')
  if spacing == 'karras':
    return karras_sigmas(n, sigma_min, sigma_max, rho)
  if spacing == 'logsnr':
    return logsnr_sigmas(n, sigma_min, sigma_max)
  raise ValueError(f'sigma spacing {spacing!r}: expected one of {SIGMA_SPACINGS}')


def as_coefficients(values: np.ndarray, x: jax.Array) -> jax.Array:
  """Coefficients [N] in x's precision (float64 in the convergence tests)."""
  return jnp.asarray(values, x.dtype)


def sigma_vector(x: jax.Array, sigma: jax.Array) -> jax.Array:
  """A scalar noise level as the [B] vector a DenoiseFn takes."""
  return jnp.full((x.shape[0],), sigma, x.dtype)


def check_sigmas(sigmas: np.ndarray) -> np.ndarray:
  """`sigmas` as float64 [N + 1]; a ValueError unless they decrease to a last level >= 0."""
  sigmas = np.asarray(sigmas, np.float64)
  if sigmas.ndim != 1 or len(sigmas) < 2 or np.any(np.diff(sigmas) >= 0) or sigmas[-1] < 0:
    raise ValueError(f'sigmas {sigmas}: expected at least two, decreasing, ending at >= 0')
  return sigmas


def dpmpp_2m_sample(denoise_fn: DenoiseFn, sigmas: np.ndarray, x: jax.Array,
                    second_order: bool = True) -> jax.Array:
  """DPM-Solver++(2M) (Lu et al. 2022), the multistep data-prediction solver of the
  probability-flow ODE; x [B, ...] at sigmas[0] -> x [B, ...] at sigmas[-1].

  With h_i = log(sigma_i / sigma_{i+1}): x_{i+1} = (sigma_{i+1} / sigma_i) x_i +
  (1 - sigma_{i+1} / sigma_i) D', D' = (1 + 1/(2 r)) D_i - 1/(2 r) D_{i-1}, r = h_{i-1} / h_i.
  The first step, and a last step to sigma = 0, are first order (D' = D_i), as in
  k-diffusion's `sample_dpmpp_2m`. `second_order=False` is Euler, i.e. DDIM with eta = 0.
  """
  sigmas = check_sigmas(sigmas)
  n = len(sigmas) - 1
  ratio = sigmas[1:] / sigmas[:-1]
  now, prev = np.ones(n), np.zeros(n)  # the weights of D_i and D_{i-1} in D'
  for i in range(1, n if second_order else 1):
    if sigmas[i + 1] > 0:
      r = np.log(sigmas[i - 1] / sigmas[i]) / np.log(sigmas[i] / sigmas[i + 1])
      now[i], prev[i] = 1 + 1 / (2 * r), -1 / (2 * r)

  def step(carry, coefs):
    x, denoised_prev = carry
    sigma, ratio, now, prev = coefs
    denoised = denoise_fn(x, sigma_vector(x, sigma))
    x = ratio * x + (1 - ratio) * (now * denoised + prev * denoised_prev)
    return (x, denoised), None

  (x, _), _ = jax.lax.scan(step, (x, jnp.zeros_like(x)),
                           tuple(as_coefficients(c, x) for c in (sigmas[:-1], ratio, now, prev)))
  return x


def euler_sample(denoise_fn: DenoiseFn, sigmas: np.ndarray, x: jax.Array) -> jax.Array:
  """Euler steps of the probability-flow ODE (DDIM with eta = 0; EDM's sampler without its
  correction): x [B, ...] at sigmas[0] -> x [B, ...] at sigmas[-1]."""
  return dpmpp_2m_sample(denoise_fn, sigmas, x, second_order=False)


def churn_gammas(sigmas: np.ndarray, churn: float, s_tmin: float = 0.0,
                 s_tmax: float = float('inf')) -> np.ndarray:
  """EDM's gamma_i = min(S_churn / N, sqrt(2) - 1) for sigma_i in [S_tmin, S_tmax], else 0:
  the noise each step adds before it solves, [N]."""
  levels = np.asarray(sigmas[:-1], np.float64)
  gamma = min(churn / len(levels), np.sqrt(2.0) - 1.0)
  return np.where((levels >= s_tmin) & (levels <= s_tmax), gamma, 0.0)


def heun_sample(denoise_fn: DenoiseFn, sigmas: np.ndarray, x: jax.Array,
                keys: jax.Array | None = None, churn: float = 0.0, s_tmin: float = 0.0,
                s_tmax: float = float('inf'), s_noise: float = 1.0) -> jax.Array:
  """EDM's sampler (Karras et al. 2022, Algorithm 2; Algorithm 1, deterministic, when
  churn = 0): each step first raises the noise to sigma_hat = (1 + gamma_i) sigma_i with
  fresh noise of scale s_noise (drawn from each sample's key [B], stream i), then takes a
  Heun step to sigma_{i+1} (an Euler step when sigma_{i+1} = 0): 2N - 1 evaluations of
  the denoiser for N steps to 0. x [B, ...] at sigmas[0] -> x [B, ...] at sigmas[-1]."""
  sigmas = check_sigmas(sigmas)
  gammas = churn_gammas(sigmas, churn, s_tmin, s_tmax)
  stochastic = bool(np.any(gammas > 0))
  if stochastic and keys is None:
    raise ValueError('a stochastic sampler (churn > 0) needs the samples\' keys')
  sigma_hat = sigmas[:-1] * (1 + gammas)
  added = s_noise * np.sqrt(sigma_hat ** 2 - sigmas[:-1] ** 2)
  shape = x.shape[1:]

  def step(x, i, sigma_hat, added, sigma_next, correct):
    if stochastic:
      x = x + added * example_noise(keys, i, shape)
    slope = (x - denoise_fn(x, sigma_vector(x, sigma_hat))) / sigma_hat
    x_next = x + (sigma_next - sigma_hat) * slope
    if correct:
      slope_next = (x_next - denoise_fn(x_next, sigma_vector(x, sigma_next))) / sigma_next
      x_next = x + (sigma_next - sigma_hat) * 0.5 * (slope + slope_next)
    return x_next

  last = len(sigmas) - 2 if sigmas[-1] == 0 else len(sigmas) - 1  # Heun steps before it
  x, _ = jax.lax.scan(
      lambda x, c: (step(x, c[0], *c[1:], correct=True), None), x,
      (jnp.arange(last), *(as_coefficients(c, x) for c in (sigma_hat[:last], added[:last],
                                                    sigmas[1:last + 1]))))
  if last < len(sigmas) - 1:
    x = step(x, last, sigma_hat[last], added[last], 0.0, correct=False)
  return x
