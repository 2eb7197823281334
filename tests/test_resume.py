"""SIGKILL after the first checkpoint, then restart: the run equals an uninterrupted one."""

import os
import signal
import subprocess
import sys
import time

import numpy as np

from tests.conftest import REPO, digits_args, flat_params, read_metrics, restore_run, run_cli

NUM_STEPS, EVERY = 1500, 100


def args(workdir, tfds_dir):
  return digits_args(workdir, tfds_dir, f'--config.train.num_steps={NUM_STEPS}',
                     f'--config.checkpoint.every_steps={EVERY}', '--config.train.log_every=1',
                     '--config.sample.every_steps=0', '--config.eval.every_steps=0',
                     '--config.data.random_flip=True', '--config.data.binarize=True',
                     '--config.model.likelihood=bernoulli')


def without_timing(rows):
  return [{k: v for k, v in row.items() if k != 'steps_per_sec'} for row in rows]


def test_sigkill_and_restart_reproduces_the_uninterrupted_run(tmp_path, tfds_dir):
  reference, resumed = str(tmp_path / 'reference'), str(tmp_path / 'resumed')
  run_cli(*args(reference, tfds_dir))

  env = dict(os.environ, PYTHONPATH=REPO, XLA_FLAGS='--xla_force_host_platform_device_count=1')
  process = subprocess.Popen([sys.executable, '-m', 'gen_jax.main', *args(resumed, tfds_dir)],
                             cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  first = os.path.join(resumed, 'checkpoints', str(EVERY))
  deadline = time.time() + 300
  while not os.path.exists(os.path.join(first, 'commit_success.txt')):
    assert process.poll() is None and time.time() < deadline, 'no first checkpoint'
    time.sleep(0.005)
  process.send_signal(signal.SIGKILL)
  process.wait()
  killed_at = read_metrics(resumed)[-1]['step']
  assert EVERY <= killed_at < NUM_STEPS, f'the kill came at step {killed_at}, not mid-run'

  run_cli(*args(resumed, tfds_dir))
  expected, got = read_metrics(reference), read_metrics(resumed)
  assert [r['step'] for r in got] == list(range(1, NUM_STEPS + 1))
  assert without_timing(got) == without_timing(expected)  # bitwise: floats compare exactly
  state_a, step_a = restore_run(reference)
  state_b, step_b = restore_run(resumed)
  assert step_a == step_b == NUM_STEPS
  np.testing.assert_array_equal(flat_params(state_a), flat_params(state_b))
