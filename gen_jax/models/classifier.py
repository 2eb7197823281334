"""A small conv classifier whose penultimate layer serves as a feature space for FID on
small datasets (MNIST-like), where Inception features mean little. Its 4x4 stride-2 convs
are named `Conv2x_i`, the names of the checkpoints written so far."""

from collections.abc import Sequence

import jax
from flax import linen as nn

from gen_jax.nn import Conv, Dense


class Classifier(nn.Module):
  """Images [B, H, W, C] -> (logits [B, num_classes], features [B, features])."""
  channels: Sequence[int]
  features: int
  num_classes: int

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    for i, width in enumerate(self.channels):
      x = nn.relu(Conv(width, (3, 3))(x))
      x = nn.relu(Conv(width, (4, 4), (2, 2), name=f'Conv2x_{i}')(x))
    features = nn.relu(Dense(self.features)(x.reshape(x.shape[0], -1)))
    return Dense(self.num_classes)(features), features
