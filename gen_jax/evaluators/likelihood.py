"""The `likelihood` evaluator: the family's per-example test metrics (its eval_step: the
VAE's ELBO and importance-weighted NLL, DDPM bits/dim, a classifier's NLL and accuracy),
averaged over the first `num_examples` examples of data.eval_split."""

from collections.abc import Callable
from typing import Any

from etils import epath
from ml_collections import ConfigDict

from gen_jax import parallel
from gen_jax.data import pipeline
from gen_jax.errors import UserError
from gen_jax.evaluators.run import Run, batches


def check_num_examples(name: str, spec: ConfigDict, run: Run) -> None:
  """Raises a UserError unless data.eval_split holds `spec.num_examples` (> 0) examples."""
  key = f'evals.{name}.num_examples'
  if spec.num_examples <= 0:
    raise UserError(f'{key}={spec.num_examples}: expected a positive integer')
  pipeline.eval_source(run.data, run.data.eval_split, spec.num_examples, key)


def make(name: str, spec: ConfigDict, run: Run) -> Callable[[Any, str | None], tuple]:
  """Returns evaluate(state, _) -> ({metric: mean over the examples, 'num_examples'}, {})."""
  check_num_examples(name, spec, run)

  def evaluate(state: Any, progress_dir: epath.Path | None = None) -> tuple[dict[str, float], dict]:
    del progress_dir  # one pass over test examples: nothing worth keeping
    totals, count = None, 0.0
    for batch in batches(run, run.data.eval_split, spec.num_examples):
      sums, n = parallel.host_values(run.eval_step(state, batch))
      totals = sums if totals is None else {k: totals[k] + sums[k] for k in totals}
      count += float(n)
    return {k: float(v) / count for k, v in totals.items()} | {'num_examples': count}, {}

  return evaluate
