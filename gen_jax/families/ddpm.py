"""Diffusion family. With `diffusion.formulation='ddpm'` (Ho et al. 2020) a UNet predicts
eps, x0 or v from x_t; L_simple (optionally min-SNR weighted); optionally a learned-range
variance trained with L_hybrid (Nichol & Dhariwal 2021); bits/dim from the full variational
bound of the reverse process that `sample.variance` names. With 'edm' (Karras et al. 2022)
the UNet is EDM's preconditioned denoiser, trained at log-normal noise levels; its eval
metric is the EDM loss on test examples.

Sampling, from EMA params: DDPM ancestral or DDIM over timesteps (ddpm formulation), or the
noise-level samplers of `sigma_samplers` (Euler, EDM's Heun, stochastic with
`sample.churn`, DPM-Solver++ 2M) over Karras or log-SNR levels or a schedule's own
timesteps; a ddpm model runs under them through EDM's VP wrapper. `edit` inpaints (RePaint)
or SDEdits given images with the same denoiser on the same levels (`editing`).

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
from gen_jax.diffusion import editing, edm, likelihood, losses, samplers, sigma_samplers
from gen_jax.diffusion import schedules as sch
from gen_jax.errors import ConfigError
from gen_jax.families import Family
from gen_jax.models.song_unet import SongUNet
from gen_jax.models.unet import UNet
from gen_jax.rng import example_keys

ARCHS = ('ddpm', 'ddpmpp')  # Ho et al.'s UNet, EDM's DDPM++ (models/song_unet.py)
FORMULATIONS = ('ddpm', 'edm')
TIMESTEP_SAMPLERS = ('ddpm', 'ddim')
SAMPLERS = (*TIMESTEP_SAMPLERS, *sigma_samplers.SOLVERS)
VARIANCES = (*sch.VARIANCES, 'learned')


def _check_config(config: ConfigDict) -> None:
  m, d, smp = config.model, config.diffusion, config.sample
  edm_model = d.formulation == 'edm'
  spacings = (() if edm_model else samplers.SPACINGS) + (
      () if smp.sampler in TIMESTEP_SAMPLERS else sigma_samplers.SIGMA_SPACINGS)
  for key, value, allowed in (('model.arch', m.arch, ARCHS),
                              ('diffusion.formulation', d.formulation, FORMULATIONS),
                              ('diffusion.prediction', d.prediction, losses.PREDICTIONS),
                              ('diffusion.schedule', d.schedule, sch.SCHEDULES),
                              ('sample.sampler', smp.sampler,
                               sigma_samplers.SOLVERS if edm_model else SAMPLERS),
                              ('sample.spacing', smp.spacing, spacings),
                              ('sample.variance', smp.variance, VARIANCES)):
    if value not in allowed:
      why = edm_model and key.startswith('sample.')
      raise ConfigError(f'{key}={value!r}: expected one of {allowed}'
                        + (" with diffusion.formulation='edm'" if why else ''))
  if smp.variance == 'learned' and not d.learn_variance:
    raise ConfigError("sample.variance='learned' needs diffusion.learn_variance=True")
  if edm_model and d.learn_variance:
    raise ConfigError("diffusion.learn_variance=True needs diffusion.formulation='ddpm'")
  if smp.churn and smp.sampler != 'heun':
    raise ConfigError(f'sample.churn={smp.churn} needs sample.sampler=\'heun\' (EDM\'s '
                      'stochastic sampler)')
  if smp.churn < 0 or not 0 < smp.sigma_min < smp.sigma_max:
    raise ConfigError(f'sample.churn={smp.churn}, sample.sigma_min={smp.sigma_min}, '
                      f'sample.sigma_max={smp.sigma_max}: expected churn >= 0 and '
                      '0 < sigma_min < sigma_max')
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
  if not 0 <= smp.guidance_sigma_min < smp.guidance_sigma_max:
    raise ConfigError(f'sample.guidance_sigma_min={smp.guidance_sigma_min}, '
                      f'sample.guidance_sigma_max={smp.guidance_sigma_max}: expected '
                      '0 <= guidance_sigma_min < guidance_sigma_max')
  if _guidance_interval(smp) and smp.sampler in TIMESTEP_SAMPLERS:
    raise ConfigError(f'sample.guidance_sigma_min={smp.guidance_sigma_min} and '
                      f'guidance_sigma_max={smp.guidance_sigma_max} need a noise-level '
                      f'sampler, one of {sigma_samplers.SOLVERS}, not {smp.sampler!r}')


def _guidance_interval(smp: ConfigDict) -> bool:
  """Whether guidance is limited to some noise levels (the defaults: all of them)."""
  return smp.guidance_sigma_min > 0 or smp.guidance_sigma_max < float('inf')


def sampling_sigmas(config: ConfigDict, schedule: sch.Schedule | None) -> np.ndarray:
  """The noise levels [steps + 1] a noise-level sampler visits, the last 0: a schedule's own
  timesteps (`sample.spacing` uniform, trailing or quadratic), or karras / logsnr levels
  from sample.sigma_max to sample.sigma_min (within the schedule's range for a ddpm model)."""
  smp = config.sample
  levels = None if schedule is None else np.asarray(edm.vp_sigmas(schedule), np.float64)
  if smp.spacing in samplers.SPACINGS:
    steps = samplers.timesteps(schedule.num_steps, smp.steps, smp.spacing)
    return np.append(levels[steps][::-1], 0.0)
  low, high = smp.sigma_min, smp.sigma_max
  if levels is not None:
    low, high = max(low, levels[0]), min(high, levels[-1])
  return sigma_samplers.make_sigmas(smp.spacing, smp.steps, low, high, smp.rho)


def edit_sigmas(config: ConfigDict, schedule: sch.Schedule | None) -> np.ndarray:
  """The noise levels [steps + 1] of --mode=edit: `sampling_sigmas` of any sampler's
  `sample.steps` and `sample.spacing`; a ConfigError if they make no grid. Computed on the
  host even while the edit is traced."""
  try:
    with jax.ensure_compile_time_eval():
      return sampling_sigmas(config, schedule)
  except ValueError as e:
    raise ConfigError(f'--mode=edit walks the levels of sample.steps={config.sample.steps} '
                      f'and sample.spacing={config.sample.spacing!r}: {e}') from None


def drop_labels(labels: jax.Array, keys: jax.Array, rate: float, null: int) -> jax.Array:
  """labels [B], each replaced by the `null` class with probability `rate`, drawn from its
  example's key [B]: the label dropout that trains the unconditional model of guidance."""
  dropped = jax.vmap(lambda k: jax.random.bernoulli(jax.random.fold_in(k, 2), rate))(keys)
  return jnp.where(dropped, null, labels)


def make(config: ConfigDict) -> Family:
  """Builds the diffusion family's functions from `config.model`, `diffusion`, `sample`."""
  _check_config(config)
  m, d, smp = config.model, config.diffusion, config.sample
  size, channels = config.data.image_size, config.data.channels
  edm_model = d.formulation == 'edm'
  schedule = None if edm_model else sch.get_schedule(d.schedule, d.num_steps)
  try:
    sample_steps = (samplers.timesteps(d.num_steps, smp.steps, smp.spacing)
                    if smp.sampler == 'ddim' else None)
    sigmas = (sampling_sigmas(config, schedule) if smp.sampler in sigma_samplers.SOLVERS
              else None)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  num_classes = labels_lib.num_classes(config)  # also the null class's label
  out_ch = channels * (2 if d.learn_variance else 1)
  if m.arch == 'ddpmpp':
    model = SongUNet(m.ch, tuple(m.ch_mult), m.num_res_blocks, tuple(m.attn_resolutions),
                     m.dropout, out_ch, num_classes, m.get('remat', False))
  else:
    model = UNet(m.ch, tuple(m.ch_mult), m.num_res_blocks, tuple(m.attn_resolutions),
                 m.dropout, out_ch, m.get('remat', False), num_classes)
  tx = optim.make_optimizer(config.optim, config.train.num_steps)
  shape = (size, size, channels)
  num_dims = size * size * channels

  def split(out):
    """The network's output -> (prediction, raw variance output or None)."""
    if d.learn_variance:
      return out[..., :channels], out[..., channels:]
    return out, None

  def network(params, x, t, labels, guidance=0.0):
    """(prediction [B, ...], raw variance output or None) at inputs x [B, ...], t [B].
    With `guidance` w (a number > 0, or one per example [B]): (1 + w) out(x, labels) -
    w out(x, null class), both from one doubled batch, and the conditional half's variance
    output. Every prediction (eps, x0, v, EDM's F) is affine in the output with weights
    that the two halves share, so this is guidance on eps (Ho & Salimans 2022)."""
    if isinstance(guidance, (int, float)) and not guidance:
      return split(model.apply({'params': params}, x, t, labels=labels))
    if jnp.ndim(guidance):
      guidance = jnp.reshape(guidance, (-1,) + (1,) * (x.ndim - 1))
    prediction, v = split(model.apply(
        {'params': params}, jnp.concatenate([x, x]), jnp.concatenate([t, t]),
        labels=jnp.concatenate([labels, jnp.full_like(labels, num_classes)])))
    conditional, unconditional = jnp.split(prediction, 2)
    return ((1 + guidance) * conditional - guidance * unconditional,
            None if v is None else jnp.split(v, 2)[0])

  def predict(params, xt, t, labels, guidance=0.0):
    """(eps [B, ...], log-variance of p(x_{t-1} | x_t) [B, ...]) at timesteps t [B], for
    `sample.variance` (ddpm formulation)."""
    prediction, v = network(params, xt, t, labels, guidance)
    eps = losses.to_eps(schedule, d.prediction, xt, t, prediction)
    if smp.variance == 'learned':
      return eps, sch.learned_range_log_variance(schedule, t, v)
    log_var = sch.fixed_log_variance(schedule, smp.variance)[t][:, None, None, None]
    return eps, jnp.broadcast_to(log_var, eps.shape)

  def guided_denoiser(params, labels, guidance) -> sigma_samplers.DenoiseFn:
    """D(x, sigma): EDM's preconditioned network, or a ddpm model through the VP wrapper,
    guided by `guidance` (a number, or one per example [B])."""
    if edm_model:
      return lambda x, sigma: edm.denoise(  # noqa: E731
          lambda x_in, c_noise: network(params, x_in, c_noise, labels, guidance)[0], x, sigma,
          d.sigma_data)
    return edm.vp_denoiser(lambda xt, t: network(params, xt, t, labels, guidance)[0],
                           schedule, d.prediction)

  def denoiser(params, labels, guidance) -> sigma_samplers.DenoiseFn:
    """D(x, sigma [B]) guided at the levels in (sample.guidance_sigma_min,
    guidance_sigma_max] only (Kynkaanniemi et al. 2024), conditional elsewhere; a level
    where no example is guided costs one network evaluation, not two."""
    if not (guidance and _guidance_interval(smp)):
      return guided_denoiser(params, labels, guidance)
    conditional = guided_denoiser(params, labels, 0.0)

    def denoise_fn(x, sigma):
      inside = (sigma > smp.guidance_sigma_min) & (sigma <= smp.guidance_sigma_max)
      weights = jnp.where(inside, guidance, 0.0)
      return jax.lax.cond(jnp.any(inside), guided_denoiser(params, labels, weights),
                          conditional, x, sigma)
    return denoise_fn

  def init(rng, images):
    params = model.init(rng, images[:1], jnp.zeros((1,), jnp.float32),
                        labels=labels_lib.given(config, jnp.zeros((1,), jnp.int32)))['params']
    return state_lib.create(params, tx)

  def ddpm_loss(x0, keys, labels, apply):
    """L_simple (min-SNR weighted) [B], plus L_hybrid's term with a learned variance."""
    t = jax.vmap(lambda k: jax.random.randint(jax.random.fold_in(k, 0), (), 0,
                                              d.num_steps))(keys)
    eps = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 1), shape))(keys)
    xt = sch.q_sample(schedule, x0, t, eps)
    goal = losses.target(schedule, d.prediction, x0, t, eps)
    snr = schedule.alphas_cumprod[t] / (1 - schedule.alphas_cumprod[t])
    weight = losses.min_snr_weight(snr, d.prediction, d.min_snr_gamma)
    prediction, v = split(apply(xt, t, labels))
    loss = losses.regression_loss(prediction, goal, weight)
    aux = {'mse': losses.regression_loss(prediction, goal, 1.0)}
    if d.learn_variance:
      # L_hybrid: lambda times T (the uniform-t estimate of the whole sum) times term t.
      eps_hat = losses.to_eps(schedule, d.prediction, xt, t, jax.lax.stop_gradient(prediction))
      vlb = losses.vlb_bits_per_dim(schedule, x0, xt, t, eps_hat, v)
      loss = loss + d.vlb_weight * d.num_steps * vlb
      aux['vlb_bpd'] = vlb
    return loss, aux

  def edm_loss(x0, keys, labels, apply):
    """EDM's loss [B]: lambda(sigma) |D(x0 + sigma n, sigma) - x0|^2 per dimension at
    ln sigma ~ N(p_mean, p_std^2); aux: the same without the weight."""
    sigma = edm.training_sigmas(keys, d.p_mean, d.p_std)
    noise = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 1), shape))(keys)
    x = x0 + sigma[:, None, None, None] * noise
    denoised = edm.denoise(lambda x_in, c_noise: apply(x_in, c_noise, labels), x, sigma,
                           d.sigma_data)
    mse = losses.regression_loss(denoised, x0, 1.0)
    return edm.loss_weight(sigma, d.sigma_data) * mse, {'mse': mse}

  loss_terms = edm_loss if edm_model else ddpm_loss

  def train_step(state, batch, rng):
    def loss_fn(params, batch):
      keys = example_keys(rng, batch['id'])
      labels = (drop_labels(batch['label'], keys, d.label_dropout, num_classes)
                if num_classes else None)
      apply = lambda x, t, labels: model.apply(  # noqa: E731
          {'params': params}, x, t, train=True, ids=batch['id'], labels=labels,
          rngs={'dropout': rng})
      loss, aux = loss_terms(batch['image'], keys, labels, apply)
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
    labels = labels_lib.given(config, batch['label'])  # p(x | its class)
    if edm_model:
      apply = lambda x, t, labels: model.apply(  # noqa: E731
          {'params': state.ema_params}, x, t, labels=labels)
      loss, aux = edm_loss(batch['image'], keys, labels, apply)
      return {'edm_loss': loss, **aux}
    nll = likelihood.nll_bound(schedule, mean_logvar(state.ema_params, labels), batch['image'],
                               keys)
    return {'nll': nll, 'bpd': nll / (num_dims * np.log(2))}

  def sample(params, rng, ids):
    keys = example_keys(rng, ids)
    labels = labels_lib.asked(config, ids)
    if smp.sampler == 'ddpm':
      return samplers.ddpm_sample(lambda xt, t: predict(params, xt, t, labels, smp.guidance),
                                  schedule, keys, shape)
    if smp.sampler == 'ddim':
      eps_fn = lambda xt, t: predict(params, xt, t, labels, smp.guidance)[0]  # noqa: E731
      return samplers.ddim_sample(eps_fn, schedule, keys, shape, sample_steps, smp.eta)
    denoise_fn = denoiser(params, labels, smp.guidance)
    x = sigmas[0] * samplers.example_noise(keys, len(sigmas) - 1, shape)
    if smp.sampler == 'heun':
      return sigma_samplers.heun_sample(denoise_fn, sigmas, x, keys, smp.churn, smp.s_tmin,
                                        smp.s_tmax, smp.s_noise)
    solve = {'euler': sigma_samplers.euler_sample,
             'dpmpp_2m': sigma_samplers.dpmpp_2m_sample}[smp.sampler]
    return solve(denoise_fn, sigmas, x)

  def edit(params, rng, ids, images, masks, labels):
    e = config.edit
    return editing.edit_sample(
        denoiser(params, labels_lib.given(config, labels), smp.guidance),
        edit_sigmas(config, schedule), images, masks, example_keys(rng, ids), e.strength,
        e.jump, e.resample)

  return Family('ddpm', init, train_step, eval_step, sample, edit=edit)
