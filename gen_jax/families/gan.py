"""GAN family: a generator and a discriminator (DCGAN, or the SN-GAN / WGAN-GP ResNet with
`model.arch='resnet'`) in one train state, one jitted step.

A step makes `gan.n_critic` discriminator updates, then one generator update:

* the global batch is split into n_critic groups by example id (id mod n_critic), so every
  discriminator update sees its own real images and each group is the same on any number of
  devices (the local batch must divide by n_critic);
* each discriminator update draws fresh z from its examples' keys, runs G once (training
  mode, global BatchNorm statistics) and keeps that forward pass's VJP; the generator update
  then reuses the last one, as PyTorch's DCGAN example reuses its fake batch: one G forward
  per D update, and G's gradient through the freshly updated D;
* D's and G's gradients come from separate `jax.grad`s of separate losses, and each
  optimizer (`optim` for G, `optim` updated by `optim_d` for D: TTUR) only sees its own.

With `model.num_classes` > 0 the GAN is class-conditional (conditional BatchNorm in G, a
projection discriminator: Miyato & Koyama 2018): D sees real images with their labels, and
each fake is generated for a class drawn uniformly from its example's key; samples ask for
the classes of `gen_jax.labels`.

`ema_params` holds {'generator': {'params', 'batch_stats'}}: an EMA of the generator's
parameters and of its BatchNorm running statistics (as BigGAN-PyTorch's G_ema), used for
samples, so a sample depends on its id alone, not on its batch.
"""

import jax
import jax.numpy as jnp
import optax
from ml_collections import ConfigDict

from gen_jax import gan_losses, optim, parallel
from gen_jax import labels as labels_lib
from gen_jax import state as state_lib
from gen_jax.errors import ConfigError
from gen_jax.families import Family
from gen_jax.models.dcgan import NORMS, Discriminator, Generator
from gen_jax.models.gan_layers import base_size
from gen_jax.models.resnet_gan import ResNetDiscriminator, ResNetGenerator, num_downsamplings
from gen_jax.rng import example_keys

ARCHS = ('dcgan', 'resnet')


def _check_config(config: ConfigDict) -> None:
  m, g = config.model, config.gan
  resnet = m.arch == 'resnet'
  for key, value, allowed in (('gan.loss', g.loss, tuple(gan_losses.LOSSES)),
                              ('model.arch', m.arch, ARCHS),
                              ('model.d_norm', m.d_norm, ('none',) if resnet else NORMS)):
    if value not in allowed:
      raise ConfigError(f'{key}={value!r}: expected one of {allowed}'
                        + (" with model.arch='resnet'" if key == 'model.d_norm' and resnet else ''))
  if config.train.grad_accum_steps != 1:
    raise ConfigError(f'train.grad_accum_steps={config.train.grad_accum_steps}: the GAN takes 1 '
                      '(its BatchNorm statistics and its n_critic slices are per batch)')
  if g.n_critic < 1:
    raise ConfigError(f'gan.n_critic={g.n_critic}: expected 1 or more')
  if config.data.batch_size % g.n_critic:
    raise ConfigError(f'data.batch_size={config.data.batch_size} does not divide by '
                      f'gan.n_critic={g.n_critic}')
  if (g.gp_weight or g.r1_gamma) and m.d_norm == 'batch':
    raise ConfigError("gan.gp_weight / gan.r1_gamma need each logit to depend on its own "
                      "image: use model.d_norm='layer' or 'none', not 'batch'")
  try:
    base_size(config.data.image_size, len(m.g_channels))
  except ValueError:
    raise ConfigError(f'data.image_size={config.data.image_size} must be a grid of 3 or more '
                      f'times 2**len(model.g_channels)={2 ** len(m.g_channels)}') from None
  poolings, counted = ((num_downsamplings(len(m.d_channels)), 'len(model.d_channels) - 2')
                       if resnet else (len(m.d_channels), 'len(model.d_channels)'))
  if config.data.image_size % 2 ** poolings:
    raise ConfigError(f'data.image_size={config.data.image_size} must divide by '
                      f'2**({counted})={2 ** poolings}')


