"""DCGAN generator and discriminator (Radford et al. 2016), for 28, 32 or 64 px.

Generator: z -> a base grid (4x4, or 7x7 for 28 px) through a bias-free linear layer (the
reference's 4x4 transposed conv on a 1x1 input is the same map), then 4x4 stride-2
transposed convs, each followed by BatchNorm + ReLU, and a last one to the image with tanh.
Discriminator: 4x4 stride-2 convs with LeakyReLU(0.2), normalization after all but the
first, and a linear layer to one logit (the reference's 4x4 'valid' conv). Like the
reference (and PyTorch's DCGAN example), layers followed by BatchNorm have no bias.

BatchNorm in training reduces its statistics over the 'data' mesh axis, so they are those of
the global batch; call the modules in training mode from per-device code only. Spectral
normalization (Miyato et al. 2018) keeps its power-iteration vectors in the 'batch_stats'
collection, beside the BatchNorm statistics.
"""

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from gen_jax.models.layers import Conv2x, Dense
from gen_jax.models.norms import BatchNorm
from gen_jax.parallel import DATA_AXIS

NORMS = ('batch', 'layer', 'none')
_INIT = nn.initializers.normal(0.02)  # Radford et al.: every weight from N(0, 0.02)


def base_size(image_size: int, num_upsamplings: int) -> int:
  """The generator's first grid size: image_size / 2**num_upsamplings, at least 3."""
  base, rest = divmod(image_size, 2 ** num_upsamplings)
  if rest or base < 3:
    raise ValueError(f'image size {image_size} is not a base grid of 3 or more times '
                     f'2**{num_upsamplings}')
  return base


def global_batch_norm(train: bool) -> BatchNorm:
  """Training-mode BatchNorm with statistics over the global batch (the 'data' axis), or
  inference with the running averages."""
  # momentum 0.9 is PyTorch's 0.1.
  return BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                      axis_name=DATA_AXIS if train else None,
                      scale_init=lambda k, s, d=jnp.float32: 1.0 + 0.02 * jax.random.normal(
                          k, s, d))


def spectral_normalized(module: nn.Module, x: jax.Array, enabled: bool, train: bool
                        ) -> jax.Array:
  """module(x), with the module's weights divided by their largest singular value when
  `enabled` (`nn.SpectralNorm`; its power-iteration vectors live in 'batch_stats')."""
  if enabled:
    return nn.SpectralNorm(module)(x, update_stats=train)
  return module(x)


class Generator(nn.Module):
  """z [B, Z] -> images [B, S, S, C] in [-1, 1].

  channels: widths from the base grid up, e.g. (512, 256, 128, 64) for 64 px: the image is
  2**len(channels) times the base grid.
  """
  channels: Sequence[int]
  image_size: int
  image_channels: int
  conv_impl: str = 'mixed'

  @nn.compact
  def __call__(self, z: jax.Array, train: bool) -> jax.Array:
    base = base_size(self.image_size, len(self.channels))
    x = Dense(base * base * self.channels[0], use_bias=False, kernel_init=_INIT)(z)
    x = nn.relu(global_batch_norm(train)(x.reshape(-1, base, base, self.channels[0])))
    for width in self.channels[1:]:
      x = Conv2x(width, up=True, impl=self.conv_impl, use_bias=False, kernel_init=_INIT)(x)
      x = nn.relu(global_batch_norm(train)(x))
    x = Conv2x(self.image_channels, up=True, impl=self.conv_impl, use_bias=False,
               kernel_init=_INIT)(x)
    return jnp.tanh(x)


class Discriminator(nn.Module):
  """images [B, S, S, C] -> logits [B].

  channels: widths from the image down, e.g. (64, 128, 256, 512) for 64 px; norm: 'batch'
  (DCGAN), 'layer' (per example, over H, W, C: a WGAN-GP critic) or 'none' (then every
  layer has a bias); spectral_norm: normalize every weight by its largest singular value.
  """
  channels: Sequence[int]
  norm: str = 'batch'
  spectral_norm: bool = False
  conv_impl: str = 'mixed'

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    if self.norm not in NORMS:
      raise ValueError(f'discriminator norm {self.norm!r}: expected one of {NORMS}')
    bias = self.norm == 'none'
    layer = functools.partial(spectral_normalized, enabled=self.spectral_norm, train=train)
    for i, width in enumerate(self.channels):
      x = layer(Conv2x(width, impl=self.conv_impl, use_bias=bias, kernel_init=_INIT), x)
      if i and self.norm == 'batch':
        x = global_batch_norm(train)(x)
      elif i and self.norm == 'layer':
        x = nn.LayerNorm(epsilon=1e-5, reduction_axes=(1, 2, 3))(x)
      x = nn.leaky_relu(x, 0.2)
    logits = layer(Dense(1, use_bias=bias, kernel_init=_INIT), x.reshape(x.shape[0], -1))
    return logits[:, 0]
