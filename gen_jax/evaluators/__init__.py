"""Evaluators, registered by type: `config.evals.NAME = config_lib.evaluator(TYPE, ...)`.

Each turns a train state into named metrics: `likelihood` (the family's per-example test
metrics), `reconstruction` (error of the family's reconstructions), `sample_quality`
(FID / KID / IS / precision-recall of samples in a feature space). Training runs each on its
own `every_steps`; --mode=eval and its watcher run the same ones on checkpoints. Every result
becomes one metrics line of its own (split 'eval', key 'evaluator') and one line in the log.

An evaluator sees a `Run` (the data config, the mesh and the family's jitted functions), not
the experiment that built it.
"""

import logging
from collections.abc import Callable
from typing import Any, NamedTuple

from etils import epath
from ml_collections import ConfigDict

from gen_jax.errors import UserError
from gen_jax.evaluators import likelihood, reconstruction, sample_quality
from gen_jax.evaluators.run import Run
from gen_jax.metric_writer import MetricWriter

log = logging.getLogger(__name__)


class Evaluator(NamedTuple):
  name: str
  every_steps: int  # during training; 0: only in --mode=eval
  # (state, progress folder or None) -> ({metric: value}, protocol dict, {} if none)
  evaluate: Callable[[Any, str | None], tuple[dict[str, float], dict]]


# type -> make(name, its config, run) -> evaluate(state, progress folder) -> (metrics, protocol)
TYPES = {'likelihood': likelihood.make, 'reconstruction': reconstruction.make,
         'sample_quality': sample_quality.make}


def build(evals: ConfigDict, run: Run, names: list[str]) -> list[Evaluator]:
  """Returns the evaluators `names` of `evals`, each checked (and its feature network
  loaded) now, so a bad one fails before any training or sampling."""
  return [Evaluator(name, evals[name].every_steps,
                    TYPES[evals[name].type](name, evals[name], run)) for name in names]


def in_training(evals: ConfigDict) -> list[str]:
  """The evaluators that training runs: those with every_steps > 0."""
  return [name for name, spec in evals.items() if spec.every_steps]


def selected(evals: ConfigDict, only: str) -> list[str]:
  """The evaluators --mode=eval runs: `eval.only`'s comma-separated names, or all."""
  if not evals:
    raise UserError('config.evals is empty: this config declares no evaluator (add one with '
                    'config_lib.evaluator)')
  names = [n.strip() for n in only.split(',') if n.strip()] or list(evals)
  if set(names) - set(evals):
    raise UserError(f'eval.only={only!r}: expected names among config.evals {sorted(evals)}')
  return names


def record(evaluator: Evaluator, state: Any, step: int, writer: MetricWriter,
           progress_dir: epath.Path | None = None) -> tuple[dict[str, float], dict]:
  """Runs `evaluator` on `state`, writes its metrics line and logs it; returns (metrics,
  protocol)."""
  metrics, protocol = evaluator.evaluate(state, progress_dir)
  writer.write_scalars(step, 'eval', metrics, evaluator=evaluator.name)
  log.info('eval %s at step %d | %s', evaluator.name, step,
           ' '.join(f'{k} {v:.5g}' for k, v in metrics.items()))
  return metrics, protocol
