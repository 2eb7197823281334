"""DCGAN generator and discriminator (Radford et al. 2016; PyTorch's DCGAN example), for 28,
32 or 64 px.

Generator: z -> a base grid (4x4, or 7x7 for 28 px) through a bias-free linear layer (the
reference's 4x4 transposed conv on a 1x1 input is the same map), then 4x4 stride-2
transposed convs, each followed by BatchNorm + ReLU, and a last one to the image with tanh.
Discriminator: 4x4 stride-2 convs with LeakyReLU(0.2), normalization after all but the
first, and a linear layer to one logit (the reference's 4x4 'valid' conv). Like the
reference, layers followed by BatchNorm have no bias, and every weight is drawn from
N(0, 0.02).

BatchNorm in training takes its statistics over the devices of `axis_name` (those of the
global batch); call the modules in training mode from per-device code only. Spectral
normalization (Miyato et al. 2018) keeps its power-iteration vectors in the 'batch_stats'
collection, beside the BatchNorm statistics. The 4x4 convs are named `Conv2x_i`, the names
of the checkpoints written so far.

With `num_classes` > 0 both are class-conditional (Miyato & Koyama 2018): the generator's
BatchNorms take a per-class scale and bias (`ConditionalBatchNorm`), and the discriminator
adds to its logit the inner product of a class embedding with the features its last layer
sees (`projection`).
"""

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from gen_jax.models.gan_layers import (
    base_size,
    batch_norm,
    generator_norm,
    projection,
    spectral_normalized,
)
from gen_jax.nn import Conv, ConvTranspose, Dense

NORMS = ('batch', 'layer', 'none')
_INIT = nn.initializers.normal(0.02)


class Generator(nn.Module):
  """z [B, Z] (and labels [B] when num_classes > 0) -> images [B, S, S, C] in [-1, 1].

  channels: widths from the base grid up, e.g. (512, 256, 128, 64) for 64 px: the image is
  2**len(channels) times the base grid.
  """
  channels: Sequence[int]
  image_size: int
  image_channels: int
  axis_name: str | None = None
  num_classes: int = 0

  @nn.compact
  def __call__(self, z: jax.Array, train: bool, labels: jax.Array | None = None) -> jax.Array:
    norm = generator_norm(train, self.axis_name, self.num_classes, labels)
    base = base_size(self.image_size, len(self.channels))
    x = Dense(base * base * self.channels[0], use_bias=False, kernel_init=_INIT)(z)
    x = x.reshape(-1, base, base, self.channels[0])
    x = nn.relu(norm(x))
    widths = [*self.channels[1:], self.image_channels]
    for i, width in enumerate(widths):
      x = ConvTranspose(width, (4, 4), (2, 2), use_bias=False, kernel_init=_INIT,
                        name=f'Conv2x_{i}')(x)
      if i < len(widths) - 1:
        x = nn.relu(norm(x))
    return jnp.tanh(x)


class Discriminator(nn.Module):
  """images [B, S, S, C] (and labels [B] when num_classes > 0) -> logits [B].

  channels: widths from the image down, e.g. (64, 128, 256, 512) for 64 px; norm: 'batch'
  (DCGAN), 'layer' (per example, over H, W, C: a WGAN-GP critic) or 'none' (then every
  layer has a bias); spectral_norm: normalize every weight by its largest singular value.
  """
  channels: Sequence[int]
  norm: str = 'batch'
  spectral_norm: bool = False
  axis_name: str | None = None
  num_classes: int = 0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool, labels: jax.Array | None = None) -> jax.Array:
    if self.norm not in NORMS:
      raise ValueError(f'discriminator norm {self.norm!r}: expected one of {NORMS}')
    bias = self.norm == 'none'
    layer = functools.partial(spectral_normalized, enabled=self.spectral_norm, train=train)
    for i, width in enumerate(self.channels):
      x = layer(Conv(width, (4, 4), (2, 2), use_bias=bias, kernel_init=_INIT,
                     name=f'Conv2x_{i}'), x)
      if i and self.norm == 'batch':
        x = batch_norm(train, self.axis_name)(x)
      elif i and self.norm == 'layer':
        x = nn.LayerNorm(epsilon=1e-5, reduction_axes=(1, 2, 3))(x)
      x = nn.leaky_relu(x, 0.2)
    features = x.reshape(x.shape[0], -1)
    logits = layer(Dense(1, use_bias=bias, kernel_init=_INIT), features)[:, 0]
    if self.num_classes:
      self.sow('intermediates', 'features', features)
      logits = logits + projection(features, labels, self.num_classes, layer, _INIT)
    return logits
