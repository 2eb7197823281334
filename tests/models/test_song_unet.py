"""EDM's DDPM++ network: the parameter count of NVlabs/edm's `SongUNet` for CIFAR-10 (counted
there layer by layer: 55,732,739; 1,408 more for map_label with 10 classes), and the shapes
and initial output its init gives."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.families import get_family
from gen_jax.models.song_unet import SongUNet
from tests.families.test_vae import load_config


@pytest.mark.parametrize('num_classes,expected', [(0, 55_732_739), (10, 55_734_147)])
def test_edm_cifar10_config_builds_edms_ddpmpp(num_classes, expected):
  config = load_config('edm_cifar10')
  config.model.num_classes = num_classes
  state = jax.eval_shape(get_family(config).init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  assert sum(math.prod(x.shape) for x in jax.tree.leaves(state.params)) == expected
  if num_classes:
    assert state.params['map_label']['kernel'].shape == (10, 128)


def test_a_small_ddpmpp_keeps_the_shape_and_starts_near_zero():
  """conv_out starts at EDM's init_zero (1e-5 x xavier), so F starts near 0 and D = c_skip x."""
  model = SongUNet(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), dropout=0.0,
                   out_ch=1, num_classes=3)
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
  labels = jnp.array([0, 3])  # 3: the null class, the all-zero one-hot
  params = model.init(jax.random.key(1), x, jnp.zeros((2,)), labels=labels)['params']
  out = model.apply({'params': params}, x, jnp.array([-1.0, 0.5]), labels=labels)
  assert out.shape == (2, 8, 8, 1)
  assert 0 < float(jnp.max(jnp.abs(out))) < 1e-3
  assert {'dec4_in0', 'dec4_in1', 'enc8_block0', 'enc4_down'} <= set(params)
  # Attention at 4x4: every encoder block there, the decoder's first block and its last.
  with_attention = {name for name, block in params.items() if 'qkv' in block}
  assert with_attention == {'enc4_block0', 'dec4_in0', 'dec4_block1'}
  np.testing.assert_array_equal(params['map_label']['kernel'].shape, (3, 32))
