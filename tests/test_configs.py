"""Every shipped config validates and builds its model: `--mode=summary` (shapes only, no
data) succeeds and every network has parameters; on 16 devices it counts the same and trains
two steps (slow)."""

import os

import numpy as np
import pytest

from gen_jax import modes
from tests.conftest import read_json, read_metrics, run_cli
from tests.families.test_vae import REPO, load_config

NAMES = sorted(name[:-3] for name in os.listdir(os.path.join(REPO, 'configs'))
               if name.endswith('.py'))


@pytest.mark.parametrize('name', NAMES)
def test_config_builds(name, tmp_path):
  config = load_config(name)
  result = modes.summary(config, str(tmp_path))
  assert result['num_params'] == sum(result['networks'].values())
  assert all(count > 0 for count in result['networks'].values()), result


# Offline stand-ins for two training steps: digits for every dataset (grey, so one channel,
# and 297 test examples), a narrower UNet for the 35.7M-parameter ones; batch sizes and
# everything else as shipped.
ON_DIGITS = ('--config.data.name=digits', '--config.data.channels=1', '--config.data.crop_size=0',
             '--config.train.num_steps=2', '--config.sample.every_steps=0')
EXTRA = {'ddpm_cifar10': ('--config.model.ch=32', '--config.model.ch_mult=(1,2)'),
         'ddpm_cifar10_cond': ('--config.model.ch=32', '--config.model.ch_mult=(1,2)'),
         'edm_cifar10': ('--config.model.ch=32', '--config.model.ch_mult=(1,2)',
                         '--config.model.num_res_blocks=1'),
         'classifier_mnist': ('--config.evals.likelihood.num_examples=297',)}


@pytest.mark.slow
@pytest.mark.parametrize('name', NAMES)
def test_config_summarises_and_trains_two_steps_on_16_devices(name, tmp_path, tfds_dir):
  common = (f'--config=configs/{name}.py', f'--config.data.data_dir={tfds_dir}')
  run_cli(*common, f'--workdir={tmp_path / "summary"}', '--mode=summary', devices=16)
  assert read_json(os.path.join(tmp_path, 'summary', 'summary.json')) == modes.summary(
      load_config(name), str(tmp_path / 'one_device'))
  workdir = str(tmp_path / 'train')
  run_cli(*common, f'--workdir={workdir}', *ON_DIGITS, *EXTRA.get(name, ()), devices=16)
  (last,) = [r for r in read_metrics(workdir) if r['step'] == 2]
  assert np.isfinite(last['loss'] if 'loss' in last else last['d_loss'])

