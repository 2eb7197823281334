"""The class-conditional DDPM: the label embedding, label dropout and classifier-free guidance
against closed forms and independent computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax import labels as labels_lib
from gen_jax.diffusion import edm, samplers
from gen_jax.diffusion import schedules as sch
from gen_jax.errors import UserError
from gen_jax.families import get_family
from gen_jax.families.ddpm import drop_labels, sampling_sigmas
from gen_jax.models.unet import UNet
from tests.families.test_vae import load_config


def conditional(guidance=0.0, **sample):
  config = load_config('ddpm_digits')
  config.data.image_size = 8
  config.model.update(ch=32, ch_mult=(1, 2), num_classes=10)
  config.diffusion.update(num_steps=50, label_dropout=0.1)
  config.sample.update(sampler='ddim', steps=5, eta=0.0, guidance=guidance)
  config.sample.update(sample)
  return config


def init_params(config):
  """Parameters with a random label embedding (at init the classes would be too alike)."""
  family = get_family(config)
  params = jax.jit(family.init)(jax.random.key(0), jnp.zeros((1, 8, 8, 1))).params
  emb = params['label_emb']['embedding']
  params['label_emb']['embedding'] = jax.random.normal(jax.random.key(1), emb.shape)
  return family, params


def reference_sample(config, params, ids, guidance):
  """DDIM with guided eps from two separate network calls, as Ho & Salimans write it."""
  m = config.model
  model = UNet(m.ch, tuple(m.ch_mult), m.num_res_blocks, tuple(m.attn_resolutions),
               m.dropout, 1, num_classes=m.num_classes)
  labels = labels_lib.for_ids(config, ids)
  null = jnp.full_like(labels, m.num_classes)

  def eps_fn(x, t):
    conditional = model.apply({'params': params}, x, t, labels=labels)
    unconditional = model.apply({'params': params}, x, t, labels=null)
    return (1 + guidance) * conditional - guidance * unconditional

  schedule = sch.get_schedule(config.diffusion.schedule, config.diffusion.num_steps)
  steps = samplers.timesteps(config.diffusion.num_steps, config.sample.steps, 'uniform')
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(3), i))(ids)
  return jax.jit(lambda: samplers.ddim_sample(eps_fn, schedule, keys, (8, 8, 1), steps))()


@pytest.mark.slow
@pytest.mark.parametrize('guidance', [0.0, 2.0])
def test_guided_sampling_equals_two_separate_network_calls(guidance):
  config = conditional(guidance)
  family, params = init_params(config)
  ids = jnp.arange(6)
  images = jax.jit(family.sample)(params, jax.random.key(3), ids)
  expected = reference_sample(config, params, ids, guidance)
  np.testing.assert_allclose(images, expected, atol=2e-5)
  if guidance:  # guidance moves the samples away from the conditional ones
    unguided = reference_sample(config, params, ids, 0.0)
    assert float(jnp.max(jnp.abs(images - unguided))) > 1e-3


def euler_reference(config, params, ids, guided_levels):
  """Euler over `sampling_sigmas` with the VP wrapper, eps from two separate network calls,
  guided (with sample.guidance) at the levels whose index is in `guided_levels` only."""
  m, smp = config.model, config.sample
  model = UNet(m.ch, tuple(m.ch_mult), m.num_res_blocks, tuple(m.attn_resolutions),
               m.dropout, 1, num_classes=m.num_classes)
  labels = labels_lib.for_ids(config, ids)
  null = jnp.full_like(labels, m.num_classes)
  schedule = sch.get_schedule(config.diffusion.schedule, config.diffusion.num_steps)
  sigmas = sampling_sigmas(config, schedule)
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(3), i))(ids)
  x = sigmas[0] * samplers.example_noise(keys, len(sigmas) - 1, (8, 8, 1))
  for i in range(len(sigmas) - 1):
    w = smp.guidance if i in guided_levels else 0.0

    def eps_fn(xt, t, w=w):
      conditional = model.apply({'params': params}, xt, t, labels=labels)
      unconditional = model.apply({'params': params}, xt, t, labels=null)
      return (1 + w) * conditional - w * unconditional

    denoised = edm.vp_denoiser(eps_fn, schedule)(x, jnp.full((len(ids),), sigmas[i]))
    x = denoised + sigmas[i + 1] / sigmas[i] * (x - denoised)
  return x


@pytest.mark.slow
def test_the_guidance_interval_guides_only_the_levels_inside_it():
  """Kynkaanniemi et al.'s interval (sigma_min, sigma_max]: guided levels as the reference's,
  the others conditional, one scan; the result differs from guiding everywhere or nowhere."""
  config = conditional(2.0, sampler='euler', spacing='karras')
  family, params = init_params(config)
  ids = jnp.arange(4)
  d = config.diffusion
  sigmas = sampling_sigmas(config, sch.get_schedule(d.schedule, d.num_steps))
  # bounds between levels, so that float32 rounding of the levels cannot move one across
  config.sample.update(guidance_sigma_min=float(sigmas[2] + sigmas[3]) / 2,
                       guidance_sigma_max=float(sigmas[0] + sigmas[1]) / 2)
  images = jax.jit(get_family(config).sample)(params, jax.random.key(3), ids)
  expected = euler_reference(config, params, ids, (1, 2))
  np.testing.assert_allclose(images, expected, rtol=1e-5, atol=2e-4)  # values up to ~150
  everywhere = euler_reference(config, params, ids, range(5))
  nowhere = euler_reference(config, params, ids, ())
  for other in (everywhere, nowhere):
    assert float(jnp.max(jnp.abs(images - other))) > 1e-3


@pytest.mark.parametrize('change,message', [
    (dict(guidance_sigma_min=-1.0), 'expected 0 <= guidance_sigma_min < guidance_sigma_max'),
    (dict(guidance_sigma_min=2.0, guidance_sigma_max=1.0), 'sample.guidance_sigma_min=2.0'),
    (dict(guidance_sigma_max=5.0), "need a noise-level sampler, one of .* not 'ddim'"),
])
def test_bad_guidance_intervals_are_refused(change, message):
  with pytest.raises(UserError, match=message):
    get_family(conditional(1.0, **change))


@pytest.mark.slow
def test_the_label_changes_the_sample_and_follows_sample_labels():
  family, params = init_params(conditional())
  ids = jnp.arange(4)
  balanced = jax.jit(family.sample)(params, jax.random.key(3), ids)  # classes 0, 1, 2, 3
  threes = jax.jit(get_family(conditional(labels=(3,))).sample)(params, jax.random.key(3), ids)
  np.testing.assert_array_equal(threes[3], balanced[3])  # the same id, class, noise
  assert float(jnp.max(jnp.abs(threes[0] - balanced[0]))) > 1e-3


def test_label_dropout_draws_the_null_class_at_its_rate_from_each_examples_key():
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(0), i))(jnp.arange(20000))
  labels = jnp.arange(20000) % 10
  dropped = drop_labels(labels, keys, 0.2, 10)
  rate = float(jnp.mean(dropped == 10))
  assert abs(rate - 0.2) < 4 * np.sqrt(0.2 * 0.8 / 20000)
  kept = dropped != 10
  np.testing.assert_array_equal(dropped[kept], labels[kept])
  # an example's draw depends on its key only, not on the batch it is in
  np.testing.assert_array_equal(drop_labels(labels[5:9], keys[5:9], 0.2, 10), dropped[5:9])


def param_shapes(config):
  return jax.eval_shape(get_family(config).init, jax.random.key(0),
                        jnp.zeros((1, 8, 8, 1))).params


def test_unconditional_models_have_no_label_parameters():
  config = conditional()
  config.model.num_classes = 0
  assert 'label_emb' not in param_shapes(config)
  assert param_shapes(conditional())['label_emb']['embedding'].shape == (11, 128)


@pytest.mark.parametrize('change,message', [
    (dict(guidance=1.0, num_classes=0), 'needs a class-conditional model'),
    (dict(guidance=1.0, label_dropout=0.0), 'needs a class-conditional model'),
    (dict(guidance=-1.0), 'sample.guidance=-1.0: expected 0 or more'),
    (dict(label_dropout=1.0), 'diffusion.label_dropout=1.0'),
])
def test_bad_conditional_settings_are_refused(change, message):
  config = conditional(change.pop('guidance', 0.0))
  config.model.update({k: v for k, v in change.items() if k == 'num_classes'})
  config.diffusion.update({k: v for k, v in change.items() if k == 'label_dropout'})
  with pytest.raises(UserError, match=message):
    get_family(config)


def test_a_dataset_without_labels_or_with_more_classes_is_refused():
  config = conditional()
  with pytest.raises(UserError, match="has no labels, but model.num_classes=10"):
    labels_lib.check(np.array([-1, -1]), config)
  with pytest.raises(UserError, match='has label 12, outside model.num_classes=10'):
    labels_lib.check(np.array([3, 12]), config)
  labels_lib.check(np.array([0, 9]), config)


@pytest.mark.slow
def test_the_null_class_with_a_zero_embedding_is_the_unconditional_model():
  """The null label adds its embedding row to the timestep embedding: where that row is 0,
  the conditional UNet on the null label is the unconditional UNet with the same weights."""
  config = conditional()
  config.model.attn_resolutions = ()  # quicker to compile
  _, params = init_params(config)
  params['label_emb']['embedding'] = params['label_emb']['embedding'].at[10].set(0.0)
  m = config.model
  make = lambda k: UNet(m.ch, tuple(m.ch_mult), m.num_res_blocks,  # noqa: E731
                        tuple(m.attn_resolutions), m.dropout, 1, num_classes=k)
  x = jax.random.normal(jax.random.key(4), (3, 8, 8, 1))
  t = jnp.array([0, 20, 49])
  conditional_unet = jax.jit(make(10).apply)
  null = conditional_unet({'params': params}, x, t, labels=jnp.full((3,), 10))
  others = {k: v for k, v in params.items() if k != 'label_emb'}
  np.testing.assert_array_equal(null, jax.jit(make(0).apply)({'params': others}, x, t))
  fours = conditional_unet({'params': params}, x, t, labels=jnp.full((3,), 4))
  assert float(jnp.max(jnp.abs(null - fours))) > 1e-4
