"""What the DCGAN and the ResNet GAN share: the generator's base grid, BatchNorm as the GAN
papers configure it (class-conditional in a conditional generator), optional spectral
normalization, and the projection of a conditional discriminator."""

from collections.abc import Callable

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


def batch_norm(train: bool, axis_name: str | None, affine: bool = True) -> BatchNorm:
  """BatchNorm with the batch's statistics in training (over the devices of `axis_name`:
  the global batch), the running averages otherwise; momentum 0.9 (PyTorch's 0.1) and
  scale initialised from N(1, 0.02), as in Radford et al.; without a scale and bias of its
  own when not `affine`."""
  return BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                   axis_name=axis_name, use_scale=affine, use_bias=affine,
                   scale_init=lambda k, s, d=jnp.float32: 1.0 + 0.02 * jax.random.normal(
                       k, s, d))


class ConditionalBatchNorm(nn.Module):
  """Categorical conditional BatchNorm (de Vries et al. 2017; Miyato & Koyama 2018):
  x [B, ..., C] normalized as `batch_norm` without its own scale and bias, then scaled and
  shifted by its class's gamma [C] and beta [C] (embeddings initialised to 1 and 0)."""
  num_classes: int
  train: bool
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, labels: jax.Array) -> jax.Array:
    x = batch_norm(self.train, self.axis_name, affine=False)(x)
    shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],)
    gamma = nn.Embed(self.num_classes, x.shape[-1], embedding_init=nn.initializers.ones,
                     name='gamma')(labels)
    beta = nn.Embed(self.num_classes, x.shape[-1], embedding_init=nn.initializers.zeros,
                    name='beta')(labels)
    return x * gamma.reshape(shape).astype(x.dtype) + beta.reshape(shape).astype(x.dtype)


def generator_norm(train: bool, axis_name: str | None, num_classes: int,
                   labels: jax.Array | None) -> Callable[[jax.Array], jax.Array]:
  """x -> x through a new BatchNorm layer at each call: `batch_norm`, or with num_classes > 0
  a `ConditionalBatchNorm` on `labels` [B]."""
  if num_classes:
    return lambda x: ConditionalBatchNorm(num_classes, train, axis_name)(x, labels)
  return lambda x: batch_norm(train, axis_name)(x)


def projection(features: jax.Array, labels: jax.Array, num_classes: int,
               layer: Callable[[nn.Module, jax.Array], jax.Array],
               init: nn.initializers.Initializer) -> jax.Array:
  """The class term of a projection discriminator (Miyato & Koyama 2018):
  <embed(y), features> [B] for features [B, F] and labels [B], the embedding [num_classes, F]
  applied through `layer` (spectral normalization, when the discriminator has it)."""
  embedded = layer(nn.Embed(num_classes, features.shape[-1], embedding_init=init,
                            name='class_embedding'), labels)
  return jnp.sum(embedded.astype(features.dtype) * features, axis=-1)


def spectral_normalized(module: nn.Module, x: jax.Array, enabled: bool, train: bool
                        ) -> jax.Array:
  """module(x), with the module's weights divided by their largest singular value when
  `enabled` (Miyato et al. 2018, `nn.SpectralNorm`; its power-iteration vectors live in
  'batch_stats')."""
  if enabled:
    return nn.SpectralNorm(module)(x, update_stats=train)
  return module(x)
