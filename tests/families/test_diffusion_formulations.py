"""The diffusion family's EDM formulation and noise-level samplers: the EDM loss against a
direct computation from the paper's formulas, training, every sampler on both formulations,
and clear errors for settings that do not go together."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.errors import UserError
from gen_jax.families import get_family
from gen_jax.models.unet import UNet
from tests.families.test_ddpm import digits_ddpm
from tests.families.test_vae import digit_batch, train


def tiny(tfds_dir, formulation, **sample):
  config = digits_ddpm(tfds_dir, formulation=formulation)
  config.model.update(ch_mult=(1,), attn_resolutions=())
  config.sample.update({'sampler': 'heun', 'spacing': 'karras', 'steps': 6, **sample})
  return config


def test_edm_eval_loss_is_the_weighted_denoising_error(tfds_dir):
  """lambda(sigma) |D(x0 + sigma n) - x0|^2 with D = c_skip x + c_out F(c_in x, ln(sigma)/4)
  written out here from Karras et al. (2022), Table 1, at the sigma and n of each example."""
  config = tiny(tfds_dir, 'edm')
  family = get_family(config)
  batch = digit_batch(config, 4)
  state = jax.jit(family.init)(jax.random.key(0), batch['image'])
  metrics = family.eval_step(state, batch, jax.random.key(5))

  m, sd = config.model, 0.5
  model = UNet(m.ch, tuple(m.ch_mult), m.num_res_blocks, tuple(m.attn_resolutions), m.dropout, 1)
  expected = []
  for i, example_id in enumerate(np.asarray(batch['id'])):
    key = jax.random.fold_in(jax.random.key(5), example_id)
    sigma = float(np.exp(-1.2 + 1.2 * jax.random.normal(jax.random.fold_in(key, 0))))
    noise = jax.random.normal(jax.random.fold_in(key, 1), (8, 8, 1))
    x0 = batch['image'][i]
    x = x0 + sigma * noise
    out = model.apply({'params': state.ema_params}, x[None] / np.sqrt(sigma ** 2 + sd ** 2),
                      jnp.array([np.log(sigma) / 4]))[0]
    denoised = sd ** 2 / (sigma ** 2 + sd ** 2) * x + sigma * sd / np.sqrt(
        sigma ** 2 + sd ** 2) * out
    weight = (sigma ** 2 + sd ** 2) / (sigma * sd) ** 2
    expected.append(weight * float(jnp.mean((denoised - x0) ** 2)))
  np.testing.assert_allclose(metrics['edm_loss'], expected, rtol=1e-4)


@pytest.mark.slow
def test_edm_training_lowers_the_loss_and_samples(tfds_dir):
  config = tiny(tfds_dir, 'edm')
  config.optim.ema_decay = 0.0
  state, history = train(config, 150)
  losses = [m['loss'] for m in history]
  assert np.mean(losses[-20:]) < 0.7 * np.mean(losses[:20])
  images = get_family(config).sample(state.ema_params, jax.random.key(4), jnp.arange(3))
  assert images.shape == (3, 8, 8, 1) and bool(jnp.all(jnp.isfinite(images)))


@pytest.mark.parametrize('formulation,sampler,spacing,churn', [
    ('edm', 'heun', 'logsnr', 10.0), ('edm', 'dpmpp_2m', 'karras', 0.0),
    ('ddpm', 'heun', 'karras', 10.0), ('ddpm', 'euler', 'trailing', 0.0)])
def test_noise_level_samplers_follow_their_ids(tfds_dir, formulation, sampler, spacing, churn):
  config = tiny(tfds_dir, formulation, sampler=sampler, spacing=spacing, churn=churn)
  family = get_family(config)
  params = jax.jit(family.init)(jax.random.key(0), jnp.zeros((1, 8, 8, 1))).params
  sample = jax.jit(family.sample)
  whole = sample(params, jax.random.key(1), jnp.arange(4))
  part = sample(params, jax.random.key(1), jnp.arange(2, 4))
  assert whole.shape == (4, 8, 8, 1) and bool(jnp.all(jnp.isfinite(whole)))
  np.testing.assert_allclose(whole[2:], part, atol=1e-5)
  assert float(jnp.max(jnp.abs(whole[0] - whole[1]))) > 1e-3  # each id its own noise


@pytest.mark.parametrize('formulation,change,message', [
    ('score', {}, "diffusion.formulation='score': expected one of"),
    ('edm', {'sampler': 'ddim'}, "sample.sampler='ddim': expected one of .* with diffusion"),
    ('edm', {'spacing': 'trailing'}, "sample.spacing='trailing': expected one of"),
    ('ddpm', {'sampler': 'euler', 'churn': 5.0}, "sample.churn=5.0 needs sample.sampler='heun'"),
    ('ddpm', {'sigma_min': 1.0, 'sigma_max': 0.5}, 'expected churn >= 0 and 0 < sigma_min'),
])
def test_settings_that_do_not_go_together_are_one_clear_error(tfds_dir, formulation, change,
                                                              message):
  config = tiny(tfds_dir, formulation if formulation != 'score' else 'ddpm')
  config.diffusion.formulation = formulation
  config.sample.update(change)
  with pytest.raises(UserError, match=message):
    get_family(config)
