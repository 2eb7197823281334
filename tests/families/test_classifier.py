"""Classifier family: learns digits through the shared loop; features have the right shape."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.errors import UserError
from gen_jax.families import get_family
from tests.families.test_vae import load_config, train


def digits_classifier(tfds_dir):
  config = load_config('classifier_mnist')
  config.data.update(name='digits', data_dir=tfds_dir, image_size=8, batch_size=32)
  config.model.channels = (16,)
  config.model.features = 32
  config.optim.update(schedule='constant', warmup_steps=0, learning_rate=3e-3, ema_decay=0.0)
  return config


def test_classifier_learns_digits_and_exposes_features(tfds_dir):
  config = digits_classifier(tfds_dir)
  state, history = train(config, 150)
  assert np.mean([m['accuracy'] for m in history[-20:]]) > 0.9
  assert np.mean([m['accuracy'] for m in history[:5]]) < 0.5
  family = get_family(config)
  features, logits = family.features(state.ema_params, jnp.zeros((5, 8, 8, 1)))
  assert features.shape == (5, 32) and logits.shape == (5, 10)
  values = family.eval_step(state, {'image': jnp.zeros((3, 8, 8, 1)),
                                    'label': jnp.array([0, 1, 2])}, jax.random.key(0))
  assert values['accuracy'].shape == (3,) and values['loss'].shape == (3,)
  assert family.sample is None


def test_a_bad_kernels_choice_is_rejected(tfds_dir):
  config = digits_classifier(tfds_dir)
  config.runtime.kernels = 'cuda'
  with pytest.raises(UserError, match="runtime.kernels='cuda': expected one of"):
    get_family(config)
