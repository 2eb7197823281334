"""Convolutional VAE: 4x4 stride-2 conv encoder to a diagonal Gaussian, a mirrored decoder of
4x4 stride-2 transposed convs. The 4x4 convs are named `Conv2x_i`, the names of the
checkpoints written so far.

With `num_classes` > 0 it is a conditional VAE (Sohn et al. 2015): the label, one-hot,
joins the encoder's features before its dense layers, q(z | x, y), and the latent at the
decoder's input, p(x | z, y); the prior stays N(0, I)."""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from gen_jax.nn import Conv, ConvTranspose, Dense


def with_label(x: jax.Array, labels: jax.Array | None, num_classes: int) -> jax.Array:
  """x [B, F], and with num_classes > 0 the one-hot labels after it: [B, F + num_classes]."""
  if not num_classes:
    return x
  return jnp.concatenate([x, jax.nn.one_hot(labels, num_classes, dtype=x.dtype)], axis=-1)


class Encoder(nn.Module):
  """Images [B, H, W, C] (and labels [B]) -> (mean, logvar) of q(z | x), each
  [B, latent_dim]."""
  channels: Sequence[int]
  hidden: int
  latent_dim: int
  num_classes: int = 0

  @nn.compact
  def __call__(self, x: jax.Array, labels: jax.Array | None = None
               ) -> tuple[jax.Array, jax.Array]:
    for i, features in enumerate(self.channels):
      x = nn.silu(Conv(features, (4, 4), (2, 2), name=f'Conv2x_{i}')(x))
    x = with_label(x.reshape(x.shape[0], -1), labels, self.num_classes)
    if self.hidden:
      x = nn.silu(Dense(self.hidden)(x))
    mean, logvar = jnp.split(Dense(2 * self.latent_dim)(x), 2, axis=-1)
    return mean, logvar


class Decoder(nn.Module):
  """Latents [B, latent_dim] (and labels [B]) -> per-pixel parameters
  [B, H, W, C * params_per_channel]."""
  channels: Sequence[int]
  hidden: int
  image_shape: tuple[int, int, int]
  params_per_channel: int
  num_classes: int = 0

  @nn.compact
  def __call__(self, z: jax.Array, labels: jax.Array | None = None) -> jax.Array:
    z = with_label(z, labels, self.num_classes)
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
  num_classes: int = 0

  def setup(self):
    self.encoder = Encoder(self.channels, self.hidden, self.latent_dim, self.num_classes)
    self.decoder = Decoder(self.channels, self.hidden, self.image_shape,
                           self.params_per_channel, self.num_classes)

  def __call__(self, x: jax.Array, labels: jax.Array | None = None) -> jax.Array:
    """Decodes the posterior mean; used to initialise both networks."""
    mean, _ = self.encoder(x, labels)
    return self.decoder(mean, labels)

  def encode(self, x: jax.Array, labels: jax.Array | None = None
             ) -> tuple[jax.Array, jax.Array]:
    return self.encoder(x, labels)

  def decode(self, z: jax.Array, labels: jax.Array | None = None) -> jax.Array:
    return self.decoder(z, labels)
