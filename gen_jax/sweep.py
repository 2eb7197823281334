"""Config sweeps: run every point of a sweep file, or print one launch command per point.

  python -m gen_jax.sweep experiments/sweeps/NAME.py --root=DIR [--parallel=N]
      [--print_commands] [--config.KEY=VALUE ...  (applied to every point)]

A sweep file defines `CONFIG` (the config file) and `get_sweep()`, a list of override dicts
{'dotted.key': value} built with `product` and `zip_points`. Point i runs in DIR/NNN-SLUG
through `python -m gen_jax.main`, so it is exactly the run its command line describes: a
finished point (its newest checkpoint at train.num_steps) is skipped, an interrupted one
resumes, and a workdir whose run has other values for the point's keys is refused (in
case the list was edited). DIR/results.csv and DIR/results.md hold each point's overrides,
status, final train metrics and latest eval metrics, rewritten after every point.
"""

import concurrent.futures
import csv
import importlib.util
import io
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from absl import app, flags
from etils import epath

from gen_jax import layout
from gen_jax.checkpoint import latest_step
from gen_jax.config_lib import lookup

Point = dict[str, Any]


def product(**axes: Sequence[Any]) -> list[Point]:
  """Every combination: product(a=[1, 2], b=[3]) -> [{'a': 1, 'b': 3}, {'a': 2, 'b': 3}].
  Keys are config keys with '__' for '.', or pass a dict: product(**{'loss.beta': [...]})."""
  keys = [k.replace('__', '.') for k in axes]
  return [dict(zip(keys, values, strict=True)) for values in itertools.product(*axes.values())]


def zip_points(**axes: Sequence[Any]) -> list[Point]:
  """Values side by side: zip_points(a=[1, 2], b=[3, 4]) -> [{'a': 1, 'b': 3}, {'a': 2, 'b': 4}]."""
  keys = [k.replace('__', '.') for k in axes]
  return [dict(zip(keys, values, strict=True)) for values in zip(*axes.values(), strict=True)]


def load_sweep(path: str) -> tuple[str, list[Point]]:
  """Returns (config file, points) of the sweep file at `path`."""
  module = _load_module(path, 'sweep_file')
  return module.CONFIG, list(module.get_sweep())


def format_value(value: Any) -> str:
  return str(value) if isinstance(value, str) else repr(value)


def point_name(index: int, point: Point) -> str:
  """NNN-key=value-...: a folder name, shortened and made file-system safe."""
  slug = '-'.join(f'{k.split(".")[-1]}={format_value(v)}' for k, v in point.items())
  return f'{index:03d}-' + re.sub(r'[^A-Za-z0-9=.,_+-]', '', slug)[:80]


def command(config_file: str, workdir: str, point: Point, extra: Sequence[str]) -> list[str]:
  return [sys.executable, '-m', 'gen_jax.main', f'--config={config_file}', f'--workdir={workdir}',
          *extra, *(f'--config.{k}={format_value(v)}' for k, v in point.items())]


def _read_json(path: epath.Path) -> dict | None:
  try:
    return json.loads(path.read_text())
  except (OSError, ValueError):
    return None


def _load_module(path: str, name: str):
  spec = importlib.util.spec_from_file_location(name, path)
  if spec is None or not os.path.exists(path):
    raise ValueError(f'{path!r} not found')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def target_steps(config_file: str, point: Point, extra: Sequence[str]) -> int:
  """train.num_steps of the point's run: its override, the sweep-wide one, or the config's."""
  if 'train.num_steps' in point:
    return int(point['train.num_steps'])
  for arg in reversed(extra):
    if arg.startswith('--config.train.num_steps='):
      return int(arg.split('=', 1)[1])
  return int(_load_module(config_file, 'sweep_config').get_config().train.num_steps)


def mismatch(workdir: str, point: Point) -> str:
  """'' if the run in `workdir` (if any) has the point's values, else the first difference:
  a guard against a sweep list edited between runs (workdirs are named by position)."""
  config = _read_json(layout.config_file(workdir))
  if config is None:
    return ''
  for key, value in point.items():
    old = lookup(config, key)
    if json.loads(json.dumps(value)) != old:
      return f'{workdir} holds a run with {key}={old!r}, not {value!r}'
  return ''


def results_of(workdir: str) -> dict[str, Any]:
  """The last train metrics and each evaluator's latest metrics of a run, keyed
  'train/NAME' and 'eval/EVALUATOR/NAME' (from metrics.jsonl: training's own evaluations and
  `--mode=eval` ones)."""
  last: dict[str, dict] = {}
  try:
    for line in layout.metrics_file(workdir).read_text().splitlines():
      row = json.loads(line)
      source = '/'.join(filter(None, (row.pop('split'), row.pop('evaluator', None))))
      if row['step'] >= last.get(source, {}).get('step', -1):
        last[source] = row
  except (OSError, ValueError, KeyError):
    pass
  return {f'{source}/{key}': value for source in sorted(last, key=lambda s: s != 'train')
          for key, value in last[source].items()}


