"""Likelihood-style evaluation: family metrics averaged over the first N test examples."""

from typing import Any

import jax
import numpy as np

from gen_jax import parallel
from gen_jax.data import pipeline
from gen_jax.experiment import Experiment


def eval_batches(exp: Experiment):
  """This process's slices of the padded global eval batches (see pipeline.eval_batches)."""
  c = exp.config
  return pipeline.eval_batches(c.data, c.data.eval_split, c.eval.num_examples,
                               c.eval.batch_size, jax.process_index(), jax.process_count())


def evaluate(exp: Experiment, state: Any) -> dict[str, float]:
  """Returns the mean of each per-example eval metric over `eval.num_examples` examples."""
  totals, count = None, 0.0
  for batch in eval_batches(exp):
    sums, n = exp.eval_step(state, parallel.shard_batch(batch, exp.mesh))
    sums, n = parallel.host_values((sums, n))
    totals = sums if totals is None else {k: totals[k] + sums[k] for k in totals}
    count += float(n)
  return {k: float(v) / count for k, v in totals.items()} | {'num_examples': count}


def first_eval_batch(exp: Experiment) -> dict[str, np.ndarray]:
  return next(iter(eval_batches(exp)))
