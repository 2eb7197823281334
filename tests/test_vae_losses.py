"""The VAE's objectives alone, on a linear-Gaussian model whose evidence and posterior have
closed forms: z ~ N(0, I), x | z ~ N(z, s^2 I), so p(x) = N(0, (1 + s^2) I) and
p(z | x) = N(x / (1 + s^2), s^2 / (1 + s^2) I)."""

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax import distributions, vae_losses

S2 = 0.3


def _model(batch=5, dims=3):
  x = jax.random.normal(jax.random.key(0), (batch, dims)) * 1.5
  log_evidence = distributions.gaussian_log_density(x, 0.0, jnp.log(1 + S2)).sum(-1)
  mean, logvar = x / (1 + S2), jnp.full_like(x, jnp.log(S2 / (1 + S2)))
  return x, log_evidence, mean, logvar


def _log_px(x, z):
  """log p(x | z_k) [B, K] for z [B, K, L]."""
  return distributions.gaussian_log_density(x[:, None], z, jnp.log(S2)).sum(-1)


def test_importance_weights_of_the_true_posterior_are_the_evidence():
  x, log_evidence, mean, logvar = _model()
  for k in (1, 64):
    eps = jax.random.normal(jax.random.key(k), (x.shape[0], k, x.shape[1]))
    z = vae_losses.reparameterize(mean[:, None], logvar[:, None], eps)
    log_w = vae_losses.importance_log_weights(_log_px(x, z), z, mean, logvar)
    np.testing.assert_allclose(log_w, jnp.broadcast_to(log_evidence[:, None], log_w.shape),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(vae_losses.importance_weighted_nll(log_w), -log_evidence,
                               rtol=1e-5, atol=1e-5)


def test_more_importance_samples_tighten_the_bound_of_a_wrong_posterior():
  x, log_evidence, mean, logvar = _model(batch=200)
  mean, logvar = 0.7 * mean, logvar + 0.5  # q off the true posterior
  bounds = []
  for k in (1, 10, 1000):
    eps = jax.random.normal(jax.random.key(k), (x.shape[0], k, x.shape[1]))
    z = vae_losses.reparameterize(mean[:, None], logvar[:, None], eps)
    log_w = vae_losses.importance_log_weights(_log_px(x, z), z, mean, logvar)
    bounds.append(float(jnp.mean(vae_losses.importance_weighted_nll(log_w))))
  assert bounds[0] > bounds[1] > bounds[2] > -float(jnp.mean(log_evidence))
  assert bounds[2] + float(jnp.mean(log_evidence)) < 0.1 * (bounds[0] + float(
      jnp.mean(log_evidence)))


def test_elbo_of_the_true_posterior_is_the_evidence():
  """With E_q[log p(x | z)] in closed form, recon + KL = -log p(x) (the gap is KL(q || p(z|x)),
  0 here); beta weights only the KL."""
  x, log_evidence, mean, logvar = _model()
  expected_log_px = (distributions.gaussian_log_density(x, mean, jnp.log(S2))
                     - 0.5 * jnp.exp(logvar) / S2).sum(-1)
  terms = vae_losses.elbo_terms(expected_log_px, mean, logvar)
  np.testing.assert_allclose(terms['elbo'], log_evidence, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(vae_losses.beta_loss(terms, 1.0), -log_evidence, rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_allclose(vae_losses.beta_loss(terms, 2.0) - vae_losses.beta_loss(terms, 1.0),
                             terms['kl'], rtol=1e-5, atol=1e-5)
