"""The gen_jax command line: one config, one workdir, six modes.

  python -m gen_jax.main --config=configs/NAME.py --workdir=DIR \
      [--mode=train|eval|sample|edit|summary] [--config.KEY=VALUE ...] \
      [--distributed | --coordinator_address=HOST:PORT --num_processes=N --process_id=I]

A thin layer over importable functions (`gen_jax.train`, `gen_jax.modes`): bad input of
any kind ends in one line on stderr and a non-zero exit status.
"""

import logging as std_logging
import os
import sys
import threading
import warnings

from absl import app, flags, logging
from ml_collections import config_flags

from gen_jax import cpu_runtime, layout
from gen_jax.errors import ConfigError, UserError

MODES = ('train', 'eval', 'sample', 'edit', 'summary', 'prepare')
_CONFIG = config_flags.DEFINE_config_file('config', None, 'Path to a config file.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and samples.')
_MODE = flags.DEFINE_enum('mode', 'train', MODES, 'What to do with the config.')
_DISTRIBUTED = flags.DEFINE_bool(
    'distributed', False, 'Initialise jax.distributed, auto-detecting the cluster (TPU pods, '
    'SLURM, ...); implied by --coordinator_address.')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None, 'host:port of process 0, for a multi-process run.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Processes in the run.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process, 0 to num_processes - 1.')


def fail(message: str, status: int = 1) -> None:
  print(f'gen_jax: error: {message}', file=sys.stderr)
  # A failed async checkpoint write leaves orbax tasks and coroutines whose failure (already
  # reported in the line above) asyncio would log, and Python warn about, again at exit,
  # burying the one line.
  std_logging.getLogger('asyncio').setLevel(std_logging.CRITICAL + 1)
  warnings.simplefilter('ignore')
  sys.unraisablehook = threading.excepthook = lambda *_: None  # "Event loop is closed", ...
  sys.exit(status)


def _json_config(arg: str) -> str:
  """`--config=FILE.json` (a workdir's config.json) becomes a config file argument that
  ml_collections loads through gen_jax/json_config.py."""
  name, _, value = arg.partition('=')
  if name in ('--config', '-config') and value.endswith('.json'):
    return f'{name}={os.path.join(os.path.dirname(__file__), "json_config.py")}:{value}'
  return arg


def _closed_loop_noise(value: BaseException | None) -> bool:
  # After a failed asynchronous save, orbax's background threads call into its event loop
  # once it is closed; each would print this traceback ahead of gen_jax's one line.
  return isinstance(value, RuntimeError) and str(value) == 'Event loop is closed'


def _orbax_leftover(unraisable: 'sys.UnraisableHookArgs') -> bool:
  # A failed restore leaves orbax's other read coroutines unfinished; when they are collected
  # each prints its own copy of the error gen_jax has already reported in one line.
  code = getattr(unraisable.object, 'cr_code', None)
  return code is not None and f'{os.sep}orbax{os.sep}' in code.co_filename


def quiet_orbax_noise() -> None:
  """Drops, from Python's three exception hooks, only the 'Event loop is closed' errors and
  the errors of orbax's abandoned coroutines, and the warnings that they were never awaited."""
  warnings.filterwarnings('ignore', r"coroutine '.*' was never awaited", RuntimeWarning)
  excepthook, thread_hook, unraisable_hook = (sys.excepthook, threading.excepthook,
                                              sys.unraisablehook)
  sys.excepthook = lambda kind, value, tb: (
      None if _closed_loop_noise(value) else excepthook(kind, value, tb))
  threading.excepthook = lambda args: (
      None if _closed_loop_noise(args.exc_value) else thread_hook(args))
  sys.unraisablehook = lambda unraisable: (
      None if _closed_loop_noise(unraisable.exc_value) or _orbax_leftover(unraisable)
      else unraisable_hook(unraisable))


def parse_flags(argv: list[str]) -> list[str]:
  """Parses flags, turning a bad flag or config override into one line on stderr."""
  try:
    argv = flags.FLAGS([_json_config(arg) for arg in argv])
    getattr(_CONFIG.value, 'family', None)  # a config file that failed to load raises here
    return argv
  except flags.Error as e:
    fail(' '.join(str(e).split()), status=2)
  except Exception as e:  # config files raise anything while loading
    reason = str(e).strip().splitlines()[-1].strip() if str(e).strip() else ''
    fail(f'--config: {type(e).__name__}: {reason}', status=2)


def initialize_distributed(coordinator: str | None, num_processes: int | None,
                           process_id: int | None) -> None:
  """Joins the multi-process run (before anything touches the devices); with no
  coordinator, jax.distributed auto-detects the cluster."""
  import jax  # pylint: disable=g-import-not-at-top
  if coordinator and (num_processes is None or process_id is None):
    fail('--coordinator_address needs --num_processes and --process_id', status=2)
  try:
    jax.distributed.initialize(coordinator, num_processes, process_id,
                               initialization_timeout=300)
  except Exception as e:  # the coordination service raises many types
    fail(f'jax.distributed.initialize failed: {type(e).__name__}: '
         f'{" ".join(str(e).split())[:300]}')


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    fail(f'unexpected arguments {argv[1:]}', status=2)
  if _CONFIG.value is None or (_WORKDIR.value is None and _MODE.value != 'prepare'):
    fail('--config and --workdir are required (--mode=prepare needs no --workdir)', status=2)
  if _WORKDIR.value is not None and (  # before anything is written
      error := layout.scheme_error(_WORKDIR.value, '--workdir')):
    fail(error, status=2)
  if not flags.FLAGS['verbosity'].present:
    # orbax, tfds and grain log through absl. Their errors reach gen_jax as exceptions and
    # end in its one line; orbax's background threads would log each with a traceback first.
    logging.set_verbosity(logging.FATAL)
  std_logging.getLogger('gen_jax').setLevel(std_logging.INFO)
  if not _COORDINATOR.value and (_NUM_PROCESSES.value is not None or
                                 _PROCESS_ID.value is not None):
    fail('--num_processes and --process_id need --coordinator_address', status=2)
  if _DISTRIBUTED.value or _COORDINATOR.value:
    initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  quiet_orbax_noise()
  from gen_jax import modes, stop, train  # pylint: disable=g-import-not-at-top
  run = {'train': train.train_and_evaluate, 'eval': modes.evaluate_checkpoint,
         'sample': modes.sample, 'edit': modes.edit, 'summary': modes.summary,
         'prepare': modes.prepare}[_MODE.value]
  try:
    run(_CONFIG.value, _WORKDIR.value)
  except stop.Stopped as e:  # SIGTERM or SIGINT, a checkpoint saved
    print(f'gen_jax: {e}', file=sys.stderr)
    sys.exit(stop.EXIT_STATUS[e.signum])
  except KeyboardInterrupt:  # SIGINT outside the training loop
    fail(f'interrupted (SIGINT) in --mode={_MODE.value}; what was written before is kept',
         status=130)
  except ConfigError as e:
    fail(str(e), status=2)
  except UserError as e:
    fail(str(e))
  except OSError as e:  # a full disk, an unwritable folder: the file system's own words
    fail(f'{type(e).__name__}: {e}')


if __name__ == '__main__':
  cpu_runtime.tune()
  app.run(main, flags_parser=parse_flags)
