"""VAE family: diagonal-Gaussian posterior, N(0, I) prior, Bernoulli or discretized-logistic
likelihood, analytic KL. All quantities are nats per example (summed over pixels and
latents, never averaged over pixels); bits/dim divide by H * W * C * ln 2.

With `model.num_classes` > 0 it is a conditional VAE (Sohn et al. 2015): every quantity is
conditioned on the example's label (the bounds are of log p(x | y)), and samples decode
z ~ N(0, I) with the class that `gen_jax.labels` asks of their id.
"""

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from gen_jax import distributions, optim, parallel, vae_losses
from gen_jax import labels as labels_lib
from gen_jax import state as state_lib
from gen_jax.errors import ConfigError
from gen_jax.families import Family
from gen_jax.models.conv_vae import ConvVAE
from gen_jax.rng import example_keys

LIKELIHOODS = {'bernoulli': 1, 'logistic': 2}  # decoder outputs per image channel


def _sum_per_example(x: jax.Array) -> jax.Array:
  return x.reshape(x.shape[0], -1).sum(axis=1)


def _check_config(config: ConfigDict) -> None:
  m = config.model
  if not m.channels:
    raise ConfigError('model.channels is empty: expected one or more conv widths')
  if m.likelihood not in LIKELIHOODS:
    raise ConfigError(f'model.likelihood={m.likelihood!r}: expected one of {sorted(LIKELIHOODS)}')
  if m.likelihood == 'bernoulli' and not config.data.binarize:
    raise ConfigError('model.likelihood=bernoulli needs binary data: set data.binarize=True')
  size = config.data.image_size
  if size % 2 ** len(m.channels):
    raise ConfigError(f'data.image_size={size} must divide by 2**len(model.channels)='
                      f'{2 ** len(m.channels)}')
  iw_samples, iw_chunk = config.eval.iw_samples, config.eval.iw_chunk
  if iw_samples < 0 or iw_chunk <= 0 or iw_samples % iw_chunk:
    raise ConfigError(f'eval.iw_samples={iw_samples}, eval.iw_chunk={iw_chunk}: expected '
                      'iw_samples >= 0 that divides by iw_chunk > 0')


def make(config: ConfigDict) -> Family:
  """Builds the VAE's init / train_step / eval_step / sample / reconstruct from `config`."""
  _check_config(config)
  m = config.model
  size, channels = config.data.image_size, config.data.channels
  num_classes = labels_lib.num_classes(config)
  model = ConvVAE(tuple(m.channels), m.hidden, m.latent_dim, (size, size, channels),
                  LIKELIHOODS[m.likelihood], num_classes)
  tx = optim.make_optimizer(config.optim, config.train.num_steps)
  num_dims = size * size * channels
  iw_samples, iw_chunk = config.eval.iw_samples, config.eval.iw_chunk

  def log_likelihood(params, x, z, labels):
    """log p(x | z) (or p(x | z, y)) per example, [B]."""
    out = model.apply({'params': params}, z, labels, method=ConvVAE.decode)
    if m.likelihood == 'bernoulli':
      ll = distributions.bernoulli_log_likelihood((x + 1.0) / 2.0, out)
    else:
      mean, log_scale = jnp.split(out, 2, axis=-1)
      ll = distributions.discretized_logistic_log_likelihood(x, mean, jnp.clip(log_scale, -7., 7.))
    return _sum_per_example(ll)

  def mean_image(out):
    if m.likelihood == 'bernoulli':
      return jax.nn.sigmoid(out) * 2.0 - 1.0
    return jnp.clip(jnp.split(out, 2, axis=-1)[0], -1.0, 1.0)

  def elbo_terms(params, x, labels, keys):
    """Per-example log p(x|z), KL and ELBO with one reparameterized z, each [B]."""
    mean, logvar = model.apply({'params': params}, x, labels, method=ConvVAE.encode)
    eps = jax.vmap(lambda k: jax.random.normal(k, (m.latent_dim,)))(keys)
    z = vae_losses.reparameterize(mean, logvar, eps)
    return vae_losses.elbo_terms(log_likelihood(params, x, z, labels), mean, logvar)

  def iw_nll(params, x, labels, keys):
    """-log (1/K sum_k p(x, z_k) / q(z_k | x)), z_k ~ q(z | x), K = eval.iw_samples: [B]."""
    mean, logvar = model.apply({'params': params}, x, labels, method=ConvVAE.encode)
    eps = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 1),
                                               (iw_samples, m.latent_dim)))(keys)
    eps = eps.reshape(x.shape[0], iw_samples // iw_chunk, iw_chunk, m.latent_dim)

    def chunk_log_weights(eps_chunk):  # [B, chunk, L] -> [B, chunk]
      z = vae_losses.reparameterize(mean[:, None], logvar[:, None], eps_chunk)
      x_rep = jnp.repeat(x, iw_chunk, axis=0)
      labels_rep = None if labels is None else jnp.repeat(labels, iw_chunk, axis=0)
      log_px = log_likelihood(params, x_rep, z.reshape(-1, m.latent_dim), labels_rep)
      return vae_losses.importance_log_weights(log_px.reshape(z.shape[:2]), z, mean, logvar)

    log_w = jax.lax.map(chunk_log_weights, eps.transpose(1, 0, 2, 3))  # [chunks, B, chunk]
    return vae_losses.importance_weighted_nll(
        log_w.transpose(1, 0, 2).reshape(x.shape[0], iw_samples))

  def init(rng, images):
    params = model.init(rng, images[:1],
                        labels_lib.given(config, jnp.zeros((1,), jnp.int32)))['params']
    return state_lib.create(params, tx)

  def train_step(state, batch, rng):
    def loss_fn(params, batch):
      terms = elbo_terms(params, batch['image'], labels_lib.given(config, batch['label']),
                         example_keys(rng, batch['id']))
      loss = jnp.mean(vae_losses.beta_loss(terms, config.loss.beta))
      return parallel.pmean(loss), parallel.pmean({k: jnp.mean(v) for k, v in terms.items()})

    (loss, metrics), grads = state_lib.loss_and_grads(loss_fn, state.params, batch,
                                                      config.train.grad_accum_steps)
    state, norms = state_lib.apply_gradients(state, grads, tx, config.optim.ema_decay)
    metrics['bpd'] = -metrics['elbo'] / (num_dims * np.log(2))
    return state, {'loss': loss, **metrics, **norms}

  def eval_step(state, batch, rng):
    keys, labels = example_keys(rng, batch['id']), labels_lib.given(config, batch['label'])
    terms = elbo_terms(state.ema_params, batch['image'], labels, keys)
    terms['bpd'] = -terms['elbo'] / (num_dims * np.log(2))
    if iw_samples:
      terms['nll_iw'] = iw_nll(state.ema_params, batch['image'], labels, keys)
      terms['nll_bpd'] = terms['nll_iw'] / (num_dims * np.log(2))
    return terms

  def sample(params, rng, ids):
    z = jax.vmap(lambda k: jax.random.normal(k, (m.latent_dim,)))(example_keys(rng, ids))
    labels = labels_lib.asked(config, ids)
    return mean_image(model.apply({'params': params}, z, labels, method=ConvVAE.decode))

  def reconstruct(params, images, labels):
    return mean_image(model.apply({'params': params}, images, labels_lib.given(config, labels)))

  return Family('vae', init, train_step, eval_step, sample, reconstruct,
                networks=('encoder', 'decoder'))
