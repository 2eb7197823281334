"""Reloading a trained run: gen_jax.load in a notebook, and the CLI from the workdir's
config.json alone; --mode=sample's checkpoint, output path and grid."""

import json
import os

import numpy as np
import pytest

import gen_jax
from tests.conftest import digits_args, run_cli


@pytest.fixture(scope='module')
def trained(tmp_path_factory, tfds_dir):
  """A 20-step digits VAE with checkpoints at 10 and 20, trained with size overrides."""
  workdir = str(tmp_path_factory.mktemp('loaded') / 'run')
  args = digits_args(workdir, tfds_dir, '--config.train.num_steps=20',
                     '--config.checkpoint.every_steps=10', '--config.sample.every_steps=0',
                     '--config.evals.likelihood.every_steps=0')
  run_cli(*args)
  return workdir, args


@pytest.mark.slow
def test_the_recorded_config_alone_samples_what_the_run_samples(trained, tmp_path):
  workdir, args = trained
  run_cli(*args, '--mode=sample', '--config.sample.num=6')
  with np.load(os.path.join(workdir, 'samples', 'samples_step_0000020.npz')) as f:
    expected = f['images']
  assert os.path.exists(os.path.join(workdir, 'samples', 'samples_step_0000020.png'))
  # Only the workdir's config.json: none of the size overrides the run was trained with.
  out = tmp_path / 'elsewhere' / 'early.npz'
  run_cli(f'--config={workdir}/config.json', f'--workdir={workdir}', '--mode=sample',
          '--config.sample.num=6', '--config.sample.checkpoint_step=10',
          f'--config.sample.output={out}')
  with np.load(out) as f:
    early = f['images']
  assert early.shape == expected.shape == (6, 8, 8, 1) and not np.array_equal(early, expected)
  assert (tmp_path / 'elsewhere' / 'early.png').exists()

  run = gen_jax.load(workdir)
  assert run.step == 20 and run.config.model.hidden == 32  # the override, recorded
  np.testing.assert_array_equal(run.sample(6), expected)
  np.testing.assert_array_equal(gen_jax.load(workdir, step=10).sample(6), early)


@pytest.mark.slow
def test_a_missing_checkpoint_step_is_one_line(trained):
  workdir, args = trained
  result = run_cli(*args, '--mode=sample', '--config.sample.checkpoint_step=15', check=False)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1].endswith('holds steps [10, 20]')


@pytest.mark.slow
def test_loaded_evaluate_gives_the_numbers_of_eval_mode(trained):
  workdir, args = trained
  run_cli(*args, '--mode=eval', '--config.eval.only=likelihood')
  with open(os.path.join(workdir, 'eval', 'likelihood', 'step_0000020.json')) as f:
    written = json.load(f)
  metrics = gen_jax.load(workdir).evaluate(('likelihood',))['likelihood']
  for key, value in metrics.items():
    assert value == pytest.approx(written[key], rel=1e-6), key
