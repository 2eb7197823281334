"""The faults a long pod job meets: a kill in the middle of an asynchronous save, a damaged
newest checkpoint, a second run on a live workdir, a full disk. Non-finite losses are in
test_cli.py."""

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from tests.conftest import (
  REPO,
  digits_args,
  flat_params,
  read_metrics,
  restore_run,
  run_cli,
  run_experiment,
)


def args(workdir, tfds_dir, num_steps, *extra):
  return digits_args(workdir, tfds_dir, f'--config.train.num_steps={num_steps}',
                     '--config.checkpoint.every_steps=20', '--config.checkpoint.max_to_keep=10',
                     '--config.sample.every_steps=0', '--config.evals.likelihood.every_steps=0',
                     '--config.train.log_every=1', '--config.model.hidden=512', *extra)


def start(arguments, prefix=()):
  env = dict(os.environ, PYTHONPATH=REPO, XLA_FLAGS='--xla_force_host_platform_device_count=1')
  return subprocess.Popen([*prefix, sys.executable, '-m', 'gen_jax.main', *arguments], cwd=REPO,
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory, tfds_dir):
  """The parameters of a 60-step run of `args` that was never interrupted."""
  workdir = str(tmp_path_factory.mktemp('uninterrupted'))
  run_cli(*args(workdir, tfds_dir, 60))
  return flat_params(restore_run(workdir)[0])


def assert_equals_the_uninterrupted_run(workdir, uninterrupted):
  """The resumed 60-step run in `workdir` logged every step once and ends where the run that
  was never interrupted ends, bit for bit."""
  assert [r['step'] for r in read_metrics(workdir)] == list(range(1, 61))
  np.testing.assert_array_equal(flat_params(restore_run(workdir)[0]), uninterrupted)


def last_line(stderr: str) -> str:
  return stderr.strip().splitlines()[-1]


def test_kill_during_an_async_save_resumes_from_the_previous_checkpoint(tmp_path, tfds_dir,
                                                                       uninterrupted):
  workdir = str(tmp_path / 'run')
  checkpoints = os.path.join(workdir, 'checkpoints')
  process = start(args(workdir, tfds_dir, 200))
  deadline = time.time() + 300
  while True:  # the moment orbax's temporary folder of checkpoint 40 appears
    names = os.listdir(checkpoints) if os.path.isdir(checkpoints) else []
    if any(n.startswith('40') and 'tmp' in n for n in names):
      break
    assert process.poll() is None and time.time() < deadline, f'no save of 40 seen: {names}'
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert not os.path.exists(os.path.join(checkpoints, '40', 'commit_success.txt')), (
      'the kill came after the save finished')
  run_cli(*args(workdir, tfds_dir, 60))
  assert_equals_the_uninterrupted_run(workdir, uninterrupted)


