"""The stride-1 convolutions equal XLA's strided and transposed ones, values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from gen_jax.models import layers


@pytest.mark.parametrize('up,hw', [(False, (8, 8)), (False, (14, 6)), (True, (8, 8)),
                                   (True, (14, 6)), (True, (7, 7))])
def test_stride1_matches_flax(up, hw):
  x = jax.random.normal(jax.random.key(0), (2, *hw, 3))
  module = layers.Conv2x(5, up=up, impl='stride1')
  variables = module.init(jax.random.key(1), x)
  variables = jax.tree.map(lambda v: v + 0.1, variables)  # a non-zero bias
  reference = (nn.ConvTranspose if up else nn.Conv)(5, (4, 4), (2, 2), 'SAME')
  expected = reference.apply(variables, x)
  np.testing.assert_allclose(module.apply(variables, x), expected, atol=1e-5, rtol=1e-5)
  xla = layers.Conv2x(5, up=up, impl='xla')
  np.testing.assert_allclose(xla.apply(variables, x), expected, atol=1e-5, rtol=1e-5)

  def loss(m, v, x):
    return jnp.sum(jnp.sin(m.apply(v, x)))

  g1 = jax.grad(loss, argnums=(1, 2))(module, variables, x)
  g2 = jax.grad(lambda v, x: jnp.sum(jnp.sin(reference.apply(v, x))), argnums=(0, 1))(
      variables, x)
  for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


def test_odd_input_is_rejected():
  with pytest.raises(ValueError, match='even height and width'):
    layers.conv_down_stride1(jnp.zeros((1, 7, 8, 2)), jnp.zeros((4, 4, 2, 3)))


def test_space_to_depth_inverts_depth_to_space():
  x = jnp.arange(2 * 4 * 6 * 3, dtype=jnp.float32).reshape(2, 4, 6, 3)
  np.testing.assert_array_equal(layers.depth_to_space(layers.space_to_depth(x)), x)
