"""DDPM family (Ho et al. 2020): a UNet predicts eps, x0 or v from x_t; L_simple (optionally
min-SNR weighted); optionally a learned-range variance trained with L_hybrid (Nichol &
Dhariwal 2021); DDPM ancestral or DDIM sampling from EMA params; bits/dim from the full
variational bound of the reverse process that `sample.variance` names.

With `model.num_classes` > 0 the UNet is class-conditional; training replaces each label by
the null class with probability `diffusion.label_dropout`, and sampling applies
classifier-free guidance of weight `sample.guidance` (Ho & Salimans 2022).
"""

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from gen_jax import labels as labels_lib
from gen_jax import optim, parallel
from gen_jax import state as state_lib
from gen_jax.diffusion import likelihood, losses, samplers
from gen_jax.diffusion import schedules as sch
from gen_jax.errors import ConfigError
from gen_jax.families import Family
from gen_jax.models.unet import UNet
from gen_jax.rng import example_keys

SAMPLERS = ('ddpm', 'ddim')
VARIANCES = (*sch.VARIANCES, 'learned')


def _check_config(config: ConfigDict) -> None:
  m, d, smp = config.model, config.diffusion, config.sample
  for key, value, allowed in (('diffusion.prediction', d.prediction, losses.PREDICTIONS),
                              ('diffusion.schedule', d.schedule, sch.SCHEDULES),
                              ('sample.sampler', smp.sampler, SAMPLERS),
                              ('sample.spacing', smp.spacing, samplers.SPACINGS),
                              ('sample.variance', smp.variance, VARIANCES)):
    if value not in allowed:
      raise ConfigError(f'{key}={value!r}: expected one of {allowed}')
  if smp.variance == 'learned' and not d.learn_variance:
    raise ConfigError("sample.variance='learned' needs diffusion.learn_variance=True")
  size = config.data.image_size
  if size % 2 ** (len(m.ch_mult) - 1) or m.ch % 32:
    raise ConfigError(f'data.image_size={size} must divide by 2**(len(model.ch_mult)-1) and '
                      f'model.ch={m.ch} by 32 (GroupNorm groups)')
  if not 0.0 <= d.label_dropout < 1.0:
    raise ConfigError(f'diffusion.label_dropout={d.label_dropout}: expected a value in [0, 1)')
  if smp.guidance < 0:
    raise ConfigError(f'sample.guidance={smp.guidance}: expected 0 or more')
  if smp.guidance and not (m.num_classes and d.label_dropout):
    raise ConfigError(f'sample.guidance={smp.guidance} needs a class-conditional model '
                      'trained with the null class: model.num_classes > 0 and '
                      'diffusion.label_dropout > 0')


def drop_labels(labels: jax.Array, keys: jax.Array, rate: float, null: int) -> jax.Array:
  """labels [B], each replaced by the `null` class with probability `rate`, drawn from its
  example's key [B]: the label dropout that trains the unconditional model of guidance."""
  dropped = jax.vmap(lambda k: jax.random.bernoulli(jax.random.fold_in(k, 2), rate))(keys)
  return jnp.where(dropped, null, labels)


