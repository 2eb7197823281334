"""The `reconstruction` evaluator: how well the family reconstructs the first `num_examples`
test examples (EMA parameters): per-image mean squared error and PSNR, pixels in [0, 1].
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from etils import epath
from ml_collections import ConfigDict

from gen_jax import parallel
from gen_jax.errors import UserError
from gen_jax.evaluators.likelihood import check_num_examples
from gen_jax.evaluators.run import Run, batches


@jax.jit
def masked_errors(inputs: jax.Array, reconstructions: jax.Array, mask: jax.Array) -> dict:
  """Sums over the batch's real examples (mask 1) of the per-image MSE and PSNR of
  images [b, H, W, C] in [-1, 1], measured on the [0, 1] scale; and their count."""
  mse = jnp.mean(jnp.square((reconstructions - inputs) / 2.0), axis=(1, 2, 3))
  psnr = -10.0 * jnp.log10(jnp.maximum(mse, 1e-10))
  return {'mse': jnp.sum(mse * mask), 'psnr': jnp.sum(psnr * mask), 'count': jnp.sum(mask)}


def make(name: str, spec: ConfigDict, run: Run) -> Callable[[Any, str | None], tuple]:
  """Returns evaluate(state, _) -> ({'mse', 'psnr': means over the examples,
  'num_examples'}, {})."""
  if run.reconstruct is None:
    raise UserError(f'evals.{name} is a reconstruction evaluator, and this family does not '
                    'reconstruct')
  check_num_examples(name, spec, run)

  def evaluate(state: Any, progress_dir: epath.Path | None = None) -> tuple[dict[str, float], dict]:
    del progress_dir
    totals = {'mse': 0.0, 'psnr': 0.0, 'count': 0.0}
    for batch in batches(run, run.data.eval_split, spec.num_examples):
      sums = parallel.host_values(masked_errors(*run.reconstruct(state.ema_params, batch),
                                                batch['mask']))
      totals = {k: totals[k] + float(sums[k]) for k in totals}
    count = totals.pop('count')
    return {k: v / count for k, v in totals.items()} | {'num_examples': count}, {}

  return evaluate
