"""DDPM family: the paper's model size from its config, training, sampling, bits/dim, errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax import experiment as experiment_lib
from gen_jax import parallel
from gen_jax.data import pipeline
from gen_jax.errors import UserError
from gen_jax.families import get_family
from tests.families.test_vae import digit_batch, load_config, train


def digits_ddpm(tfds_dir, **diffusion):
  config = load_config('ddpm_digits')
  config.data.data_dir = tfds_dir
  config.data.batch_size = 32
  config.diffusion.update(diffusion)
  return config


def test_cifar10_config_builds_the_papers_35_7m_model():
  family = get_family(load_config('ddpm_cifar10'))
  state = jax.eval_shape(family.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  assert sum(math.prod(x.shape) for x in jax.tree.leaves(state.params)) == 35_746_307


@pytest.mark.slow
@pytest.mark.parametrize('prediction,gamma', [('eps', 0.0), ('v', 5.0)])
def test_training_lowers_the_loss(tfds_dir, prediction, gamma):
  config = digits_ddpm(tfds_dir, prediction=prediction, min_snr_gamma=gamma)
  config.optim.ema_decay = 0.0
  state, history = train(config, 150)
  losses = [m['loss'] for m in history]
  assert np.mean(losses[-20:]) < 0.7 * np.mean(losses[:20])
  images = get_family(config).sample(state.ema_params, jax.random.key(4), jnp.arange(3))
  assert images.shape == (3, 8, 8, 1) and bool(jnp.all(jnp.abs(images) <= 1.0))


def train_and_bound(config, num_examples):
  """(state, history, bits/dim of the bound before, after) for 150 steps of `config`."""
  config.optim.ema_decay = 0.0
  family = get_family(config)
  batch = digit_batch(config, num_examples)
  before = family.eval_step(family.init(jax.random.key(config.seed), batch['image']), batch,
                            jax.random.key(3))
  state, history = train(config, 150)
  after = family.eval_step(state, batch, jax.random.key(3))
  return state, history, float(jnp.mean(before['bpd'])), float(jnp.mean(after['bpd']))


@pytest.mark.slow
def test_training_lowers_the_bound(tfds_dir):
  _, _, before, after = train_and_bound(digits_ddpm(tfds_dir), 8)
  assert after < before


@pytest.mark.slow
def test_learned_variance_trains_with_l_hybrid(tfds_dir):
  config = digits_ddpm(tfds_dir, learn_variance=True)
  config.sample.sampler, config.sample.variance = 'ddpm', 'learned'
  state, history, before, after = train_and_bound(config, 32)
  for m in history:  # loss = L_simple + lambda T L_t (bits/dim), with lambda = 0.001
    assert m['loss'] == pytest.approx(m['mse'] + 0.001 * 200 * m['vlb_bpd'], rel=1e-5)
  assert np.mean([m['vlb_bpd'] for m in history[-20:]]) < 0.7 * np.mean(
      [m['vlb_bpd'] for m in history[:20]])
  assert after < before
  images = get_family(config).sample(state.ema_params, jax.random.key(4), jnp.arange(3))
  assert images.shape == (3, 8, 8, 1) and bool(jnp.all(jnp.isfinite(images)))


@pytest.mark.slow
def test_the_vlb_term_trains_only_the_variance(tfds_dir):
  """One plain-SGD step with and without the L_vlb term: the output channels of the mean
  move the same (the term sees the mean through a stop-gradient), the variance's only
  with it."""
  steps = {}
  for weight in (0.0, 1.0):
    config = digits_ddpm(tfds_dir, learn_variance=True, vlb_weight=weight)
    config.optim.update(name='sgd', learning_rate=0.1, warmup_steps=0, grad_clip=0.0)
    exp = experiment_lib.build(config)
    state = exp.init()
    batch = next(pipeline.train_iterator(config.data, 0, 0, 1))
    before = jax.tree.map(np.asarray, state.params['conv_out'])  # the step donates `state`
    new, _ = exp.train_step(state, parallel.shard_batch(batch, exp.mesh))
    steps[weight] = jax.tree.map(lambda a, b: np.asarray(a) - b, new.params['conv_out'], before)
  for name in ('kernel', 'bias'):
    without, with_vlb = steps[0.0][name], steps[1.0][name]
    np.testing.assert_allclose(with_vlb[..., :1], without[..., :1], rtol=1e-5, atol=1e-9)
    assert np.all(without[..., 1:] == 0) and np.abs(with_vlb[..., 1:]).max() > 1e-6


def test_samples_follow_their_ids(tfds_dir):
  config = digits_ddpm(tfds_dir)
  config.model.update(ch_mult=(1,), attn_resolutions=())  # any network: the ids matter
  config.sample.steps = 10
  family = get_family(config)
  params = jax.jit(family.init)(jax.random.key(0), jnp.zeros((1, 8, 8, 1))).params
  sample = jax.jit(family.sample)
  whole = sample(params, jax.random.key(1), jnp.arange(4))
  part = sample(params, jax.random.key(1), jnp.arange(2, 4))
  np.testing.assert_allclose(whole[2:], part, atol=1e-5)


@pytest.mark.parametrize('section,key,value,message', [
    ('diffusion', 'prediction', 'score', "diffusion.prediction='score'"),
    ('sample', 'sampler', 'plms', "sample.sampler='plms'"),
    ('sample', 'steps', 5000, 'sample.steps=5000: expected 1 to 200'),
    ('sample', 'variance', 'learned', "sample.variance='learned' needs diffusion.learn_var"),
])
def test_bad_values_are_clear_errors(tfds_dir, section, key, value, message):
  config = digits_ddpm(tfds_dir)
  config[section][key] = value
  with pytest.raises(UserError, match=message):
    get_family(config)
