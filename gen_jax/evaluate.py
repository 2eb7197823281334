"""Evaluation of a train state: the family's per-example metrics averaged over the first
`eval.num_examples` test examples, and the sample-quality metrics of `eval.metrics`."""

from typing import Any

import jax
import numpy as np

from gen_jax import parallel
from gen_jax.data import pipeline
from gen_jax.experiment import Experiment
from gen_jax.metrics import evaluator


def eval_batches(exp: Experiment):
  """This process's slices of the padded global eval batches (see pipeline.eval_batches)."""
  c = exp.config
  return pipeline.eval_batches(c.data, c.data.eval_split, c.eval.num_examples,
                               c.eval.batch_size, jax.process_index(), jax.process_count())


def likelihood_metrics(exp: Experiment, state: Any) -> dict[str, float]:
  """Returns the mean of each per-example eval metric over `eval.num_examples` examples."""
  totals, count = None, 0.0
  for batch in eval_batches(exp):
    sums, n = exp.eval_step(state, parallel.shard_batch(batch, exp.mesh))
    sums, n = parallel.host_values((sums, n))
    totals = sums if totals is None else {k: totals[k] + sums[k] for k in totals}
    count += float(n)
  return {k: float(v) / count for k, v in totals.items()} | {'num_examples': count}


def evaluate(exp: Experiment, state: Any, progress_dir: str | None = None
             ) -> tuple[dict[str, float], dict]:
  """Returns (metrics, protocol of the sample metrics, {} if none); `progress_dir` keeps
  the sample metrics' finished batches (see metrics.evaluator.sample_features)."""
  metrics, protocol = {}, {}
  if exp.config.eval.num_examples:
    metrics = likelihood_metrics(exp, state)
  if exp.config.eval.metrics:
    sample_results, protocol = evaluator.sample_metrics(exp, state.ema_params, progress_dir)
    metrics |= sample_results
  return metrics, protocol


def first_eval_batch(exp: Experiment) -> dict[str, np.ndarray]:
  return next(iter(eval_batches(exp)))
