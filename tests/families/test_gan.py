"""GAN family: losses by hand, penalties against finite differences, spectral norm against
the SVD, the two-network step against a plain re-derivation, training, errors, the DCGAN and
ResNet networks' parameter counts."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax import gan_losses, parallel
from gen_jax.errors import UserError
from gen_jax.families import get_family
from gen_jax.models.dcgan import Discriminator, Generator
from gen_jax.models.resnet_gan import ResNetDiscriminator, ResNetGenerator
from gen_jax.nn import upsample_nearest
from gen_jax.parallel import BATCH, REPLICATED
from gen_jax.rng import example_keys
from tests.families.test_vae import digit_batch, load_config, train

REAL, FAKE = [2.0, -1.0, 0.5], [0.5, -3.0, 1.5]


def digits_gan(tfds_dir, **gan):
  config = load_config('dcgan_mnist')
  config.data.update(name='digits', image_size=8, batch_size=16, data_dir=tfds_dir)
  config.model.update(g_channels=(32,), d_channels=(16, 32))
  config.gan.update(gan)
  return config


def softplus(x):
  return math.log1p(math.exp(x))


def mean(values):
  return sum(values) / len(values)


@pytest.mark.parametrize('name,d_real,d_fake,g', [
    ('non_saturating', mean([softplus(-r) for r in REAL]), mean([softplus(f) for f in FAKE]),
     mean([softplus(-f) for f in FAKE])),
    ('hinge', mean([max(0, 1 - r) for r in REAL]), mean([max(0, 1 + f) for f in FAKE]),
     -mean(FAKE)),
    ('wasserstein', -mean(REAL), mean(FAKE), -mean(FAKE)),
    ('least_squares', mean([0.5 * (r - 1) ** 2 for r in REAL]), mean([0.5 * f ** 2 for f in FAKE]),
     mean([0.5 * (f - 1) ** 2 for f in FAKE])),
])
def test_losses_by_hand(name, d_real, d_fake, g):
  terms = gan_losses.LOSSES[name](jnp.array(REAL), jnp.array(FAKE))
  np.testing.assert_allclose(terms, [d_real + d_fake, d_real, d_fake, g], rtol=1e-6)


def critic_in_float64():
  """A layer-norm DCGAN critic on 8x8x1 images, in float64, as a function of images."""
  model = Discriminator((8, 16), norm='layer')
  params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), train=False)
  params = jax.tree.map(lambda p: p.astype(jnp.float64) * 20, params)  # a steep critic
  return lambda x: model.apply(params, x, train=True)


def fd_gradient_norms(critic, x, h=1e-5):
  """||d critic(x_i) / d x_i|| by central differences, pixel by pixel: [B]."""
  flat = np.asarray(x).reshape(x.shape[0], -1)
  grads = np.zeros_like(flat)
  for j in range(flat.shape[1]):
    step = np.zeros_like(flat)
    step[:, j] = h
    up = critic(jnp.asarray((flat + step).reshape(x.shape)))
    down = critic(jnp.asarray((flat - step).reshape(x.shape)))
    grads[:, j] = (np.asarray(up) - np.asarray(down)) / (2 * h)
  return np.linalg.norm(grads, axis=1)


def test_penalties_match_finite_differences():
  with jax.enable_x64(True):
    critic = critic_in_float64()
    real = jax.random.uniform(jax.random.key(1), (4, 8, 8, 1), jnp.float64, -1, 1)
    fake = jax.random.uniform(jax.random.key(2), (4, 8, 8, 1), jnp.float64, -1, 1)
    mix = jnp.array([0.0, 0.3, 0.7, 1.0])
    x_hat = mix[:, None, None, None] * real + (1 - mix[:, None, None, None]) * fake
    norms = fd_gradient_norms(critic, x_hat)
    assert np.all(np.abs(norms - 1) > 0.05)  # not already at the penalty's minimum
    np.testing.assert_allclose(gan_losses.gradient_penalty(critic, real, fake, mix),
                               np.mean((norms - 1) ** 2), rtol=1e-6)
    np.testing.assert_allclose(gan_losses.r1_penalty(critic, real),
                               np.mean(fd_gradient_norms(critic, real) ** 2), rtol=1e-6)


def test_spectral_norm_converges_to_the_largest_singular_value():
  model = Discriminator((8, 16), norm='none', spectral_norm=True)
  x = jnp.zeros((2, 8, 8, 1))
  variables = model.init(jax.random.key(0), x, train=False)
  stats = variables['batch_stats']
  for _ in range(200):  # one power iteration per training call
    _, updates = model.apply({**variables, 'batch_stats': stats}, x, train=True,
                             mutable=['batch_stats'])
    stats = updates['batch_stats']
  for i, layer in enumerate(('Conv2x_0', 'Conv2x_1', 'Dense_0')):
    kernel = np.asarray(variables['params'][layer]['kernel'])
    expected = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0]
    sigma = stats[f'SpectralNorm_{i}'][f'{layer}/kernel/sigma']
    np.testing.assert_allclose(sigma, expected, rtol=1e-4)


def test_one_step_equals_separate_d_then_g_updates(tfds_dir):
  """The jitted step against a plain re-derivation with SGD: D steps on its own loss with the
  fakes held fixed, then G on its own loss through the updated D (a fresh G forward pass,
  where the family reuses its VJP). So neither update leaks into the other network."""
  config = digits_gan(tfds_dir)
  config.optim.update(name='sgd', learning_rate=0.5, grad_clip=0.0)
  config.optim_d = {'learning_rate': 0.2}
  family = get_family(config)
  batch = digit_batch(config, 16)
  rng = jax.random.key(7)
  generator = Generator((32,), 8, 1, axis_name=parallel.DATA_AXIS)
  discriminator = Discriminator((16, 32), axis_name=parallel.DATA_AXIS)
  mesh = parallel.make_mesh()

  def reference(state, batch):
    g, d = state.params['generator'], state.params['discriminator']
    g_vars = {'params': g, **state.model_state['generator']}
    d_state = state.model_state['discriminator']
    z = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 0), (100,)))(
        example_keys(rng, batch['id']))
    critic = lambda p, x: discriminator.apply({'params': p, **d_state}, x, train=True,  # noqa: E731
                                              mutable=['batch_stats'])[0]
    fake, _ = generator.apply(g_vars, z, train=True, mutable=['batch_stats'])

    def d_loss(p):
      return parallel.pmean(jnp.mean(jax.nn.softplus(-critic(p, batch['image'])))
                            + jnp.mean(jax.nn.softplus(critic(p, fake))))

    d = jax.tree.map(lambda p, gr: p - 0.2 * gr, d, jax.grad(d_loss)(d))

    def g_loss(p):
      images, _ = generator.apply({**g_vars, 'params': p}, z, train=True,
                                  mutable=['batch_stats'])
      return parallel.pmean(jnp.mean(jax.nn.softplus(-critic(d, images))))

    g = jax.tree.map(lambda p, gr: p - 0.5 * gr, g, jax.grad(g_loss)(g))
    return {'generator': g, 'discriminator': d}

  state = jax.jit(family.init)(jax.random.key(0), batch['image'])
  expected = parallel.data_parallel(reference, mesh, (REPLICATED, BATCH), REPLICATED)(
      state, batch)
  new_state, metrics = parallel.data_parallel(
      lambda s, b: family.train_step(s, b, rng), mesh, (REPLICATED, BATCH), REPLICATED)(
          state, batch)
  for name in ('generator', 'discriminator'):
    moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), new_state.params[name],
                         state.params[name])
    assert max(jax.tree.leaves(moved)) > 1e-4, f'{name} did not move'
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                 new_state.params[name], expected[name])
  assert set(metrics) >= {'d_loss', 'g_loss', 'd_real', 'd_fake', 'd_grad_norm', 'g_grad_norm'}


def test_training_separates_real_from_fake_and_samples_follow_their_ids(tfds_dir):
  config = digits_gan(tfds_dir)
  state, history = train(config, 100)
  assert all(np.isfinite(v) for m in history for v in m.values())
  # D learns to tell them apart at first: its logits on real and fake images separate.
  assert np.mean([m['d_real'] - m['d_fake'] for m in history[:30]]) > 0.1
  family = get_family(config)
  whole = family.sample(state.ema_params, jax.random.key(1), jnp.arange(6))
  part = family.sample(state.ema_params, jax.random.key(1), jnp.arange(3, 6))
  assert whole.shape == (6, 8, 8, 1) and bool(jnp.all(jnp.abs(whole) <= 1))
  np.testing.assert_allclose(whole[3:], part, atol=1e-5)
  # The EMA generator includes its BatchNorm statistics, averaged like its weights.
  assert set(state.ema_params['generator']) == {'params', 'batch_stats'}


@pytest.mark.parametrize('key,value,message', [
    ('gan.loss', 'minimax', "gan.loss='minimax'"),
    ('gan.gp_weight', 10.0, "use model.d_norm='layer' or 'none'"),
    ('gan.n_critic', 5, 'data.batch_size=16 does not divide by gan.n_critic=5'),
    ('model.d_norm', 'group', "model.d_norm='group'"),
    ('model.g_channels', (32, 16), 'data.image_size=8 must be a grid of 3 or more'),
    ('model.arch', 'stylegan', "model.arch='stylegan'"),
    ('model.arch', 'resnet', "model.d_norm='batch'.* with model.arch='resnet'"),
])
def test_bad_values_are_clear_errors(tfds_dir, key, value, message):
  config = digits_gan(tfds_dir)
  section, name = key.split('.')
  config[section][name] = value
  with pytest.raises(UserError, match=message):
    get_family(config)


def count_params(model, *args, **kwargs):
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), *args, train=False, **kwargs))
  return sum(math.prod(x.shape) for x in jax.tree.leaves(shapes['params']))


def test_resnet_32_has_the_reference_parameter_counts():
  """SN-GAN's CIFAR-10 ResNet, counted by hand from its reference code (all biased but D's last).
  G: linear 128 -> 4*4*256 (528,384); per up-block two BN (2 x 512), two 3x3 convs
  (2 x 590,080) and the 1x1 shortcut (65,792), x3 (3,740,928); final BN and 3x3 conv to RGB
  (512 + 6,915): 4,276,739. D: first block 3x3 3->128 (3,584), 3x3 (147,584), 1x1 shortcut
  (512); second (downsampling) block 2 x 147,584 + 16,512; two blocks of 2 x 147,584; the
  bias-free linear layer (128): 1,053,824."""
  generator = ResNetGenerator((256, 256, 256), 32, 3)
  assert count_params(generator, jnp.zeros((1, 128))) == 4_276_739
  assert count_params(ResNetDiscriminator((128,) * 4), jnp.zeros((1, 32, 32, 3))) == 1_053_824


@pytest.mark.slow
def test_resnet_shapes_and_resampling():
  x = jax.random.normal(jax.random.key(0), (2, 4, 6, 3))
  np.testing.assert_array_equal(upsample_nearest(x), jnp.repeat(jnp.repeat(x, 2, 1), 2, 2))
  generator = ResNetGenerator((16, 8), 16, 3)
  z = jax.random.normal(jax.random.key(1), (2, 10))
  variables = jax.jit(generator.init, static_argnames='train')(jax.random.key(2), z, train=False)
  images = jax.jit(generator.apply, static_argnames='train')(variables, z, train=False)
  assert images.shape == (2, 16, 16, 3) and bool(jnp.all(jnp.abs(images) <= 1))
  critic = ResNetDiscriminator((8, 8, 8, 8), spectral_norm=True)
  variables = jax.jit(critic.init, static_argnames='train')(jax.random.key(3), images,
                                                            train=False)
  # Two downsamplings of 16 px: the last blocks run at 4x4.
  logits, inner = jax.jit(lambda v, x: critic.apply(v, x, train=False,
                                                    capture_intermediates=True))(variables, images)
  assert logits.shape == (2,)
  assert inner['intermediates']['SpectralNorm_7']['__call__'][0].shape == (2, 4, 4, 8)


def test_resnet_sngan_trains(tfds_dir):
  config = digits_gan(tfds_dir, loss='hinge')
  config.model.update(arch='resnet', g_channels=(32,), d_channels=(16, 16, 16), d_norm='none',
                      spectral_norm=True)
  state, history = train(config, 40)
  assert all(np.isfinite(v) for m in history for v in m.values())
  assert np.mean([m['d_real'] - m['d_fake'] for m in history[:20]]) > 0.1
  assert 'SpectralNorm_0' in state.model_state['discriminator']['batch_stats']


def test_dcgan_64_has_the_reference_parameter_counts():
  """PyTorch's DCGAN at 64 px, z = 100, no conv biases: G 3,576,704 and D 2,765,568."""
  assert count_params(Generator((512, 256, 128, 64), 64, 3), jnp.zeros((1, 100))) == 3_576_704
  assert count_params(Discriminator((64, 128, 256, 512)), jnp.zeros((1, 64, 64, 3))) == 2_765_568
