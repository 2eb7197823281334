"""The randomness policy of every run: all keys derive from `config.seed`, the step and the
global example id, never from the device or process count.

Step `s` >= 1 uses fold_in(key(seed), s); the streams that do not change with the step (init,
eval, sample grids) come from fold_in(key(seed), 0). Within a step or a stream, example `i`
uses fold_in(key, i), so its randomness is the same however the batch is split.
"""

from typing import NamedTuple

import jax


class Keys(NamedTuple):
  """The run's streams that do not change with the step."""
  init: jax.Array
  eval: jax.Array
  sample: jax.Array

  @staticmethod
  def from_seed(seed: int) -> 'Keys':
    return Keys(*jax.random.split(jax.random.fold_in(jax.random.key(seed), 0), 3))


def step_key(seed: int, step: jax.Array | int) -> jax.Array:
  """The key of train step `step` (1-based): fold_in(key(seed), step)."""
  return jax.random.fold_in(jax.random.key(seed), step)


def example_keys(rng: jax.Array, ids: jax.Array) -> jax.Array:
  """Returns one key per example, [B], folded from `rng` and the global example ids [B]."""
  return jax.vmap(lambda i: jax.random.fold_in(rng, i))(ids)
