"""Convolutional VAE: 4x4 stride-2 conv encoder to a diagonal Gaussian, a mirrored decoder of
4x4 stride-2 transposed convs. The 4x4 convs are named `Conv2x_i`, the names of the
checkpoints written so far."""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from gen_jax.nn import Conv, ConvTranspose, Dense


class Encoder(nn.Module):
  """Images [B, H, W, C] -> (mean, logvar) of q(z | x), each [B, latent_dim]."""
  channels: Sequence[int]
  hidden: int
  latent_dim: int

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    for i, features in enumerate(self.channels):
      x = nn.silu(Conv(features, (4, 4), (2, 2), name=f'Conv2x_{i}')(x))
    x = x.reshape(x.shape[0], -1)
    if self.hidden:
      x = nn.silu(Dense(self.hidden)(x))
    mean, logvar = jnp.split(Dense(2 * self.latent_dim)(x), 2, axis=-1)
    return mean, logvar


class Decoder(nn.Module):
  """Latents [B, latent_dim] -> per-pixel parameters [B, H, W, C * params_per_channel]."""
  channels: Sequence[int]
  hidden: int
  image_shape: tuple[int, int, int]
  params_per_channel: int

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    height, width, channels = self.image_shape
    scale = 2 ** len(self.channels)
    h, w = height // scale, width // scale
    if self.hidden:
      z = nn.silu(Dense(self.hidden)(z))
    x = nn.silu(Dense(h * w * self.channels[-1])(z)).reshape(-1, h, w, self.channels[-1])
    widths = [*reversed(self.channels[:-1]), channels * self.params_per_channel]
    for i, features in enumerate(widths):
      x = ConvTranspose(features, (4, 4), (2, 2), name=f'Conv2x_{i}')(x)
      if i < len(widths) - 1:
        x = nn.silu(x)
    return x


class ConvVAE(nn.Module):
  """Encoder and decoder under the names 'encoder' and 'decoder'."""
  channels: Sequence[int]
  hidden: int
  latent_dim: int
  image_shape: tuple[int, int, int]
  params_per_channel: int

  def setup(self):
    self.encoder = Encoder(self.channels, self.hidden, self.latent_dim)
    self.decoder = Decoder(self.channels, self.hidden, self.image_shape,
                           self.params_per_channel)

  def __call__(self, x: jax.Array) -> jax.Array:
    """Decodes the posterior mean; used to initialise both networks."""
    mean, _ = self.encoder(x)
    return self.decoder(mean)

  def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    return self.encoder(x)

  def decode(self, z: jax.Array) -> jax.Array:
    return self.decoder(z)
