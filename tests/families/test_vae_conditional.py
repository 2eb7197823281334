"""The conditional VAE (Sohn et al. 2015): the label enters the encoder and the decoder, the
bound is of log p(x | y), and samples from the prior follow the class they are asked for."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.families import get_family
from tests.families.test_vae import digit_batch, tiny_config, train


def test_unconditional_vae_has_no_label_inputs_and_the_cvae_one_hot_ones(tfds_dir):
  shapes = {}
  for k in (0, 10):
    config = tiny_config(tfds_dir, num_classes=k)
    params = jax.eval_shape(get_family(config).init, jax.random.key(0),
                            jnp.zeros((1, 8, 8, 1))).params
    shapes[k] = (params['encoder']['Dense_0']['kernel'].shape,
                 params['decoder']['Dense_0']['kernel'].shape)
  # encoder: 2x2x16 conv features (+ 10 one-hot) -> hidden 32; decoder: latents (+ 10) -> 32
  latent_dim = tiny_config(tfds_dir).model.latent_dim
  assert shapes[0] == ((64, 32), (latent_dim, 32))
  assert shapes[10] == ((74, 32), (latent_dim + 10, 32))


@pytest.mark.slow
def test_cvae_bound_prefers_the_true_label_and_samples_follow_their_class(tfds_dir):
  config = tiny_config(tfds_dir, num_classes=10)
  state, history = train(config, 300)
  assert history[-1]['loss'] < history[0]['loss']
  state = state.replace(ema_params=state.params)  # the EMA lags 300 steps behind
  family = get_family(config)
  batch = digit_batch(config, 64)
  key = jax.random.key(2)
  true = family.eval_step(state, batch, key)['elbo']
  wrong = family.eval_step(state, {**batch, 'label': (batch['label'] + 1) % 10}, key)['elbo']
  # log p(x | y) is higher under the digit's own class, for most digits and on average
  assert float(jnp.mean(true > wrong)) > 0.8
  assert float(jnp.mean(true - wrong)) > 1.0
  ids = jnp.arange(4)
  balanced = family.sample(state.params, jax.random.key(1), ids)  # classes 0, 1, 2, 3
  config.sample.labels = (3,)
  threes = get_family(config).sample(state.params, jax.random.key(1), ids)
  np.testing.assert_allclose(threes[3], balanced[3], atol=1e-6)  # same id, class and z
  assert float(jnp.max(jnp.abs(threes[0] - balanced[0]))) > 0.05  # same z, another class
