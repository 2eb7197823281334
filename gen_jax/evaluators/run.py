"""What an evaluator sees of a run, and its test batches on the mesh."""

from collections.abc import Callable, Iterator
from typing import NamedTuple

import jax
from jax.sharding import Mesh
from ml_collections import ConfigDict

from gen_jax import parallel
from gen_jax.data import pipeline


class Run(NamedTuple):
  """What an evaluator sees of a run."""
  data: ConfigDict  # the data block: dataset, data.eval_split, image size, data_dir
  batch_size: int  # global batch of test examples or samples, a multiple of the device count
  seed: int
  key: jax.Array  # the eval stream: sample i draws from fold_in(key, i)
  mesh: Mesh
  eval_step: Callable  # (state, batch) -> ({name: sum over the batch's examples}, count)
  sample: Callable | None  # (params, key, ids [n]) -> images [n, H, W, C] in [-1, 1]
  reconstruct: Callable | None  # (params, batch) -> (inputs, reconstructions) [b, H, W, C]
  # A class-conditional model's: sample ids [n] -> the classes they are asked for [n], and
  # its sampling protocol ({'classes': ..., 'guidance': w})
  labels: Callable | None = None
  conditioning: dict | None = None


def batches(run: Run, split: str, num_examples: int) -> Iterator[dict[str, jax.Array]]:
  """The first `num_examples` of `split` in global batches of `run.batch_size` on the mesh,
  padded with mask 0 (see pipeline.eval_batches)."""
  for batch in pipeline.eval_batches(run.data, split, num_examples, run.batch_size,
                                     jax.process_index(), jax.process_count()):
    yield parallel.shard_batch(batch, run.mesh)
