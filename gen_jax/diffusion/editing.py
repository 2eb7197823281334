"""Training-free editing of given images with a denoiser over noise levels (the convention
of `sigma_samplers`: x = x0 + sigma n, D(x, sigma) estimates x0): inpainting by RePaint
(Lugmayr et al. 2022) and image-to-image by SDEdit (Meng et al. 2022), both one
`lax.scan`.

Both start from a level of the grid (inpainting from the top, the kept pixels from the
given image noised there and the others from noise; SDEdit lower, from the whole image
noised) and go down with the ancestral step, the exact posterior
q(x_{i+1} | x_i, x0 = D(x_i, sigma_i)) of the forward process: DDPM's step (and RePaint's)
in this convention. After each step the kept pixels (mask 1) are reset to the given image
noised to the new level, so they end exactly as given. RePaint's resampling: each time the
walk reaches a jump point, it noises back up `jump` levels and comes down again,
`resample - 1` times, so that the generated pixels harmonise with the kept ones. With mask
0 everywhere SDEdit rewrites the whole image; with a mask it edits only the masked-out
region.
"""

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax.diffusion.samplers import example_noise
from gen_jax.diffusion.sigma_samplers import DenoiseFn, as_coefficients, check_sigmas, sigma_vector


def repaint_moves(n: int, jump: int = 1, resample: int = 1) -> np.ndarray:
  """RePaint's schedule (its `get_schedule_jump`) over levels 0..n of a grid: the moves
  (from, to) [M, 2] in level indices, from level 0 down to level n. After each step down
  that arrives at a jump point, a level n - 1 - k jump (k = 0, 1, ...) that is `jump` or
  more, the walk goes back up `jump` levels, resample - 1 times per point. Taking one
  jump's noise in one move is exact: the forward process adds independent Gaussians."""
  if n < 1 or jump < 1 or resample < 1:
    raise ValueError(f'{n} steps, jump={jump}, resample={resample}: expected each >= 1')
  if resample > 1 and jump >= n:
    raise ValueError(f'jump={jump} with resample={resample} on {n} steps: expected a jump '
                     'shorter than the steps taken, or there is no point to jump back from')
  left = {n - 1 - k * jump: resample - 1 for k in range(n) if n - 1 - k * jump >= jump}
  moves, i = [], 0
  while i < n:
    moves.append((i, i + 1))
    i += 1
    if left.get(i, 0):
      left[i] -= 1
      moves.append((i, i - jump))
      i -= jump
  return np.asarray(moves, np.int32).reshape(-1, 2)


def start_level(n: int, strength: float) -> int:
  """The level an edit of `strength` in (0, 1] starts from on a grid of n steps: the last
  round(strength n) steps are taken (as diffusers' img2img strength); at least one."""
  if not 0.0 < strength <= 1.0:
    raise ValueError(f'strength={strength}: expected a value in (0, 1]')
  return n - max(1, int(round(strength * n)))


def edit_sample(denoise_fn: DenoiseFn, sigmas: np.ndarray, image: jax.Array,
                mask: jax.Array, keys: jax.Array, strength: float = 1.0, jump: int = 1,
                resample: int = 1) -> jax.Array:
  """Edits `image` [B, ...] (the clean data, x0), keeping it where `mask` [B, ...]
  (broadcastable) is above 0: from the level of `strength` (1: sigmas[0], inpainting, the
  generated pixels from noise alone; below 1: SDEdit, from the noised image) RePaint's moves
  go down to sigmas[-1]. Each sample's noise comes from its key [B] (stream 0 for the start,
  2m + 1 and 2m + 2 for move m). Returns x [B, ...] at sigmas[-1]; where mask is above 0 it
  is image + sigmas[-1] n."""
  sigmas = check_sigmas(sigmas)
  start = start_level(len(sigmas) - 1, strength)
  sigmas = sigmas[start:]
  moves = repaint_moves(len(sigmas) - 1, jump, resample)
  shape = image.shape[1:]
  keep = jnp.broadcast_to(mask, image.shape) > 0
  s_from, s_to = sigmas[moves[:, 0]], sigmas[moves[:, 1]]
  down = moves[:, 1] > moves[:, 0]
  # Down: the posterior mean's weight on x and its std; up: the noise to add.
  ratio = np.where(down, s_to ** 2 / s_from ** 2, 0.0)
  scale = np.where(down, s_to * np.sqrt(np.maximum(1.0 - ratio, 0.0)),
                   np.sqrt(np.maximum(s_to ** 2 - s_from ** 2, 0.0)))

  def step_down(x, m, sigma, sigma_next, ratio, scale):
    denoised = denoise_fn(x, sigma_vector(x, sigma))
    generated = denoised + ratio * (x - denoised) + scale * example_noise(keys, 2 * m + 1, shape)
    known = image + sigma_next * example_noise(keys, 2 * m + 2, shape)
    return jnp.where(keep, known, generated)

  def step_up(x, m, sigma, sigma_next, ratio, scale):
    del sigma, sigma_next, ratio
    return x + scale * example_noise(keys, 2 * m + 1, shape)

  def move(x, c):
    is_down, *args = c
    return jax.lax.cond(is_down, step_down, step_up, x, *args), None

  x = sigmas[0] * example_noise(keys, 0, shape)
  x = x + (image if start else jnp.where(keep, image, 0.0))
  x, _ = jax.lax.scan(move, x, (jnp.asarray(down), jnp.arange(len(moves)),
                                *(as_coefficients(c, x) for c in (s_from, s_to, ratio, scale))))
  return x


def network_evaluations(n: int, strength: float = 1.0, jump: int = 1,
                        resample: int = 1) -> int:
  """How many times `edit_sample` calls the denoiser on a grid of n steps."""
  moves = repaint_moves(n - start_level(n, strength), jump, resample)
  return int(np.sum(moves[:, 1] > moves[:, 0]))
