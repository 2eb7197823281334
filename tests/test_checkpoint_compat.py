"""Checkpoints written before the layer library (commit 0a47d4a, `tests/fixtures/main_0a47d4a`)
restore under the current code and give the samples that code wrote with `--mode=sample`.

Each fixture is the `checkpoints/` folder of a 20-step run of that commit, with SGD (so the
files are small), and its `samples/samples.npz`, made with the arguments below:

  python -m gen_jax.main --config=configs/CONFIG --workdir=W ARGS COMMON
      --config.optim.name=sgd --config.optim.learning_rate=0.01
      --config.data.data_dir=DIR --config.train.num_steps=20
      --config.checkpoint.every_steps=20 --config.sample.every_steps=0
  python -m gen_jax.main --config=configs/CONFIG --workdir=W --mode=sample (the same flags)
"""

import os
import shutil

import numpy as np
import pytest

from tests.conftest import REPO, run_cli

FIXTURES = os.path.join(REPO, 'tests', 'fixtures', 'main_0a47d4a')
COMMON = ('--config.sample.num=8', '--config.eval.batch_size=8', '--config.optim.name=sgd',
          '--config.optim.learning_rate=0.01')
RUNS = {
    'vae': ('vae_digits.py', '--config.data.image_size=8', '--config.data.batch_size=16',
            '--config.model.hidden=32', '--config.model.channels=(8,16)'),
    'dcgan': ('dcgan_mnist.py', '--config.data.name=digits', '--config.data.image_size=8',
              '--config.data.batch_size=32', '--config.model.g_channels=(32,)',
              '--config.model.d_channels=(16,32)'),
    'resnet_gan': ('sngan_resnet_cifar10.py', '--config.data.name=digits',
                   '--config.data.image_size=8', '--config.data.channels=1',
                   '--config.data.batch_size=10', '--config.gan.n_critic=2',
                   '--config.model.g_channels=(16,)', '--config.model.d_channels=(16,16,16)'),
    'ddpm': ('ddpm_digits.py', '--config.data.batch_size=16', '--config.sample.steps=5',
             '--config.model.dropout=0.1', '--config.model.ch_mult=(1,1)'),
}


@pytest.mark.parametrize('run, kernels', [
    ('vae', 'auto'), ('dcgan', 'auto'), ('resnet_gan', 'auto'), ('ddpm', 'auto'),
    pytest.param('ddpm', 'xla', marks=pytest.mark.slow)])
def test_old_checkpoints_give_the_same_samples(run, kernels, tmp_path, tfds_dir):
  workdir = tmp_path / run
  shutil.copytree(os.path.join(FIXTURES, run, 'checkpoints'), workdir / 'checkpoints')
  config, *args = RUNS[run]
  run_cli(f'--config=configs/{config}', f'--workdir={workdir}', '--mode=sample',
          f'--config.data.data_dir={tfds_dir}', f'--config.runtime.kernels={kernels}',
          *COMMON, *args)
  (written,) = (workdir / 'samples').glob('samples_step_*.npz')
  got = np.load(written)['images'].astype(int)
  want = np.load(os.path.join(FIXTURES, run, 'samples.npz'))['images'].astype(int)
  assert got.shape == want.shape == (8, 8, 8, 1)
  # uint8 pixels: float rounding (other kernels, other summation orders) may move a pixel
  # that lies near a rounding boundary by one level, and nothing more.
  assert np.abs(got - want).max() <= 1 and np.mean(got != want) < 0.02, (
      np.abs(got - want).max(), np.mean(got != want))
  assert np.std(want) > 1  # the samples vary, not a constant image
