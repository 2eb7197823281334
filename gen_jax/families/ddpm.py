"""DDPM family (Ho et al. 2020): a UNet predicts eps, x0 or v from x_t; L_simple (optionally
min-SNR weighted); optionally a learned-range variance trained with L_hybrid (Nichol &
Dhariwal 2021); DDPM ancestral or DDIM sampling from EMA params; bits/dim from the full
variational bound of the reverse process that `sample.variance` names.
"""

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from gen_jax import optim, parallel
from gen_jax import state as state_lib
from gen_jax.data.augment import example_keys
from gen_jax.diffusion import likelihood, samplers
from gen_jax.diffusion import schedules as sch
from gen_jax.errors import UserError
from gen_jax.families import Family
from gen_jax.models.unet import UNet

PREDICTIONS = ('eps', 'x0', 'v')
SAMPLERS = ('ddpm', 'ddim')
VARIANCES = (*sch.VARIANCES, 'learned')


def make(config: ConfigDict) -> Family:
  """Builds the DDPM family's functions from `config.model`, `config.diffusion`, `sample`."""
  m, d, smp = config.model, config.diffusion, config.sample
  for key, value, allowed in (('diffusion.prediction', d.prediction, PREDICTIONS),
                              ('diffusion.schedule', d.schedule, sch.SCHEDULES),
                              ('sample.sampler', smp.sampler, SAMPLERS),
                              ('sample.spacing', smp.spacing, samplers.SPACINGS),
                              ('sample.variance', smp.variance, VARIANCES)):
    if value not in allowed:
      raise UserError(f'{key}={value!r}: expected one of {allowed}')
  if smp.variance == 'learned' and not d.learn_variance:
    raise UserError("sample.variance='learned' needs diffusion.learn_variance=True")
  size, channels = config.data.image_size, config.data.channels
  if size % 2 ** (len(m.ch_mult) - 1) or m.ch % 32:
    raise UserError(f'data.image_size={size} must divide by 2**(len(model.ch_mult)-1) and '
                    f'model.ch={m.ch} by 32 (GroupNorm groups)')
  schedule = sch.get_schedule(d.schedule, d.num_steps)
  sample_steps = None
  if smp.sampler == 'ddim':
    try:
      sample_steps = samplers.timesteps(d.num_steps, smp.steps, smp.spacing)
    except ValueError as e:
      raise UserError(str(e)) from None
  model = UNet(m.ch, tuple(m.ch_mult), m.num_res_blocks, tuple(m.attn_resolutions),
               m.dropout, channels * (2 if d.learn_variance else 1))
  tx = optim.make_optimizer(config.optim, config.train.num_steps)
  shape = (size, size, channels)
  num_dims = size * size * channels
  snr = schedule.alphas_cumprod / (1 - schedule.alphas_cumprod)

  def split(out):
    """The network's output -> (prediction, raw variance output or None)."""
    if d.learn_variance:
      return out[..., :channels], out[..., channels:]
    return out, None

  def to_eps(xt, t, prediction):
    if d.prediction == 'eps':
      return prediction
    if d.prediction == 'x0':
      return sch.eps_from_x0(schedule, xt, t, prediction)
    return sch.eps_from_v(schedule, xt, t, prediction)

  def predict(params, xt, t):
    """(eps [B, ...], log-variance of p(x_{t-1} | x_t) [B, ...]) for `sample.variance`."""
    prediction, v = split(model.apply({'params': params}, xt, t))
    eps = to_eps(xt, t, prediction)
    if smp.variance == 'learned':
      return eps, sch.learned_range_log_variance(schedule, t, v)
    log_var = sch.fixed_log_variance(schedule, smp.variance)[t][:, None, None, None]
    return eps, jnp.broadcast_to(log_var, eps.shape)

  def init(rng, images):
    params = model.init(rng, images[:1], jnp.zeros((1,), jnp.int32))['params']
    return state_lib.create(params, tx)

  def train_step(state, batch, rng):
    x0 = batch['image']
    keys = example_keys(rng, batch['id'])
    t = jax.vmap(lambda k: jax.random.randint(jax.random.fold_in(k, 0), (), 0, d.num_steps))(
        keys)
    eps = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 1), shape))(keys)
    xt = sch.q_sample(schedule, x0, t, eps)
    target = {'eps': eps, 'x0': x0, 'v': sch.v_from_eps_x0(schedule, t, eps, x0)}[d.prediction]
    # Each prediction's own MSE (L_simple for eps). Min-SNR-gamma (Hang et al. 2023) weights
    # it by min(SNR, gamma) over the SNR factor that relates it to the x0-space error.
    weight = jnp.ones_like(snr[t])
    if d.min_snr_gamma:
      clipped = jnp.minimum(snr[t], d.min_snr_gamma)
      weight = {'eps': clipped / snr[t], 'x0': clipped, 'v': clipped / (snr[t] + 1)}[
          d.prediction]

    def loss_fn(params):
      prediction, v = split(model.apply({'params': params}, xt, t, train=True,
                                        ids=batch['id'], rngs={'dropout': rng}))
      mse = jnp.mean((prediction - target) ** 2, axis=(1, 2, 3))
      loss = weight * mse
      aux = {'mse': mse}
      if d.learn_variance:
        # L_hybrid: the bound's term at t, in bits/dim, with the mean frozen so that it only
        # trains the variance; times T (the uniform-t estimate of the whole sum) and lambda.
        eps = to_eps(xt, t, jax.lax.stop_gradient(prediction))
        x0_hat = sch.x0_from_eps(schedule, xt, t, eps)
        mean, _, _ = sch.q_posterior(schedule, x0_hat, xt, t)
        logvar = sch.learned_range_log_variance(schedule, t, v)
        vlb = likelihood.vlb_term(schedule, x0, xt, t, mean, logvar) / (num_dims * np.log(2))
        loss = loss + d.vlb_weight * d.num_steps * vlb
        aux['vlb_bpd'] = vlb
      return parallel.pmean(jnp.mean(loss)), aux

    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state, norms = state_lib.apply_gradients(state, grads, tx, config.optim.ema_decay)
    return state, {'loss': loss, **{k: parallel.pmean(jnp.mean(v)) for k, v in aux.items()},
                   **norms}

  def mean_logvar(params):
    def fn(xt, t):
      eps, logvar = predict(params, xt, t)
      x0 = jnp.clip(sch.x0_from_eps(schedule, xt, t, eps), -1, 1)
      mean, _, _ = sch.q_posterior(schedule, x0, xt, t)
      return mean, logvar
    return fn

  def eval_step(state, batch, rng):
    keys = example_keys(rng, batch['id'])
    nll = likelihood.nll_bound(schedule, mean_logvar(state.ema_params), batch['image'], keys)
    return {'nll': nll, 'bpd': nll / (num_dims * np.log(2))}

  def sample(params, rng, ids):
    keys = example_keys(rng, ids)
    model_fn = lambda xt, t: predict(params, xt, t)  # noqa: E731
    if smp.sampler == 'ddpm':
      return samplers.ddpm_sample(model_fn, schedule, keys, shape)
    eps_fn = lambda xt, t: model_fn(xt, t)[0]  # noqa: E731
    return samplers.ddim_sample(eps_fn, schedule, keys, shape, sample_steps, smp.eta)

  return Family('ddpm', init, train_step, eval_step, sample)
