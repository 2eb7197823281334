"""A small conv classifier whose penultimate layer serves as a feature space for FID on
small datasets (MNIST-like), where Inception features mean little."""

from collections.abc import Sequence

import jax
from flax import linen as nn

from gen_jax.models.layers import Conv2x


class Classifier(nn.Module):
  """Images [B, H, W, C] -> (logits [B, num_classes], features [B, features])."""
  channels: Sequence[int]
  features: int
  num_classes: int
  conv_impl: str = 'mixed'

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    for width in self.channels:
      x = nn.relu(nn.Conv(width, (3, 3))(x))
      x = nn.relu(Conv2x(width, impl=self.conv_impl)(x))
    features = nn.relu(nn.Dense(self.features)(x.reshape(x.shape[0], -1)))
    return nn.Dense(self.num_classes)(features), features
