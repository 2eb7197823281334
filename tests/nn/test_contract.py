"""The contract of every layer of `gen_jax.nn`: with the CPU kernels it computes the same
function as its plain flax form, with the same variables: values, first-order gradients and
the second-order gradients a gradient penalty takes, on one device and per device inside
`shard_map` on 8 devices (where BatchNorm's statistics are the global batch's)."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from gen_jax import nn as gnn
from gen_jax.nn import kernels
from gen_jax.nn.cpu import onednn

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _batch_norm(axis_name):
  return gnn.BatchNorm(use_running_average=False, momentum=0.9, axis_name=axis_name)


# name: (layer given the BatchNorm axis name, input shape [8, H, W, C], collections it updates)
CASES = {
    'conv3x3': (lambda _: gnn.Conv(7, (3, 3)), (8, 6, 5, 4), False),
    'conv3x3-stride2': (lambda _: gnn.Conv(7, (3, 3), strides=(2, 2)), (8, 6, 6, 4), False),
    'conv4x4-stride2': (lambda _: gnn.Conv(5, (4, 4), (2, 2)), (8, 8, 6, 20), False),
    'conv4x4-stride2-narrow': (lambda _: gnn.Conv(5, (4, 4), (2, 2)), (8, 8, 8, 3), False),
    'conv4x4-stride2-odd': (lambda _: gnn.Conv(5, (4, 4), (2, 2)), (8, 7, 7, 3), False),
    'conv1x1-nobias': (lambda _: gnn.Conv(6, (1, 1), use_bias=False), (8, 4, 4, 5), False),
    'conv_transpose4x4': (lambda _: gnn.ConvTranspose(5, (4, 4), (2, 2)), (8, 7, 5, 6), False),
    'conv_transpose-nobias': (lambda _: gnn.ConvTranspose(3, (4, 4), (2, 2), use_bias=False),
                              (8, 4, 4, 20), False),
    'dense': (lambda _: gnn.Dense(9), (8, 3, 2, 6), False),
    'batch_norm': (_batch_norm, (8, 3, 4, 16), ['batch_stats']),
    'batch_norm-per-device': (lambda _: _batch_norm(None), (8, 3, 4, 16), ['batch_stats']),
    'group_norm': (lambda _: gnn.GroupNorm(num_groups=4), (8, 3, 4, 16), False),
    'group_norm_silu': (lambda _: gnn.GroupNormSiLU(num_groups=4), (8, 3, 4, 16), False),
    'upsample': (lambda _: gnn.Upsample(), (8, 3, 5, 6), False),
    'upsample-to-features': (lambda _: gnn.Upsample(4), (8, 4, 4, 6), False),
    'downsample': (lambda _: gnn.Downsample(), (8, 6, 4, 5), False),
    'downsample-pool': (lambda _: gnn.Downsample(with_conv=False), (8, 6, 4, 5), False),
}


def _inputs(shape):
  x = 2.0 * jax.random.normal(jax.random.key(0), shape) + 0.5
  return x, jax.random.normal(jax.random.key(1), shape)


def _perturbed(variables):
  """Variables away from their init (scale 1, bias 0 would hide a mix-up); variances > 0."""
  leaves, tree = jax.tree.flatten(variables)
  keys = jax.random.split(jax.random.key(2), len(leaves))
  return jax.tree.unflatten(tree, [jnp.abs(v) + 0.5 if v.ndim == 1 and i % 2 else
                                   v + 0.3 * jax.random.normal(k, v.shape)
                                   for i, (v, k) in enumerate(zip(leaves, keys))])


def _functions(module, variables, mutable, reduce=lambda v: v):
  """(outputs, first-order gradients, second-order gradients) of `module` at (params, x):
  the loss is sum(sin(y) * w); the penalty is |d loss / d x|^2, as WGAN-GP takes it.
  `reduce` makes the loss and the updated statistics the same on every device."""

  def loss(params, x, w):
    out = module.apply({**variables, 'params': params} if params else variables, x,
                       mutable=mutable)
    y, updates = out if mutable else (out, {})
    return reduce(jnp.sum(jnp.sin(y) * w[..., :y.shape[-1]].mean() + jnp.sin(y) ** 2)), (
        y, updates)

  def penalty(params, x, w):
    dx = jax.grad(lambda x: loss(params, x, w)[0])(x)
    return reduce(jnp.sum(dx ** 2))

  def all_of(params, x, w):
    (_, (y, updates)), first = jax.value_and_grad(loss, (0, 1), has_aux=True)(params, x, w)
    return y, jax.tree.map(reduce, updates), first, jax.grad(penalty, (0, 1))(params, x, w)

  return all_of


def _assert_close(got, want, tol):
  assert jax.tree.structure(got) == jax.tree.structure(want)
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    scale = float(jnp.max(jnp.abs(w))) + 1e-6
    np.testing.assert_allclose(g, w, rtol=tol, atol=tol * scale)


def _traced(name, choice, mesh=None):
  """The case's variables and (y, updates, first, second) with `choice`'s kernels."""
  make, shape, mutable = CASES[name]
  x, w = _inputs(shape)
  with kernels.use(choice):
    module = make(None if mesh is None else 'data')
    variables = module.init(jax.random.key(3), x[:1])
    assert jax.tree.structure(variables) == jax.tree.structure(
        make(None).init(jax.random.key(3), x[:1]))
    variables = _perturbed(variables)
    if mesh is None:
      return variables, jax.jit(_functions(module, variables, mutable))(
          variables.get('params', {}), x, w)
    per_device = _functions(module, variables, mutable, reduce=lambda v: jax.lax.pmean(
        v, 'data'))
    mapped = jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P('data'), P('data')),
                           out_specs=(P('data'), P(), (P(), P('data')), (P(), P('data'))))
    batch = NamedSharding(mesh, P('data'))
    return variables, jax.jit(mapped)(variables.get('params', {}), jax.device_put(x, batch),
                                      jax.device_put(w, batch))


@pytest.fixture(autouse=True)
def _onednn_for_small_convs(monkeypatch):
  """The convs here are small: below `MIN_FLOPS` the CPU kernels would give them to XLA."""
  monkeypatch.setattr(onednn, 'MIN_FLOPS', 0)


# One case per CPU kernel runs by default; their variants run with the slow tests.
DEFAULT_CASES = ('conv3x3', 'conv4x4-stride2', 'conv_transpose4x4', 'dense', 'batch_norm',
                 'group_norm_silu', 'upsample', 'downsample')


@pytest.mark.parametrize('name', [name if name in DEFAULT_CASES else
                                  pytest.param(name, marks=pytest.mark.slow)
                                  for name in sorted(CASES)])
def test_cpu_kernels_equal_the_plain_layer(name):
  cpu_variables, cpu = _traced(name, 'cpu')
  xla_variables, xla = _traced(name, 'xla')
  _assert_close(cpu_variables, xla_variables, 0)  # the same initialisation
  y, updates, first, second = cpu
  _assert_close((y, updates, first), xla[:3], 2e-5)
  _assert_close(second, xla[3], 2e-4)


@pytest.mark.slow
def test_cpu_kernels_really_run():
  """Each layer with a CPU kernel traces to a custom VJP with them, and to none without."""
  for name in DEFAULT_CASES + ('group_norm',):
    make, shape, mutable = CASES[name]
    x, _ = _inputs(shape)
    texts = {}
    for choice in ('cpu', 'xla'):
      with kernels.use(choice):
        module = make(None)
        variables = module.init(jax.random.key(3), x[:1])
        texts[choice] = str(jax.make_jaxpr(
            lambda v, x: module.apply(v, x, mutable=mutable))(variables, x))  # noqa: B023
    assert 'custom_vjp' in texts['cpu'] and 'custom_vjp' not in texts['xla'], name


def check_all_in_shard_map() -> None:
  """Every case per device inside shard_map over all devices, the CPU kernels against the
  plain layer; run with 8 devices by the test below."""
  onednn.MIN_FLOPS = 0
  mesh = jax.make_mesh((jax.device_count(),), ('data',),
                       axis_types=(jax.sharding.AxisType.Auto,))
  for name in sorted(CASES):
    (_, cpu), (_, xla) = (_traced(name, choice, mesh) for choice in ('cpu', 'xla'))
    _assert_close(cpu[:3], xla[:3], 2e-5)
    _assert_close(cpu[3], xla[3], 2e-4)
  print(f'{len(CASES)} layers agree on {jax.device_count()} devices')


@pytest.mark.slow
def test_cpu_kernels_equal_the_plain_layer_inside_shard_map_on_8_devices():
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8', PYTHONPATH=REPO)
  code = 'from tests.nn.test_contract import check_all_in_shard_map; check_all_in_shard_map()'
  result = subprocess.run([sys.executable, '-c', code], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-4000:]
  assert f'{len(CASES)} layers agree on 8 devices' in result.stdout
