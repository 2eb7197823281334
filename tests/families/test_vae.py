"""VAE family: the importance-weighted bound against a brute-force integral, training, errors."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax import config_lib, parallel
from gen_jax import experiment as experiment_lib
from gen_jax.data import augment, pipeline
from gen_jax.distributions import bernoulli_log_likelihood, gaussian_log_density
from gen_jax.errors import UserError
from gen_jax.families import get_family
from gen_jax.models.conv_vae import ConvVAE

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_config(name):
  """get_config() of configs/NAME.py."""
  return config_lib.config_beside(os.path.join(REPO, 'configs', f'{name}.py'), name)


def tiny_config(tfds_dir, **model):
  config = load_config('vae_digits')
  config.data.data_dir = tfds_dir
  config.data.image_size = 8
  config.data.batch_size = 16
  config.model.update({'channels': (8, 16), 'hidden': 32, **model})
  return config


def digit_batch(config, n):
  batch = next(pipeline.eval_batches(config.data, 'test', n, n, 0, 1))
  images = augment.prepare_images(jnp.asarray(batch['image']), jnp.asarray(batch['id']),
                                  jax.random.key(5), binarize=config.data.binarize,
                                  random_flip=False)
  return {'image': images, 'id': jnp.asarray(batch['id']), 'label': jnp.asarray(batch['label'])}


def train(config, num_steps):
  exp = experiment_lib.build(config)
  state = exp.init()
  iterator = pipeline.train_iterator(config.data, 0, 0, 1)
  history = []
  for _ in range(num_steps):
    state, metrics = exp.train_step(state, parallel.shard_batch(next(iterator), exp.mesh))
    history.append({k: float(v) for k, v in metrics.items()})
  return state, history


@pytest.mark.slow
def test_importance_weighted_nll_matches_quadrature(tfds_dir):
  """With a 1-d latent, -log p(x) = -log ∫ p(x|z) N(z; 0, 1) dz is a brute-force sum on a grid.

  The model is trained for 300 steps first, so q(z|x) is peaked and p(x|z) far from flat.
  """
  config = tiny_config(tfds_dir, latent_dim=1, likelihood='bernoulli')
  config.data.binarize = True
  config.optim.ema_decay = 0.0
  config.eval.iw_samples, config.eval.iw_chunk = 4000, 1000
  state, _ = train(config, 300)
  batch = digit_batch(config, 8)
  values = get_family(config).eval_step(state, batch, jax.random.key(1))

  model = ConvVAE((8, 16), 32, 1, (8, 8, 1), 1)
  grid = jnp.linspace(-10.0, 10.0, 20001)
  logits = model.apply({'params': state.ema_params}, grid[:, None], method=ConvVAE.decode)
  for i in range(8):
    x01 = (batch['image'][i] + 1.0) / 2.0
    log_px_z = bernoulli_log_likelihood(x01[None], logits).reshape(len(grid), -1).sum(1)
    log_joint = log_px_z + gaussian_log_density(grid, 0.0, 0.0)
    exact = float(-(jax.nn.logsumexp(log_joint) + jnp.log(grid[1] - grid[0])))
    assert float(values['nll_iw'][i]) == pytest.approx(exact, abs=0.1)
  # Sanity of the setup: the posterior is informative (KL well above 0).
  assert float(jnp.mean(values['kl'])) > 1.0


@pytest.mark.slow  # the bound alone: tests/test_vae_losses.py
def test_more_importance_samples_tighten_the_bound(tfds_dir):
  """On a trained model, the bound falls clearly with k: E[-ELBO] (k=1) > k=10 > k=100."""
  config = tiny_config(tfds_dir, latent_dim=4)
  config.optim.learning_rate = 3e-3
  state, _ = train(config, 200)
  batch = digit_batch(config, 32)
  bounds = []
  for k in (1, 10, 100):
    config.eval.iw_samples, config.eval.iw_chunk = k, 1
    values = get_family(config).eval_step(state, batch, jax.random.key(2))
    bounds.append(float(jnp.mean(values['nll_iw'])))
  assert bounds[0] > bounds[1] + 0.1 > bounds[2] + 0.2, bounds


def test_train_steps_lower_the_loss(tfds_dir):
  config = tiny_config(tfds_dir)
  config.optim.learning_rate = 3e-3
  _, history = train(config, 100)
  losses = [m['loss'] for m in history]
  for m in history:
    assert m['elbo'] == pytest.approx(-(m['recon'] + m['kl']), rel=1e-5)
  assert np.mean(losses[-10:]) < 0.9 * np.mean(losses[:10])


@pytest.mark.parametrize('override,message', [
    (dict(likelihood='gaussian'), "model.likelihood='gaussian'"),
    (dict(likelihood='bernoulli'), 'needs binary data'),
    (dict(channels=(8, 16, 32, 64)), 'must divide by 2\\*\\*len'),
])
def test_bad_model_config_is_a_clear_error(tfds_dir, override, message):
  with pytest.raises(UserError, match=message):
    get_family(tiny_config(tfds_dir, **override))
