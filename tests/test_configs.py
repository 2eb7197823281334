"""Every shipped config validates and builds its model: `--mode=summary` (shapes only, no
data) succeeds and every network has parameters."""

import os

import pytest

from gen_jax import modes
from tests.families.test_vae import REPO, load_config

NAMES = sorted(name[:-3] for name in os.listdir(os.path.join(REPO, 'configs'))
               if name.endswith('.py'))


@pytest.mark.parametrize('name', NAMES)
def test_config_builds(name, tmp_path):
  config = load_config(name)
  result = modes.summary(config, str(tmp_path))
  assert result['num_params'] == sum(result['networks'].values())
  assert all(count > 0 for count in result['networks'].values()), result
