"""The layout of a run's workdir, named here and nowhere else:

  config.json                  the resolved config of the latest start
  checkpoints/STEP/            checkpoints (gen_jax.checkpoint); checkpoints.damaged/STEP
  metrics.jsonl                one JSON line per logged step and split
  tensorboard/                 the same scalars, and the image grids
  samples/                     grids written during training (NAME_step_STEP.png) and the
                               samples of --mode=sample (samples_step_STEP.npz and
                               its grid, samples_step_STEP.png)
  eval/NAME/step_STEP.json     evaluator NAME's --mode=eval result for checkpoint STEP;
                               eval/NAME/step_STEP.progress/ while it runs
  profile/                     JAX profiler traces (train.profile_steps)
  summary.json                 --mode=summary
  sweep.log                    the output of a sweep point's run
  .lock                        held by the training run (gen_jax.lock)

A workdir is a local path or a Google Cloud Storage URI `gs://BUCKET/...`; every path goes
through `path` (an `etils.epath.Path`), which refuses any other `SCHEME://`.
"""

import os
import re
from collections.abc import Callable

from etils import epath

from gen_jax.errors import UserError

OBJECT_STORE = 'gs://'
SUPPORTED = f'a local path or {OBJECT_STORE}BUCKET/...'


def scheme_error(value: str, name: str) -> str:
  """'' if `value` is a local path or a gs:// URI, else the one-line error naming `name`:
  other schemes (s3://, hdfs://, ...) would become a local folder named `s3:`."""
  if re.match(r'[A-Za-z][A-Za-z0-9+.-]*://', value) and not value.startswith(OBJECT_STORE):
    return f'{name}={value!r}: unsupported URI scheme; expected {SUPPORTED}'
  return ''


def path(value: str | os.PathLike) -> epath.Path:
  """Returns `value` as an epath.Path; a UserError for an unsupported URI scheme."""
  error = scheme_error(os.fspath(value), 'path')
  if error:
    raise UserError(error)
  return epath.Path(value)


def is_object_store(value: str | os.PathLike) -> bool:
  """Whether `value` lives on object storage (no flock, no append, no rename)."""
  return os.fspath(value).startswith(OBJECT_STORE)


def make_dirs(folder: epath.Path) -> None:
  """Creates a local folder and its parents; on object storage folders need no creating
  (and creating one could create a bucket)."""
  if not is_object_store(folder):
    folder.mkdir(parents=True, exist_ok=True)


def _under(name: str) -> Callable[[str | os.PathLike], epath.Path]:
  return lambda workdir: path(workdir) / name


config_file = _under('config.json')
checkpoints = _under('checkpoints')
metrics_file = _under('metrics.jsonl')
tensorboard_dir = _under('tensorboard')
samples_dir = _under('samples')
profile_dir = _under('profile')
summary_file = _under('summary.json')
sweep_log = _under('sweep.log')
lock_file = _under('.lock')


def grid_file(workdir: str | os.PathLike, name: str, step: int) -> epath.Path:
  """samples/step_STEP.png for the samples' grid, samples/NAME_step_STEP.png for others."""
  prefix = '' if name == 'samples' else f'{name}_'
  return samples_dir(workdir) / f'{prefix}step_{int(step):07d}.png'


def samples_file(workdir: str | os.PathLike, step: int) -> epath.Path:
  """samples/samples_step_STEP.npz: --mode=sample's samples of checkpoint STEP."""
  return samples_dir(workdir) / f'samples_step_{int(step):07d}.npz'


def edits_file(workdir: str | os.PathLike, step: int) -> epath.Path:
  """samples/edits_step_STEP.npz: --mode=edit's images of checkpoint STEP."""
  return samples_dir(workdir) / f'edits_step_{int(step):07d}.npz'


def eval_file(workdir: str | os.PathLike, evaluator: str, step: int) -> epath.Path:
  return path(workdir) / 'eval' / evaluator / f'step_{step:07d}.json'


def eval_progress_dir(workdir: str | os.PathLike, evaluator: str, step: int) -> epath.Path:
  """Where an evaluation of `step` keeps its finished sample batches until it is done."""
  return path(workdir) / 'eval' / evaluator / f'step_{step:07d}.progress'
