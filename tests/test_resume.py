"""SIGKILL after the first checkpoint, then restart: the run equals an uninterrupted one."""

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from tests.conftest import REPO, digits_args, gan_digits_args, read_metrics, restore_run, run_cli


def vae_args(workdir, tfds_dir):
  return digits_args(workdir, tfds_dir, '--config.train.log_every=1',
                     '--config.sample.every_steps=0', '--config.evals.likelihood.every_steps=0',
                     '--config.data.random_flip=True', '--config.data.binarize=True',
                     '--config.model.likelihood=bernoulli')


def ddpm_args(workdir, tfds_dir):
  return ['--config=configs/ddpm_digits.py', f'--workdir={workdir}',
          f'--config.data.data_dir={tfds_dir}', '--config.data.batch_size=32',
          '--config.model.dropout=0.1', '--config.train.log_every=1',
          '--config.sample.every_steps=0', '--config.data.random_flip=True']


def conditional_ddpm_args(workdir, tfds_dir):
  return [*ddpm_args(workdir, tfds_dir), '--config.model.num_classes=10',
          '--config.diffusion.label_dropout=0.3']


def edm_args(workdir, tfds_dir):
  return [*ddpm_args(workdir, tfds_dir), '--config.diffusion.formulation=edm',
          '--config.sample.sampler=heun', '--config.sample.spacing=karras']


def gan_args(workdir, tfds_dir):
  return gan_digits_args(workdir, tfds_dir, '--config.train.log_every=1',
                         '--config.sample.every_steps=0', '--config.data.random_flip=True')


def conditional_gan_args(workdir, tfds_dir):
  return [*gan_args(workdir, tfds_dir), '--config.model.num_classes=10']


def without_timing(rows):
  return [{k: v for k, v in row.items() if k not in ('steps_per_sec', 'data_wait')}
          for row in rows]


@pytest.mark.parametrize('make_args,num_steps,every', [
    pytest.param(vae_args, 1500, 100, id='vae', marks=pytest.mark.slow),
    pytest.param(ddpm_args, 300, 50, id='ddpm', marks=pytest.mark.slow),
    pytest.param(conditional_ddpm_args, 300, 50, id='conditional_ddpm', marks=pytest.mark.slow),
    pytest.param(edm_args, 300, 50, id='edm', marks=pytest.mark.slow),
    pytest.param(gan_args, 300, 50, id='gan'),
    pytest.param(conditional_gan_args, 300, 50, id='conditional_gan', marks=pytest.mark.slow)])
def test_sigkill_and_restart_reproduces_the_uninterrupted_run(tmp_path, tfds_dir, make_args,
                                                               num_steps, every):
  def args(workdir):
    return [*make_args(workdir, tfds_dir), f'--config.train.num_steps={num_steps}',
            f'--config.checkpoint.every_steps={every}']

  reference, resumed = str(tmp_path / 'reference'), str(tmp_path / 'resumed')
  run_cli(*args(reference))

  env = dict(os.environ, PYTHONPATH=REPO, XLA_FLAGS='--xla_force_host_platform_device_count=1')
  process = subprocess.Popen([sys.executable, '-m', 'gen_jax.main', *args(resumed)],
                             cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  first = os.path.join(resumed, 'checkpoints', str(every))
  deadline = time.time() + 300
  while not os.path.exists(os.path.join(first, 'commit_success.txt')):
    assert process.poll() is None and time.time() < deadline, 'no first checkpoint'
    time.sleep(0.005)
  process.send_signal(signal.SIGKILL)
  process.wait()
  killed_at = read_metrics(resumed)[-1]['step']
  assert every <= killed_at < num_steps, f'the kill came at step {killed_at}, not mid-run'

  run_cli(*args(resumed))
  expected, got = read_metrics(reference), read_metrics(resumed)
  assert [r['step'] for r in got] == list(range(1, num_steps + 1))
  assert without_timing(got) == without_timing(expected)  # bitwise: floats compare exactly
  state_a, step_a = restore_run(reference)
  state_b, step_b = restore_run(resumed)
  assert step_a == step_b == num_steps
  # The whole state: params, optimizer states, EMA, BatchNorm / spectral-norm statistics.
  for a, b in zip(jax.tree.leaves(state_a), jax.tree.leaves(state_b), strict=True):
    np.testing.assert_array_equal(a, b)
