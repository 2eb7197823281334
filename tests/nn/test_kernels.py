"""runtime.kernels: with 'xla' every family's train step is the plain model (no custom VJP, FFI
call or equation from `gen_jax.nn.cpu` in its jaxpr) and equals the same model built from
`flax.linen` layers; 'auto' picks the CPU kernels on a CPU backend only."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from gen_jax import experiment as experiment_lib
from gen_jax import parallel
from gen_jax.models import classifier, conv_vae, dcgan, gan_layers, resnet_gan, unet
from gen_jax.nn import kernels
from tests.families.test_vae import load_config


def _family_configs():
  vae = load_config('vae_digits')
  vae.model.update(channels=(8, 16), hidden=32)
  dcgan_ = load_config('dcgan_mnist')
  dcgan_.model.update(g_channels=(32,), d_channels=(16, 32))
  resnet = load_config('sngan_resnet_cifar10')
  resnet.model.update(g_channels=(16,), d_channels=(16, 16, 16))
  resnet.gan.n_critic = 2
  ddpm = load_config('ddpm_digits')
  ddpm.model.update(ch_mult=(1, 1), dropout=0.1)  # dropout, resampling and attention
  clf = load_config('classifier_mnist')
  clf.model.update(channels=(8, 16), features=16)
  configs = {'vae': vae, 'dcgan': dcgan_, 'resnet_gan': resnet, 'ddpm': ddpm,
             'classifier': clf}
  for config in configs.values():
    config.data.update(name='digits', image_size=8, channels=1, batch_size=8)
    config.eval.batch_size = 8
    config.optim.update(name='sgd', learning_rate=0.1, grad_clip=0.0, warmup_steps=0)
  return configs


CONFIGS = _family_configs()


def _batch(config):
  rng = np.random.default_rng(0)
  size = config.data.batch_size
  return {'image': rng.integers(0, 256, (size, 8, 8, 1), dtype=np.uint8),
          'label': rng.integers(0, 10, size).astype(np.int32),
          'id': np.arange(size, dtype=np.int32)}


def _step(config, choice, abstract=False):
  """(experiment, its initial state (or its shapes), the batch on the mesh) with `choice`'s
  kernels."""
  config = config.copy_and_resolve_references()
  config.runtime.kernels = choice
  exp = experiment_lib.build(config)
  state = exp.abstract_state if abstract else exp.init()
  return exp, state, parallel.shard_batch(_batch(config), exp.mesh)


def _equations(jaxpr):
  """Every equation of a closed jaxpr, those of its sub-jaxprs (scans, custom rules) included."""
  for eqn in jaxpr.eqns:
    yield eqn
    for param in eqn.params.values():
      for sub in (param if isinstance(param, (tuple, list)) else (param,)):
        if isinstance(sub, jax.extend.core.ClosedJaxpr):
          sub = sub.jaxpr
        if isinstance(sub, jax.extend.core.Jaxpr):
          yield from _equations(sub)


def _cpu_kernel_traces(fn, *args):
  """The custom-VJP and FFI equations of fn's jaxpr and those traced from gen_jax/nn/cpu."""
  jaxpr = jax.make_jaxpr(fn)(*args)
  found = []
  for eqn in _equations(jaxpr.jaxpr):
    frames = eqn.source_info.traceback.frames if eqn.source_info.traceback else []
    if ('custom_vjp' in eqn.primitive.name or 'ffi' in eqn.primitive.name
        or any('/gen_jax/nn/cpu/' in frame.file_name for frame in frames)):
      found.append(eqn.primitive.name)
  return found


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_xla_kernels_leave_no_cpu_kernel_in_the_train_step(name):
  for choice, expect_cpu in (('xla', False), ('cpu', True)):
    exp, state, batch = _step(CONFIGS[name], choice, abstract=True)
    found = _cpu_kernel_traces(exp.train_step, state, batch)
    assert bool(found) == expect_cpu, (choice, sorted(set(found)))


class _FlaxGroupNormSiLU(nn.GroupNorm):
  def __call__(self, x):
    return nn.silu(super().__call__(x))


class _FlaxResample(nn.Module):
  """Upsample / Downsample from flax's own layers: `jax.image.resize` or `nn.avg_pool`, and
  `nn.Conv` applied to this module's 'kernel' and 'bias'."""
  features: int | None = None
  with_conv: bool = True
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
  up: bool = True

  @nn.compact
  def __call__(self, x):
    b, h, w, c = x.shape
    if self.up:
      x = jax.image.resize(x, (b, 2 * h, 2 * w, c), 'nearest')
    elif not self.with_conv:
      return nn.avg_pool(x, (2, 2), (2, 2))
    if not self.with_conv:
      return x
    features = self.features or c
    conv = nn.Conv(features, (3, 3), strides=1 if self.up else 2, parent=None)
    params = {'kernel': self.param('kernel', self.kernel_init, (3, 3, c, features)),
              'bias': self.param('bias', nn.initializers.zeros_init(), (features,))}
    return conv.apply({'params': params}, x)


_FLAX_LAYERS = {'Conv': nn.Conv, 'ConvTranspose': nn.ConvTranspose, 'Dense': nn.Dense,
                'BatchNorm': nn.BatchNorm, 'GroupNorm': nn.GroupNorm,
                'GroupNormSiLU': _FlaxGroupNormSiLU,
                'Upsample': functools.partial(_FlaxResample, up=True),
                'Downsample': functools.partial(_FlaxResample, up=False)}


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_xla_kernels_equal_the_model_built_from_flax_layers(name, monkeypatch):
  """One SGD step: the same metrics and new state, so the same loss and gradients."""
  exp, state, batch = _step(CONFIGS[name], 'xla')
  ours = exp.train_step(state, batch)
  for module in (classifier, conv_vae, dcgan, gan_layers, resnet_gan, unet):
    for layer, flax_layer in _FLAX_LAYERS.items():
      if hasattr(module, layer):
        monkeypatch.setattr(module, layer, flax_layer)
  exp, state, batch = _step(CONFIGS[name], 'xla')
  flax_built = exp.train_step(state, batch)
  assert jax.tree.structure(ours) == jax.tree.structure(flax_built)
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(flax_built)):
    if jnp.issubdtype(a.dtype, jnp.floating):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    else:
      np.testing.assert_array_equal(a, b)


def test_auto_is_cpu_on_the_cpu_backend_only(monkeypatch):
  assert jax.default_backend() == 'cpu'
  assert kernels.resolve('auto') == 'cpu' and kernels.resolve('xla') == 'xla'
  monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
  assert kernels.resolve('auto') == 'xla' and kernels.resolve('cpu') == 'cpu'
  with pytest.raises(ValueError, match="runtime.kernels='cuda': expected one of"):
    kernels.resolve('cuda')


def test_bound_functions_keep_their_choice_whoever_traces_them():
  traced = {}

  def record(name):
    traced[name] = kernels.cpu()

  with kernels.use('cpu'):
    as_xla = kernels.bind('xla', lambda: record('xla'))
  as_cpu = kernels.bind('cpu', lambda: record('cpu'))
  with kernels.use('xla'):
    as_cpu()
  as_xla()
  assert traced == {'xla': False, 'cpu': True}
