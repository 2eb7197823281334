"""The layout of a run's workdir, named here and nowhere else:

  config.json                  the resolved config of the latest start
  checkpoints/STEP/            checkpoints (gen_jax.checkpoint); checkpoints.damaged/STEP
  metrics.jsonl                one JSON line per logged step and split
  tensorboard/                 the same scalars, and the image grids
  samples/                     grids written during training (NAME_step_STEP.png) and the
                               samples of --mode=sample (samples.npz)
  eval/NAME/step_STEP.json     evaluator NAME's --mode=eval result for checkpoint STEP;
                               eval/NAME/step_STEP.progress/ while it runs
  profile/                     JAX profiler traces (train.profile_steps)
  summary.json                 --mode=summary
  sweep.log                    the output of a sweep point's run
  .lock                        held by the training run
"""

import os
from collections.abc import Callable


def _under(name: str) -> Callable[[str], str]:
  return lambda workdir: os.path.join(workdir, name)


config_file = _under('config.json')
checkpoints = _under('checkpoints')
metrics_file = _under('metrics.jsonl')
tensorboard_dir = _under('tensorboard')
samples_dir = _under('samples')
profile_dir = _under('profile')
summary_file = _under('summary.json')
sweep_log = _under('sweep.log')
lock_file = _under('.lock')


def grid_file(workdir: str, name: str, step: int) -> str:
  """samples/step_STEP.png for the samples' grid, samples/NAME_step_STEP.png for others."""
  prefix = '' if name == 'samples' else f'{name}_'
  return os.path.join(samples_dir(workdir), f'{prefix}step_{int(step):07d}.png')


def samples_file(workdir: str) -> str:
  return os.path.join(samples_dir(workdir), 'samples.npz')


def eval_file(workdir: str, evaluator: str, step: int) -> str:
  return os.path.join(workdir, 'eval', evaluator, f'step_{step:07d}.json')


def eval_progress_dir(workdir: str, evaluator: str, step: int) -> str:
  """Where an evaluation of `step` keeps its finished sample batches until it is done."""
  return os.path.join(workdir, 'eval', evaluator, f'step_{step:07d}.progress')