def make(config: ConfigDict) -> Family:
  """Builds the GAN's functions from `config.model`, `config.gan`, `optim`, `optim_d`."""
  _check_config(config)
  m, g = config.model, config.gan
  n_critic, z_dim = g.n_critic, m.z_dim
  num_classes = labels_lib.num_classes(config)
  if m.arch == 'resnet':
    generator = ResNetGenerator(tuple(m.g_channels), config.data.image_size,
                                config.data.channels, parallel.DATA_AXIS, num_classes)
    discriminator = ResNetDiscriminator(tuple(m.d_channels), m.spectral_norm, num_classes)
  else:
    generator = Generator(tuple(m.g_channels), config.data.image_size, config.data.channels,
                          parallel.DATA_AXIS, num_classes)
    discriminator = Discriminator(tuple(m.d_channels), m.d_norm, m.spectral_norm,
                                  parallel.DATA_AXIS, num_classes)
  loss_fn = gan_losses.LOSSES[g.loss]
  tx_g = optim.make_optimizer(config.optim, config.train.num_steps)
  tx_d = optim.make_optimizer(ConfigDict({**config.optim, **config.optim_d}),
                              config.train.num_steps * n_critic)
  ema_decay = config.optim.ema_decay

  def latents(keys, stream):
    return jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, stream), (z_dim,)))(keys)

  def fake_labels(keys):
    """The class each fake is generated for, uniform from its example's key: [B] or None."""
    if not num_classes:
      return None
    return jax.vmap(lambda k: jax.random.randint(jax.random.fold_in(k, 2), (), 0,
                                                 num_classes))(keys)

  def run_generator(variables, z, labels, train):
    """(images, updated non-param variables); BatchNorm uses batch statistics in training."""
    if train:
      return generator.apply(variables, z, train=True, labels=labels, mutable=['batch_stats'])
    return generator.apply(variables, z, train=False, labels=labels), {}

  def run_critic(params, d_state, images, labels, train):
    """(logits [B], updated 'batch_stats': BatchNorm / spectral-norm state)."""
    logits, updates = discriminator.apply({'params': params, **d_state}, images, train=train,
                                          labels=labels, mutable=['batch_stats'])
    return logits, dict(updates)

  def init(rng, images):
    g_key, d_key = jax.random.split(rng)
    labels = labels_lib.given(config, jnp.zeros((1,), jnp.int32))
    g_vars = generator.init(g_key, jnp.zeros((1, z_dim)), train=False, labels=labels)
    d_vars = discriminator.init(d_key, images[:1], train=False, labels=labels)
    params = {'generator': g_vars['params'], 'discriminator': d_vars['params']}
    g_state = {k: v for k, v in g_vars.items() if k != 'params'}
    d_state = {k: v for k, v in d_vars.items() if k != 'params'}
    return state_lib.TrainState(
        step=jnp.zeros((), jnp.int32), params=params,
        opt_state={'generator': tx_g.init(params['generator']),
                   'discriminator': tx_d.init(params['discriminator'])},
        ema_params={'generator': {'params': params['generator'], **g_state}},
        model_state={'generator': g_state, 'discriminator': d_state})

  def d_update(d_params, d_opt, d_state, real, fake, keys):
    """One discriminator update on real and (constant) fake images, each (images, labels)."""

    def objective(params):
      real_logits, new_state = run_critic(params, d_state, *real, True)
      fake_logits, _ = run_critic(params, d_state, *fake, True)
      terms = loss_fn(real_logits, fake_logits)
      critic = lambda x: run_critic(params, d_state, x, real[1], True)[0]  # noqa: E731
      total, aux = terms.d_loss, {}
      if g.gp_weight:
        mix = jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(k, 1)))(keys)
        aux['gradient_penalty'] = gan_losses.gradient_penalty(critic, real[0], fake[0], mix)
        total = total + g.gp_weight * aux['gradient_penalty']
      if g.r1_gamma:
        aux['r1_penalty'] = gan_losses.r1_penalty(critic, real[0])
        total = total + 0.5 * g.r1_gamma * aux['r1_penalty']
      aux |= {'d_loss_real': terms.d_loss_real, 'd_loss_fake': terms.d_loss_fake,
              'd_real': jnp.mean(real_logits), 'd_fake': jnp.mean(fake_logits)}
      return parallel.pmean(total), (parallel.pmean(aux), real_logits, new_state)

    (d_loss, (aux, real_logits, new_state)), grads = jax.value_and_grad(
        objective, has_aux=True)(d_params)
    updates, d_opt = tx_d.update(grads, d_opt, d_params)
    aux |= {'d_loss': d_loss, 'd_grad_norm': optax.tree.norm(grads)}
    return optax.apply_updates(d_params, updates), d_opt, new_state, real_logits, aux

  def train_step(state, batch, rng):
    b = batch['image'].shape[0]
    if b % n_critic:
      raise ConfigError(f'the per-device batch of {b} does not divide by '
                        f'gan.n_critic={n_critic}')
    groups = lambda x: x.reshape(b // n_critic, n_critic, *x.shape[1:])  # noqa: E731
    reals, keys = groups(batch['image']), groups(example_keys(rng, batch['id']))
    real_labels = groups(batch['label']) if num_classes else None
    g_params, d_params = state.params['generator'], state.params['discriminator']
    g_opt, d_opt = state.opt_state['generator'], state.opt_state['discriminator']
    g_state, d_state = state.model_state['generator'], state.model_state['discriminator']

    for j in range(n_critic):
      z, labels = latents(keys[:, j], 0), fake_labels(keys[:, j])
      fake, g_vjp, g_state = jax.vjp(
          lambda p, s=g_state, z=z, y=labels: run_generator({'params': p, **s}, z, y, True),
          g_params, has_aux=True)
      real = (reals[:, j], None if real_labels is None else real_labels[:, j])
      d_params, d_opt, d_state, real_logits, d_metrics = d_update(
          d_params, d_opt, d_state, real, (fake, labels), keys[:, j])

    def g_objective(fake):
      fake_logits, _ = run_critic(d_params, d_state, fake, labels, True)
      return parallel.pmean(loss_fn(jax.lax.stop_gradient(real_logits), fake_logits).g_loss)

    g_loss, fake_grads = jax.value_and_grad(g_objective)(fake)
    (g_grads,) = g_vjp(fake_grads)
    updates, g_opt = tx_g.update(g_grads, g_opt, g_params)
    g_params = optax.apply_updates(g_params, updates)
    ema = state_lib.ema_update(state.ema_params['generator'], {'params': g_params, **g_state},
                               ema_decay)
    new_state = state.replace(
        step=state.step + 1,
        params={'generator': g_params, 'discriminator': d_params},
        opt_state={'generator': g_opt, 'discriminator': d_opt},
        ema_params={'generator': ema},
        model_state={'generator': g_state, 'discriminator': d_state})
    return new_state, {'g_loss': g_loss,
                       'g_grad_norm': optax.tree.norm(g_grads), **d_metrics}

  def eval_step(state, batch, rng):
    del rng
    logits, _ = run_critic(state.params['discriminator'], state.model_state['discriminator'],
                           batch['image'], labels_lib.given(config, batch['label']), False)
    return {'d_test': logits}

  def sample(params, rng, ids):
    labels = labels_lib.asked(config, ids)
    return run_generator(params['generator'], latents(example_keys(rng, ids), 0), labels,
                         False)[0]

  return Family('gan', init, train_step, eval_step, sample,
                networks=('generator', 'discriminator'))
