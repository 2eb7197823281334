"""What the DCGAN and the ResNet GAN share: the generator's base grid, BatchNorm as the GAN
papers configure it, and optional spectral normalization."""

import jax
import jax.numpy as jnp
from flax import linen as nn

from gen_jax.nn import BatchNorm


def base_size(image_size: int, num_upsamplings: int) -> int:
  """The generator's first grid size: image_size / 2**num_upsamplings, at least 3."""
  base, rest = divmod(image_size, 2 ** num_upsamplings)
  if rest or base < 3:
    raise ValueError(f'image size {image_size} is not a base grid of 3 or more times '
                     f'2**{num_upsamplings}')
  return base


def batch_norm(train: bool, axis_name: str | None) -> BatchNorm:
  """BatchNorm with the batch's statistics in training (over the devices of `axis_name`:
  the global batch), the running averages otherwise; momentum 0.9 (PyTorch's 0.1) and
  scale initialised from N(1, 0.02), as in Radford et al."""
  return BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                   axis_name=axis_name,
                   scale_init=lambda k, s, d=jnp.float32: 1.0 + 0.02 * jax.random.normal(
                       k, s, d))


def spectral_normalized(module: nn.Module, x: jax.Array, enabled: bool, train: bool
                        ) -> jax.Array:
  """module(x), with the module's weights divided by their largest singular value when
  `enabled` (Miyato et al. 2018, `nn.SpectralNorm`; its power-iteration vectors live in
  'batch_stats')."""
  if enabled:
    return nn.SpectralNorm(module)(x, update_stats=train)
  return module(x)