def test_damaged_newest_checkpoint_is_moved_aside_and_the_previous_one_used(tmp_path, tfds_dir,
                                                                           uninterrupted):
  workdir = str(tmp_path / 'run')
  run_cli(*args(workdir, tfds_dir, 40))
  step_40 = os.path.join(workdir, 'checkpoints', '40')
  files = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(step_40, 'state'))
           for f in fs]
  biggest = max(files, key=os.path.getsize)
  size = os.path.getsize(biggest)
  with open(biggest, 'r+b') as f:  # truncate the newest checkpoint's largest data file
    f.truncate(size // 2)
  result = run_cli(*args(workdir, tfds_dir, 60))
  warning = [line for line in result.stderr.splitlines() if 'cannot be read' in line]
  assert len(warning) == 1 and 'checkpoints/40' in warning[0], result.stderr[-2000:]
  assert 'resuming from checkpoint 20' in warning[0]
  moved = os.path.join(workdir, 'checkpoints.damaged', '40')
  truncated = os.path.join(moved, os.path.relpath(biggest, step_40))
  assert os.path.getsize(truncated) == size // 2  # kept as it was, for a post-mortem
  assert_equals_the_uninterrupted_run(workdir, uninterrupted)


def test_a_second_run_on_a_live_workdir_is_refused(tmp_path, tfds_dir):
  workdir = str(tmp_path / 'run')
  first = start(args(workdir, tfds_dir, 100000))
  try:
    deadline = time.time() + 300
    while not os.path.exists(os.path.join(workdir, 'metrics.jsonl')):
      assert first.poll() is None and time.time() < deadline, 'the first run did not start'
      time.sleep(0.05)
    before = sorted(os.listdir(workdir))
    second = run_cli(*args(workdir, tfds_dir, 100000), check=False)
    assert second.returncode != 0
    message = last_line(second.stderr)
    assert message.startswith('gen_jax: error: workdir')
    assert 'in use by another training run' in message
    assert f'pid {first.pid}' in message
    assert first.poll() is None and sorted(os.listdir(workdir)) == before
  finally:
    first.kill()
    first.wait()
  # The lock dies with its process: a restart after a kill is not refused.
  saved = [int(n) for n in os.listdir(os.path.join(workdir, 'checkpoints')) if n.isdigit()]
  assert run_cli(*args(workdir, tfds_dir, max(saved, default=0) + 1)).returncode == 0


def test_full_disk_is_one_clear_line_and_keeps_the_finished_checkpoints(tmp_path, tfds_dir):
  workdir = str(tmp_path / 'run')
  run_cli(*args(workdir, tfds_dir, 20))
  sizes = {f: os.path.getsize(os.path.join(d, f)) for d, _, fs in
           os.walk(os.path.join(workdir, 'checkpoints', '20')) for f in fs}
  limit = 64 * 1024  # above metrics.jsonl, config.json and the events; below the arrays' files
  assert max(sizes.values()) > 4 * limit

  # A file-size limit (bash's ulimit -f, in KiB): writes past it fail with EFBIG, as they
  # would with ENOSPC; SIGXFSZ is ignored (inherited through exec) so the writer sees the error.
  limit_kib = limit // 1024
  shell = ['bash', '-c', f"trap '' XFSZ; ulimit -f {limit_kib}; exec \"$@\"", 'bash']
  process = start(args(workdir, tfds_dir, 40), prefix=shell)
  _, stderr = process.communicate(timeout=600)
  assert process.returncode != 0
  message = last_line(stderr)
  assert message.startswith('gen_jax: error: writing checkpoint 40 to'), stderr[-2000:]
  assert 'finished checkpoints are intact (newest: 20)' in message
  assert 'Traceback' not in stderr, stderr[-3000:]  # orbax's thread logs are kept quiet
  state, step = restore_run(workdir)
  assert step == 20 and np.all(np.isfinite(flat_params(state)))


def test_a_workdir_that_cannot_be_created_is_one_clear_line(tmp_path, tfds_dir):
  """Root ignores permission bits, so the unwritable workdir here is one under a file."""
  blocker = tmp_path / 'a_file'
  blocker.write_text('')
  result = run_cli(*args(str(blocker / 'run'), tfds_dir, 2), check=False)
  assert result.returncode != 0
  assert last_line(result.stderr) == ('gen_jax: error: NotADirectoryError: [Errno 20] '
                                      f"Not a directory: '{blocker / 'run'}'")


def test_resuming_with_another_seed_is_refused_in_one_line(tmp_path, tfds_dir):
  workdir = str(tmp_path / 'run')
  run_cli(*args(workdir, tfds_dir, 2))
  result = run_cli(*args(workdir, tfds_dir, 4, '--config.seed=1'), check=False)
  assert result.returncode != 0
  assert last_line(result.stderr) == (
      f'gen_jax: error: {workdir}/checkpoints holds a run with seed=0, this config has seed=1: '
      'resuming would not continue that run; use another --workdir')


@pytest.mark.slow
@pytest.mark.parametrize('signum,status', [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_sigterm_and_sigint_save_the_step_and_resume_exactly(tmp_path, tfds_dir, uninterrupted,
                                                              signum, status):
  workdir = str(tmp_path / 'run')
  process = start(args(workdir, tfds_dir, 60))
  metrics, deadline = os.path.join(workdir, 'metrics.jsonl'), time.time() + 300
  while not (os.path.exists(metrics) and len(open(metrics).readlines()) >= 25):
    assert process.poll() is None and time.time() < deadline, 'the run did not reach step 25'
    time.sleep(0.002)
  process.send_signal(signum)
  _, stderr = process.communicate(timeout=300)
  stopped_at = read_metrics(workdir)[-1]['step']
  assert 25 <= stopped_at < 60, f'the run reached step {stopped_at} before the signal'
  assert process.returncode == status
  name = signal.Signals(signum).name
  checkpoint = os.path.join(os.path.realpath(workdir), 'checkpoints', str(stopped_at))
  assert last_line(stderr) == (f'gen_jax: stopped at step {stopped_at} ({name}), checkpoint '
                               f'saved in {checkpoint}'), stderr[-3000:]
  assert os.path.exists(os.path.join(checkpoint, 'commit_success.txt'))
  run_cli(*args(workdir, tfds_dir, 60))
  assert_equals_the_uninterrupted_run(workdir, uninterrupted)


@pytest.mark.slow
def test_a_checkpoint_holding_nan_is_refused_by_eval_and_sample_and_skipped_by_training(
    tmp_path, tfds_dir, uninterrupted):
  from gen_jax import layout
  from gen_jax.checkpoint import Checkpointer
  workdir = str(tmp_path / 'run')
  run_cli(*args(workdir, tfds_dir, 40))
  # What a corruption that keeps the files readable can leave: a NaN among the parameters,
  # in a newer checkpoint than the last good one.
  state, _ = restore_run(workdir)
  leaves, treedef = jax.tree.flatten(state.params)
  leaves[0] = leaves[0].at[0].set(np.nan)
  damaged = state.replace(params=jax.tree.unflatten(treedef, leaves))
  saver = Checkpointer(layout.checkpoints(workdir), max_to_keep=10)
  saver.save(41, damaged, {'next_index': 41}, 'vae', run_experiment(workdir).config)
  saver.wait()
  saver.close()
  for mode in ('eval', 'sample'):
    result = run_cli(*args(workdir, tfds_dir, 60), f'--mode={mode}', check=False)
    assert result.returncode == 1, result.stderr[-2000:]
    line = last_line(result.stderr)
    assert line.startswith('gen_jax: error: checkpoint ') and line.endswith(
        'checkpoints/41 holds non-finite values (params/decoder/Conv2x_0/bias): its files are '
        'damaged'), result.stderr[-2000:]
  result = run_cli(*args(workdir, tfds_dir, 60))
  warning = [line for line in result.stderr.splitlines() if 'non-finite values' in line]
  assert len(warning) == 1 and 'resuming from checkpoint 40' in warning[0], result.stderr[-2000:]
  assert os.path.isdir(os.path.join(workdir, 'checkpoints.damaged', '41'))
  assert_equals_the_uninterrupted_run(workdir, uninterrupted)
