"""The dot-product BatchNorm, GroupNorm, Conv and Dense equal flax's, values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from gen_jax.models import layers, norms

X = 3.0 * jax.random.normal(jax.random.key(0), (4, 6, 5, 64)) + 1.0
WEIGHTS = jax.random.normal(jax.random.key(1), (4, 6, 5, 64))


def perturbed(variables):
  """Parameters away from their init (scale 1, bias 0 would hide a mix-up)."""
  leaves, tree = jax.tree.flatten(variables)
  keys = jax.random.split(jax.random.key(2), len(leaves))
  return jax.tree.unflatten(tree, [v + 0.3 * jax.random.normal(k, v.shape)
                                   for v, k in zip(leaves, keys)])


def outputs_and_grads(module, variables, x, mutable=False):
  """(y, updated collections, d loss / d params, d loss / d x) for loss = sum(sin(y) * w)."""
  def loss(params, x):
    out = module.apply({**variables, 'params': params}, x, mutable=mutable)
    y, updates = out if mutable else (out, {})
    w = WEIGHTS[tuple(slice(n) for n in y.shape)]
    return jnp.sum(jnp.sin(y) * w), (y, updates)

  (_, (y, updates)), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
      variables['params'], x)
  return y, updates, *grads


def assert_trees_close(a, b, tol=2e-5):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(u, v, rtol=tol, atol=tol * float(jnp.max(jnp.abs(v)) + 1))


def test_channel_sum_is_the_sum_over_all_but_the_last_axis():
  np.testing.assert_allclose(norms.channel_sum(X), jnp.sum(X, (0, 1, 2)), rtol=1e-5)
  np.testing.assert_allclose(norms.channel_sum(X, WEIGHTS), jnp.sum(X * WEIGHTS, (0, 1, 2)),
                             rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize('train', [True, False])
def test_batch_norm_matches_flax(train):
  kwargs = dict(use_running_average=not train, momentum=0.9, epsilon=1e-5)
  ours, theirs = norms.BatchNorm(**kwargs), nn.BatchNorm(**kwargs)
  variables = perturbed(theirs.init(jax.random.key(3), X))
  variables['batch_stats']['var'] = jnp.abs(variables['batch_stats']['var'])
  assert_trees_close(ours.init(jax.random.key(3), X), theirs.init(jax.random.key(3), X))
  mutable = ['batch_stats'] if train else False
  assert_trees_close(outputs_and_grads(ours, variables, X, mutable),
                     outputs_and_grads(theirs, variables, X, mutable))


def test_batch_norm_statistics_and_gradients_are_global_inside_shard_map():
  """On a 1-device mesh with axis_name='data' (the train step's setting), the psums and the
  varying-axis casts run and the results are still flax's."""
  mesh = jax.make_mesh((1,), ('data',))
  kwargs = dict(use_running_average=False, momentum=0.9, epsilon=1e-5, axis_name='data')
  variables = perturbed(nn.BatchNorm(use_running_average=True).init(jax.random.key(3), X))

  def run(module):
    def per_device(variables, x):
      return outputs_and_grads(module, variables, x, ['batch_stats'])
    mapped = jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P('data')),
                           out_specs=(P('data'), P(), P(), P('data')))
    return jax.jit(mapped)(variables, jax.device_put(X, NamedSharding(mesh, P('data'))))

  assert_trees_close(run(norms.BatchNorm(**kwargs)), run(nn.BatchNorm(**kwargs)))


class FlaxGroupNormSilu(nn.GroupNorm):
  """silu(nn.GroupNorm(x)), with nn.GroupNorm's variables."""

  def __call__(self, x):
    return nn.silu(super().__call__(x))


@pytest.mark.parametrize('silu', [False, True], ids=['plain', 'silu'])
def test_group_norm_matches_flax(silu):
  ours = norms.GroupNorm(32, 1e-6, silu=silu)
  theirs = (FlaxGroupNormSilu if silu else nn.GroupNorm)(num_groups=32, epsilon=1e-6)
  variables = perturbed(theirs.init(jax.random.key(3), X))
  assert_trees_close(ours.init(jax.random.key(3), X), theirs.init(jax.random.key(3), X))
  assert_trees_close(outputs_and_grads(ours, variables, X),
                     outputs_and_grads(theirs, variables, X))


def test_group_norm_rejects_channels_that_do_not_split():
  with pytest.raises(ValueError, match='48 channels do not split into 32 groups'):
    norms.GroupNorm(32).init(jax.random.key(0), jnp.zeros((1, 2, 2, 48)))


@pytest.mark.parametrize('ours,theirs', [
    (layers.Conv(7, (3, 3)), nn.Conv(7, (3, 3))),
    (layers.Conv(7, (3, 3), strides=(2, 2)), nn.Conv(7, (3, 3), strides=(2, 2))),
    (layers.Conv(7, (1, 1), use_bias=False), nn.Conv(7, (1, 1), use_bias=False)),
    (layers.Dense(9), nn.Dense(9))], ids=['conv', 'conv-stride2', 'conv-nobias', 'dense'])
def test_conv_and_dense_match_flax(ours, theirs):
  init = theirs.init(jax.random.key(3), X)
  assert_trees_close(ours.init(jax.random.key(3), X), init)
  variables = perturbed(init)
  assert_trees_close(outputs_and_grads(ours, variables, X),
                     outputs_and_grads(theirs, variables, X))
