"""The Ho et al. UNet: the CIFAR-10 model's parameter count, shapes, dropout, timestep embedding."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.models.song_unet import SongUNet
from gen_jax.models.unet import UNet, timestep_embedding
from gen_jax.nn import example_dropout


def num_params(model, size):
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)),
                                             jnp.zeros((1,), jnp.int32)))
  return sum(math.prod(x.shape) for x in jax.tree.leaves(shapes))


def test_cifar10_model_has_the_papers_parameter_count():
  """35.7M in Ho et al.; 35,746,307 exactly in the reference code's model."""
  assert num_params(UNet(), 32) == 35_746_307


def test_small_unet_keeps_the_shape_and_uses_dropout_only_in_training():
  model = UNet(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), dropout=0.5)
  x = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
  t = jnp.array([3, 900])
  variables = jax.jit(model.init)(jax.random.key(1), x, t)
  apply = jax.jit(model.apply, static_argnames='train')
  out = apply(variables, x, t)
  assert out.shape == (2, 16, 16, 3)
  np.testing.assert_array_equal(out, apply(variables, x, t))
  train = lambda x, t, ids: apply(variables, x, t, train=True, ids=ids,  # noqa: E731
                                  rngs={'dropout': jax.random.key(2)})
  both = train(x, t, jnp.array([7, 9]))
  assert not np.allclose(both, out)
  # An example's mask follows its id, not its place in the batch.
  swapped = train(x[::-1], t[::-1], jnp.array([9, 7]))
  np.testing.assert_allclose(swapped, both[::-1], rtol=1e-5, atol=1e-5)
  assert not np.allclose(train(x[::-1], t[::-1], jnp.array([8, 7]))[0], both[1])


def test_example_dropout_rate_and_scale():
  """Over 2 x 300k elements the dropped fraction is the rate within 5 standard errors, kept
  elements are x / (1 - rate) (up to the rate's rounding to 2^-16), and examples (and odd
  sizes) get independent masks."""
  x = jnp.ones((2, 300_001))
  for rate in (0.1, 0.5):
    y = example_dropout(x, rate, jax.random.key(0), jnp.array([0, 1]))
    dropped = np.asarray(y == 0)
    assert abs(dropped.mean() - rate) < 5 * math.sqrt(rate * (1 - rate) / dropped.size)
    np.testing.assert_allclose(np.asarray(y)[~dropped], 1 / (1 - rate), rtol=1e-4)
    assert 0.3 < (dropped[0] == dropped[1]).mean() < 0.95  # neither equal nor complementary


def test_example_dropout_rejects_a_rate_that_keeps_nothing():
  with pytest.raises(ValueError, match='dropout rate 1.0: expected a rate in'):
    example_dropout(jnp.ones((1, 4)), 1.0, jax.random.key(0), jnp.array([0]))


def test_timestep_embedding_closed_form():
  t = jnp.array([0, 1, 250])
  emb = timestep_embedding(t, 8)
  frequencies = np.exp(-np.log(10000.0) * np.arange(4) / 3)
  expected = np.concatenate([np.sin(np.outer([0, 1, 250], frequencies)),
                             np.cos(np.outer([0, 1, 250], frequencies))], axis=1)
  np.testing.assert_allclose(emb, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('unet', [UNet, pytest.param(SongUNet, marks=pytest.mark.slow)])
def test_remat_keeps_the_parameters_and_the_gradients(unet):
  """Rematerialized blocks: the same parameter tree, the same loss and gradients (dropout
  masks recomputed from the example ids), and the backward pass recomputes (`remat`)."""
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
  t, ids = jnp.array([3, 900]), jnp.array([7, 11])
  grads, variables = {}, None
  for remat in (False, True):
    model = unet(ch=32, ch_mult=(1,), num_res_blocks=1, attn_resolutions=(8,), dropout=0.3,
                 remat=remat)
    init = jax.jit(model.init)(jax.random.key(1), x, t)
    variables = init if variables is None else variables
    assert jax.tree.structure(init) == jax.tree.structure(variables)

    def loss(params, model=model):
      out = model.apply({'params': params}, x, t, train=True, ids=ids,
                        rngs={'dropout': jax.random.key(2)})
      return jnp.mean(out ** 2)

    grad_fn = jax.grad(loss)
    assert ('remat' in str(jax.make_jaxpr(grad_fn)(variables['params']))) == remat
    grads[remat] = jax.jit(grad_fn)(variables['params'])
  for a, b in zip(jax.tree.leaves(grads[False]), jax.tree.leaves(grads[True]), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
