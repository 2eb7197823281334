"""The class-conditional GAN: conditional BatchNorm and the projection discriminator against
their closed forms, the SN-GAN projection ResNet's parameter counts, training and sampling by
class."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.families import get_family
from gen_jax.models.dcgan import Discriminator
from gen_jax.models.gan_layers import ConditionalBatchNorm
from gen_jax.models.resnet_gan import ResNetDiscriminator, ResNetGenerator
from tests.families.test_gan import count_params, digits_gan
from tests.families.test_vae import train

IMAGES = jnp.linspace(-1.0, 1.0, 4 * 8 * 8).reshape(4, 8, 8, 1) ** 3
LABELS = jnp.array([0, 2, 1, 2])


@pytest.mark.parametrize('model', [
    Discriminator((8, 16), norm='none', num_classes=3),
    ResNetDiscriminator((8, 8, 8), num_classes=3)], ids=['dcgan', 'resnet'])
def test_projection_discriminator_is_the_head_plus_the_class_embedding_inner_product(model):
  """logit(x, y) = w . phi(x) + b + E[y] . phi(x) (Miyato & Koyama 2018, eq. 3), with a
  hand-made embedding E and phi the features the discriminator's last layer sees."""
  variables = model.init(jax.random.key(0), IMAGES, train=False, labels=LABELS)
  params = jax.tree.map(np.asarray, variables['params'])
  features = params['class_embedding']['embedding'].shape[1]
  embedding = np.arange(3 * features, dtype=np.float32).reshape(3, features) / features - 1.0
  params['class_embedding']['embedding'] = embedding
  logits, inner = model.apply({**variables, 'params': params}, IMAGES, train=False,
                              labels=LABELS, mutable=['intermediates'])
  (phi,) = inner['intermediates']['features']
  (head,) = [layer for layer in params.values()
             if layer.get('kernel', np.zeros(0)).shape == (features, 1)]
  expected = phi @ head['kernel'][:, 0] + head.get('bias', np.zeros(1))[0]
  expected = expected + np.sum(embedding[np.asarray(LABELS)] * phi, axis=1)
  np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


def test_conditional_batch_norm_scales_and_shifts_by_class():
  """The batch's statistics per channel, then its class's gamma and beta (hand-made)."""
  x = jax.random.normal(jax.random.key(0), (4, 3, 3, 2)) * 3.0 + 1.0
  layer = ConditionalBatchNorm(num_classes=3, train=True)
  variables = layer.init(jax.random.key(1), x, LABELS)
  gamma = np.array([[1.0, 2.0], [0.5, -1.0], [3.0, 0.0]], np.float32)
  beta = np.array([[0.0, 1.0], [-2.0, 0.5], [4.0, 3.0]], np.float32)
  params = {'gamma': {'embedding': gamma}, 'beta': {'embedding': beta}}
  out, _ = layer.apply({**variables, 'params': params}, x, LABELS, mutable=['batch_stats'])
  x = np.asarray(x, np.float64)
  normalized = (x - x.mean(axis=(0, 1, 2))) / np.sqrt(x.var(axis=(0, 1, 2)) + 1e-5)
  y = np.asarray(LABELS)
  expected = normalized * gamma[y][:, None, None] + beta[y][:, None, None]
  np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
  assert 'scale' not in variables['params'].get('BatchNorm_0', {})


def test_sngan_projection_resnet_has_the_reference_parameter_counts():
  """Miyato & Koyama's 32 px projection models (pfnet-research/sngan_projection,
  `gen_models/resnet_32.py` with n_classes=10, `dis_models/snresnet_32.py`), counted from
  the unconditional ones: G's six block BatchNorms trade their scale and bias (6 x 512) for
  a per-class gamma and beta (6 x 2 x 10 x 256): 4,276,739 - 3,072 + 30,720 = 4,304,387;
  D adds the class embedding (10 x 128): 1,053,824 + 1,280 = 1,055,104."""
  generator = ResNetGenerator((256, 256, 256), 32, 3, num_classes=10)
  labels = jnp.zeros((1,), jnp.int32)
  assert count_params(generator, jnp.zeros((1, 128)), labels=labels) == 4_304_387
  discriminator = ResNetDiscriminator((128,) * 4, spectral_norm=True, num_classes=10)
  assert count_params(discriminator, jnp.zeros((1, 32, 32, 3)), labels=labels) == 1_055_104


@pytest.mark.slow
def test_conditional_gan_trains_and_samples_follow_their_class_and_id(tfds_dir):
  config = digits_gan(tfds_dir, loss='hinge')
  config.model.update(num_classes=10, d_norm='none', spectral_norm=True)
  state, history = train(config, 60)
  assert all(np.isfinite(v) for m in history for v in m.values())
  # D with spectral norm separates real from fake within tens of steps
  assert np.mean([m['d_real'] - m['d_fake'] for m in history[40:]]) > 0.1
  # the trained generator (its EMA has barely left the class-blind initialisation)
  params = {'generator': {'params': state.params['generator'],
                          **state.model_state['generator']}}
  ids = jnp.arange(4)
  balanced = get_family(config).sample(params, jax.random.key(1), ids)  # classes 0, 1, 2, 3
  config.sample.labels = (3,)
  threes = get_family(config).sample(params, jax.random.key(1), ids)
  np.testing.assert_allclose(threes[3], balanced[3], atol=1e-6)  # same id, class and z
  assert float(jnp.max(jnp.abs(threes[0] - balanced[0]))) > 1e-3  # same z, another class
  paths = [jax.tree_util.keystr(p) for p, _ in
           jax.tree_util.tree_leaves_with_path(state.params['discriminator'])]
  assert any('class_embedding' in p for p in paths)  # spectrally normalized, in D's params