def write_results(root: str | os.PathLike, rows: list[dict[str, Any]]) -> None:
  """DIR/results.csv (every column) and DIR/results.md (the same table, 4 significant digits)."""
  columns = list(dict.fromkeys(k for row in rows for k in row))
  table = io.StringIO(newline='')
  writer = csv.DictWriter(table, columns)
  writer.writeheader()
  writer.writerows(rows)
  root = layout.path(root)
  (root / 'results.csv').write_text(table.getvalue())

  def cell(value: Any) -> str:
    if isinstance(value, float):
      return f'{value:.4g}'
    return '' if value is None else str(value).replace('|', '\\|')

  lines = ['| ' + ' | '.join(columns) + ' |', '|' + ' --- |' * len(columns)]
  lines += ['| ' + ' | '.join(cell(row.get(c)) for c in columns) + ' |' for row in rows]
  (root / 'results.md').write_text('\n'.join(lines) + '\n')


def run_point(config_file: str, workdir: str, point: Point, extra: Sequence[str]) -> str:
  """Runs (or resumes) one point, its output in WORKDIR/sweep.log; returns its status."""
  different = mismatch(workdir, point)
  if different:
    return f'failed: {different}'
  done = latest_step(layout.checkpoints(workdir))
  if done is not None and done >= target_steps(config_file, point, extra):
    return 'done (skipped)'
  layout.make_dirs(layout.path(workdir))
  # Points running side by side on one accelerator must not each take most of its memory.
  env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE='false')
  args = command(config_file, workdir, point, extra)
  path = layout.sweep_log(workdir)
  if layout.is_object_store(path):  # the output goes to an unnamed local file, then is added
    with tempfile.TemporaryFile('w+') as log:
      result = subprocess.run(args, stdout=log, stderr=subprocess.STDOUT, check=False, env=env)
      log.seek(0)
      path.write_text((path.read_text() if path.exists() else '') + log.read())
  else:
    with path.open('a') as log:
      result = subprocess.run(args, stdout=log, stderr=subprocess.STDOUT, check=False, env=env)
  if result.returncode:
    lines = path.read_text().strip().splitlines() or ['']
    return f'failed: {lines[-1][:200]}'
  return 'done'


def main(argv: list[str]) -> None:
  if len(argv) < 2:
    raise app.UsageError('usage: python -m gen_jax.sweep SWEEP_FILE --root=DIR [...]')
  sweep_file, extra = argv[1], argv[2:]
  bad = [a for a in extra if not a.startswith('--config.')]
  if bad or not flags.FLAGS.root:
    raise app.UsageError(f'--root is required; extra arguments must be --config.KEY=VALUE, '
                         f'got {bad}')
  if error := layout.scheme_error(flags.FLAGS.root, '--root'):
    sys.exit(f'gen_jax.sweep: error: {error}')
  config_file, points = load_sweep(sweep_file)
  root = layout.path(flags.FLAGS.root)
  workdirs = [str(root / point_name(i, p)) for i, p in enumerate(points)]
  if flags.FLAGS.print_commands:
    for workdir, point in zip(workdirs, points, strict=True):
      print(shlex.join(['python', *command(config_file, workdir, point, extra)[1:]]))
    return
  layout.make_dirs(root)
  statuses: dict[int, str] = {}

  def rows() -> list[dict[str, Any]]:
    return [{'point': os.path.basename(w), 'status': statuses.get(i, 'pending'), **p,
             **results_of(w)} for i, (w, p) in enumerate(zip(workdirs, points, strict=True))]

  with concurrent.futures.ThreadPoolExecutor(max(1, flags.FLAGS.parallel)) as pool:
    futures = {pool.submit(run_point, config_file, w, p, extra): i
               for i, (w, p) in enumerate(zip(workdirs, points, strict=True))}
    for future in concurrent.futures.as_completed(futures):
      statuses[futures[future]] = future.result()
      print(f'{os.path.basename(workdirs[futures[future]])}: {statuses[futures[future]]}',
            flush=True)
      write_results(root, rows())
  if any(s.startswith('failed') for s in statuses.values()):
    sys.exit(1)


def define_flags() -> None:
  """The CLI's flags, defined only when run as a program: sweep files import this module."""
  flags.DEFINE_string('root', None, 'Folder of the sweep: one workdir per point.')
  flags.DEFINE_integer('parallel', 1, 'Points run at the same time.')
  flags.DEFINE_bool('print_commands', False,
                    'Print one launch command per point (for a scheduler), run nothing.')


if __name__ == '__main__':
  define_flags()
  # --config.KEY=VALUE arguments are not this program's flags: pass them on to every point.
  app.run(main, flags_parser=lambda argv: flags.FLAGS(argv, known_only=True))
