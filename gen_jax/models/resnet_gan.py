"""The ResNet generator and discriminator of SN-GAN (Miyato et al. 2018) and WGAN-GP
(Gulrajani et al. 2017) for 32 px, as in Miyato et al.'s reference code (sngan_projection,
`gen_models/resnet_32.py`, `dis_models/snresnet_32.py`).

Generator: z -> a linear layer to the base grid (4x4 for 32 px), then one up-block per width:
BN, ReLU, nearest x2 + 3x3 conv, BN, ReLU, 3x3 conv, plus a shortcut (nearest x2 and a 1x1
conv); then BN, ReLU, a 3x3 conv to the image and tanh. With widths (256, 256, 256) it has
4,276,739 parameters.
Discriminator: residual blocks whose leading ones (all but the last two) halve the resolution
by 2x2 average pooling. The first block takes the image without a pre-activation; the others
are ReLU, 3x3 conv (keeping the width), ReLU, 3x3 conv; a 1x1 conv shortcut where the width
or the resolution changes. Then ReLU, a sum over positions and a bias-free linear layer to
one logit. With widths (128, 128, 128, 128) it has 1,053,824 parameters; spectral
normalization wraps every layer.

Nearest upsampling and average pooling commute with a 1x1 conv, so each shortcut applies its
1x1 conv at the lower resolution: the same function with fewer FLOPs. As in the reference,
every layer but D's last has a bias, and weights are Glorot-uniform, with gain sqrt(2) inside
the residual branches. The generator's convs are named `Conv_i` in order, the names of the
checkpoints written so far.

With `num_classes` > 0 both are class-conditional, as the reference's projection models
(`gen_models/resnet.py`, `dis_models/snresnet_32.py`): the blocks' BatchNorms take a per-class
scale and bias (the last BatchNorm stays unconditional), and the discriminator adds the
inner product of a spectrally normalized class embedding with its summed features.
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
from gen_jax.nn import Conv, Dense, Downsample, Upsample, upsample_nearest

_GLOROT = nn.initializers.xavier_uniform()
_GLOROT_RELU = nn.initializers.variance_scaling(2.0, 'fan_avg', 'uniform')  # gain sqrt(2)


def num_downsamplings(num_blocks: int) -> int:
  """How many of the discriminator's leading blocks halve the resolution."""
  return max(num_blocks - 2, 0)


class ResNetGenerator(nn.Module):
  """z [B, Z] (and labels [B] when num_classes > 0) -> images [B, S, S, C] in [-1, 1];
  S = base grid * 2**len(channels)."""
  channels: Sequence[int]
  image_size: int
  image_channels: int
  axis_name: str | None = None
  num_classes: int = 0

  @nn.compact
  def __call__(self, z: jax.Array, train: bool, labels: jax.Array | None = None) -> jax.Array:
    norm = generator_norm(train, self.axis_name, self.num_classes, labels)
    base = base_size(self.image_size, len(self.channels))
    x = Dense(base * base * self.channels[0], kernel_init=_GLOROT)(z)
    x = x.reshape(-1, base, base, self.channels[0])
    for i, width in enumerate(self.channels):
      h = nn.relu(norm(x))
      h = Upsample(width, kernel_init=_GLOROT_RELU, name=f'Conv_{2 * i}')(h)
      h = nn.relu(norm(h))
      h = Conv(width, (3, 3), kernel_init=_GLOROT_RELU, name=f'Conv_{2 * i + 1}')(h)
      x = h + upsample_nearest(Dense(width, kernel_init=_GLOROT)(x))
    x = nn.relu(batch_norm(train, self.axis_name)(x))
    x = Conv(self.image_channels, (3, 3), kernel_init=_GLOROT,
             name=f'Conv_{2 * len(self.channels)}')(x)
    return jnp.tanh(x)


class ResNetDiscriminator(nn.Module):
  """images [B, S, S, C] (and labels [B] when num_classes > 0) -> logits [B]; S must divide
  by 2**num_downsamplings(len(channels))."""
  channels: Sequence[int]
  spectral_norm: bool = False
  num_classes: int = 0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool, labels: jax.Array | None = None) -> jax.Array:
    layer = functools.partial(spectral_normalized, enabled=self.spectral_norm, train=train)
    downsamplings = num_downsamplings(len(self.channels))
    for i, width in enumerate(self.channels):
      down = i < downsamplings
      hidden = width if i == 0 else x.shape[-1]
      h = x if i == 0 else nn.relu(x)
      h = layer(Conv(hidden, (3, 3), kernel_init=_GLOROT_RELU), h)
      h = layer(Conv(width, (3, 3), kernel_init=_GLOROT_RELU), nn.relu(h))
      if down:
        h, x = Downsample(with_conv=False)(h), Downsample(with_conv=False)(x)
      if down or x.shape[-1] != width:
        x = layer(Dense(width, kernel_init=_GLOROT), x)
      x = x + h
    features = jnp.sum(nn.relu(x), axis=(1, 2))
    logits = layer(Dense(1, use_bias=False, kernel_init=_GLOROT), features)[:, 0]
    if self.num_classes:
      self.sow('intermediates', 'features', features)
      logits = logits + projection(features, labels, self.num_classes, layer, _GLOROT)
    return logits