def make(config: ConfigDict) -> Family:
  """Builds the DDPM family's functions from `config.model`, `config.diffusion`, `sample`."""
  _check_config(config)
  m, d, smp = config.model, config.diffusion, config.sample
  size, channels = config.data.image_size, config.data.channels
  schedule = sch.get_schedule(d.schedule, d.num_steps)
  sample_steps = None
  if smp.sampler == 'ddim':
    try:
      sample_steps = samplers.timesteps(d.num_steps, smp.steps, smp.spacing)
    except ValueError as e:
      raise ConfigError(str(e)) from None
  num_classes = labels_lib.num_classes(config)  # also the null class's label
  model = UNet(m.ch, tuple(m.ch_mult), m.num_res_blocks, tuple(m.attn_resolutions),
               m.dropout, channels * (2 if d.learn_variance else 1), m.get('remat', False),
               num_classes)
  tx = optim.make_optimizer(config.optim, config.train.num_steps)
  shape = (size, size, channels)
  num_dims = size * size * channels
  snr = schedule.alphas_cumprod / (1 - schedule.alphas_cumprod)

  def split(out):
    """The network's output -> (prediction, raw variance output or None)."""
    if d.learn_variance:
      return out[..., :channels], out[..., channels:]
    return out, None

  def predict(params, xt, t, labels, guidance=0.0):
    """(eps [B, ...], log-variance of p(x_{t-1} | x_t) [B, ...]) for `sample.variance`.
    With `guidance` w > 0: eps = (1 + w) eps(x_t, labels) - w eps(x_t, null class), both
    from one doubled batch; the variance is the conditional half's."""
    if guidance:
      xt2, t2 = jnp.concatenate([xt, xt]), jnp.concatenate([t, t])
      prediction, v = split(model.apply({'params': params}, xt2, t2, labels=jnp.concatenate(
          [labels, jnp.full_like(labels, num_classes)])))
      conditional, unconditional = jnp.split(
          losses.to_eps(schedule, d.prediction, xt2, t2, prediction), 2)
      eps = (1 + guidance) * conditional - guidance * unconditional
      v = None if v is None else jnp.split(v, 2)[0]
    else:
      prediction, v = split(model.apply({'params': params}, xt, t, labels=labels))
      eps = losses.to_eps(schedule, d.prediction, xt, t, prediction)
    if smp.variance == 'learned':
      return eps, sch.learned_range_log_variance(schedule, t, v)
    log_var = sch.fixed_log_variance(schedule, smp.variance)[t][:, None, None, None]
    return eps, jnp.broadcast_to(log_var, eps.shape)

  def init(rng, images):
    params = model.init(rng, images[:1], jnp.zeros((1,), jnp.int32),
                        labels=labels_lib.given(config, jnp.zeros((1,), jnp.int32)))['params']
    return state_lib.create(params, tx)

  def train_step(state, batch, rng):
    def loss_fn(params, batch):
      x0 = batch['image']
      keys = example_keys(rng, batch['id'])
      t = jax.vmap(lambda k: jax.random.randint(jax.random.fold_in(k, 0), (), 0,
                                                d.num_steps))(keys)
      eps = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 1), shape))(keys)
      xt = sch.q_sample(schedule, x0, t, eps)
      goal = losses.target(schedule, d.prediction, x0, t, eps)
      weight = losses.min_snr_weight(snr[t], d.prediction, d.min_snr_gamma)
      labels = (drop_labels(batch['label'], keys, d.label_dropout, num_classes)
                if num_classes else None)
      prediction, v = split(model.apply({'params': params}, xt, t, train=True,
                                        ids=batch['id'], labels=labels, rngs={'dropout': rng}))
      loss = losses.regression_loss(prediction, goal, weight)
      aux = {'mse': losses.regression_loss(prediction, goal, 1.0)}
      if d.learn_variance:
        # L_hybrid: lambda times T (the uniform-t estimate of the whole sum) times term t.
        eps_hat = losses.to_eps(schedule, d.prediction, xt, t,
                                jax.lax.stop_gradient(prediction))
        vlb = losses.vlb_bits_per_dim(schedule, x0, xt, t, eps_hat, v)
        loss = loss + d.vlb_weight * d.num_steps * vlb
        aux['vlb_bpd'] = vlb
      return parallel.pmean((jnp.mean(loss), {k: jnp.mean(v) for k, v in aux.items()}))

    (loss, aux), grads = state_lib.loss_and_grads(loss_fn, state.params, batch,
                                                  config.train.grad_accum_steps)
    state, norms = state_lib.apply_gradients(state, grads, tx, config.optim.ema_decay)
    return state, {'loss': loss, **aux, **norms}

  def mean_logvar(params, labels):
    def fn(xt, t):
      eps, logvar = predict(params, xt, t, labels)
      x0 = jnp.clip(sch.x0_from_eps(schedule, xt, t, eps), -1, 1)
      mean, _, _ = sch.q_posterior(schedule, x0, xt, t)
      return mean, logvar
    return fn

  def eval_step(state, batch, rng):
    keys = example_keys(rng, batch['id'])
    labels = labels_lib.given(config, batch['label'])  # the bound of p(x | its class)
    nll = likelihood.nll_bound(schedule, mean_logvar(state.ema_params, labels), batch['image'],
                               keys)
    return {'nll': nll, 'bpd': nll / (num_dims * np.log(2))}

  def sample(params, rng, ids):
    keys = example_keys(rng, ids)
    labels = labels_lib.asked(config, ids)
    model_fn = lambda xt, t: predict(params, xt, t, labels, smp.guidance)  # noqa: E731
    if smp.sampler == 'ddpm':
      return samplers.ddpm_sample(model_fn, schedule, keys, shape)
    eps_fn = lambda xt, t: model_fn(xt, t)[0]  # noqa: E731
    return samplers.ddim_sample(eps_fn, schedule, keys, shape, sample_steps, smp.eta)

  return Family('ddpm', init, train_step, eval_step, sample)
