"""What the benchmark scripts share (they run as `python benchmarks/NAME.py`, so this imports
as `common`)."""

import time
from collections.abc import Callable

import jax
import numpy as np
from ml_collections import ConfigDict


def synthetic_batch(data: ConfigDict, size: int) -> dict[str, np.ndarray]:
  """A fixed batch of `size` random uint8 images shaped as `data` says, zero labels and ids
  0..size-1: {'image' [size, S, S, C], 'label' [size], 'id' [size]}."""
  rng = np.random.default_rng(0)
  return {'image': rng.integers(0, 256, (size, data.image_size, data.image_size, data.channels),
                                dtype=np.uint8),
          'label': np.zeros(size, np.int32), 'id': np.arange(size, dtype=np.int32)}


def median_ms(fn: Callable, *args, repeats: int = 15) -> float:
  """Median milliseconds of one call of `jax.jit(fn)(*args)`, after 3 warm-up calls."""
  fn = jax.jit(fn)
  for _ in range(3):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return 1e3 * float(np.median(times))


def plain_layers(config: ConfigDict) -> ConfigDict:
  """`config` with `runtime.kernels='xla'`: the model as every backend runs it, whose XLA
  cost analysis gives the model's FLOPs (XLA counts none inside the CPU kernels' FFI calls)."""
  plain = ConfigDict(config.to_dict())
  plain.runtime.kernels = 'xla'
  return plain
