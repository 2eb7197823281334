"""The stride-1 and mixed convolutions equal XLA's strided and transposed ones, and `dense` a
plain dot: values, gradients and the second-order gradients a gradient penalty takes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from gen_jax.models import layers

_SHAPES = [(False, (8, 8), 3), (False, (14, 6), 3), (False, (8, 8), 20), (True, (8, 8), 3),
           (True, (14, 6), 3), (True, (7, 7), 3), (True, (8, 8), 20)]


@pytest.mark.parametrize('impl', ['stride1', 'mixed'])
@pytest.mark.parametrize('up,hw,channels', _SHAPES)
def test_matches_flax(impl, up, hw, channels):
  x = jax.random.normal(jax.random.key(0), (2, *hw, channels))
  module = layers.Conv2x(5, up=up, impl=impl)
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


@pytest.mark.parametrize('up,channels', [(False, 3), (False, 20), (True, 20)])
def test_mixed_second_order_gradients_match_xla(up, channels):
  """The gradient of a gradient penalty (WGAN-GP, R1) differentiates the custom VJP's backward."""
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, channels))
  kernel = jax.random.normal(jax.random.key(1), (4, 4, channels, 5)) * 0.2
  convs = (layers.conv_up_mixed, layers.conv_up_xla) if up else (
      layers.conv_down_mixed, layers.conv_down_xla)

  def penalty(x, kernel, conv):
    input_grad = jax.grad(lambda x: jnp.sum(jnp.tanh(conv(x, kernel))))(x)
    return jnp.sum(input_grad ** 2)

  mixed, xla = (jax.grad(penalty, argnums=(0, 1))(x, kernel, conv) for conv in convs)
  for a, b in zip(mixed, xla):
    np.testing.assert_allclose(a, b, atol=1e-4 * float(jnp.abs(b).max()), rtol=1e-4)


def test_dense_second_order_gradients_match_a_plain_dot():
  """`dense`'s custom VJP, differentiated twice as a gradient penalty does, on [B, H, W, C]."""
  x = jax.random.normal(jax.random.key(0), (2, 3, 4, 6))
  kernel = jax.random.normal(jax.random.key(1), (6, 5))

  def penalty(x, kernel, dense):
    input_grad = jax.grad(lambda x: jnp.sum(jnp.tanh(dense(x, kernel))))(x)
    return jnp.sum(input_grad ** 2) + jnp.sum(jnp.sin(dense(x, kernel)))

  ours, plain = (jax.grad(penalty, argnums=(0, 1))(x, kernel, dense)
                 for dense in (layers.dense, lambda x, kernel: x @ kernel))
  for a, b in zip(ours, plain):
    np.testing.assert_allclose(a, b, atol=1e-4 * float(jnp.abs(b).max()), rtol=1e-4)


@pytest.mark.parametrize('conv', [layers.conv_down_stride1, layers.conv_down_mixed])
def test_odd_input_is_rejected(conv):
  with pytest.raises(ValueError, match='even height and width'):
    conv(jnp.zeros((1, 7, 8, 2)), jnp.zeros((4, 4, 2, 3)))


def test_space_to_depth_inverts_depth_to_space():
  x = jnp.arange(2 * 4 * 6 * 3, dtype=jnp.float32).reshape(2, 4, 6, 3)
  np.testing.assert_array_equal(layers.depth_to_space(layers.space_to_depth(x)), x)


@pytest.mark.parametrize('hw', [(4, 4), (5, 3)])
def test_upsample_conv_matches_resize_then_conv(hw):
  x = jax.random.normal(jax.random.key(0), (2, *hw, 6))
  module = layers.Conv(4, (3, 3), upsample=True)
  variables = jax.tree.map(lambda v: v + 0.1, module.init(jax.random.key(1), x))
  reference = nn.Conv(4, (3, 3))

  def upsampled(x):
    return jax.image.resize(x, (x.shape[0], 2 * hw[0], 2 * hw[1], x.shape[3]), 'nearest')

  np.testing.assert_allclose(module.apply(variables, x), reference.apply(variables, upsampled(x)),
                             atol=1e-5, rtol=1e-5)
  grads = jax.grad(lambda v, x: jnp.sum(jnp.sin(module.apply(v, x))), argnums=(0, 1))(
      variables, x)
  expected = jax.grad(lambda v, x: jnp.sum(jnp.sin(reference.apply(v, upsampled(x)))),
                      argnums=(0, 1))(variables, x)
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


def test_upsample_conv_needs_a_3x3_kernel():
  with pytest.raises(ValueError, match=r'3x3 kernel and stride 1, got \(1, 1\)'):
    layers.Conv(4, (1, 1), upsample=True).init(jax.random.key(0), jnp.zeros((1, 4, 4, 2)))
