"""Log-densities and KLs against closed forms, quadrature and brute-force sums."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from gen_jax import distributions


def test_kl_matches_quadrature():
  for mean, logvar in [(0.0, 0.0), (1.5, -1.0), (-0.3, 0.7)]:
    sd = np.exp(0.5 * logvar)
    q = stats.norm(mean, sd)
    expected = integrate.quad(lambda z, q=q: q.pdf(z) * (q.logpdf(z) - stats.norm.logpdf(z)),
                              mean - 12 * sd, mean + 12 * sd)[0]
    got = distributions.kl_to_standard_normal(jnp.float32(mean), jnp.float32(logvar))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_gaussian_log_density_matches_scipy():
  x = np.linspace(-3, 3, 7)
  got = distributions.gaussian_log_density(x, 0.5, np.log(2.0))
  np.testing.assert_allclose(got, stats.norm(0.5, np.sqrt(2.0)).logpdf(x), rtol=1e-5)


def test_bernoulli_log_likelihood():
  logits = jnp.array([-2.0, 0.0, 3.0])
  p = jax.nn.sigmoid(logits)
  np.testing.assert_allclose(distributions.bernoulli_log_likelihood(1.0, logits), np.log(p),
                             rtol=1e-5)
  np.testing.assert_allclose(distributions.bernoulli_log_likelihood(0.0, logits),
                             np.log1p(-p), rtol=1e-5)


def test_discretized_logistic_is_a_distribution_over_bins():
  bins = jnp.linspace(-1.0, 1.0, 256)
  for mean, log_scale in [(0.0, -2.0), (0.9, -4.0), (-1.2, -1.0), (0.3, -6.5)]:
    log_p = distributions.discretized_logistic_log_likelihood(bins, mean, log_scale)
    np.testing.assert_allclose(jnp.sum(jnp.exp(log_p)), 1.0, rtol=1e-4)


def test_discretized_logistic_matches_cdf_differences():
  """Each bin's mass is F(x + 1/255) - F(x - 1/255) in float64, the edges take the tails."""
  bins = np.linspace(-1.0, 1.0, 256)
  mean, scale = 0.2, np.exp(-3.0)
  cdf = stats.logistic(mean, scale).cdf
  expected = cdf(bins + 1 / 255) - cdf(bins - 1 / 255)
  expected[0], expected[-1] = cdf(bins[0] + 1 / 255), 1 - cdf(bins[-1] - 1 / 255)
  got = distributions.discretized_logistic_log_likelihood(jnp.asarray(bins, jnp.float32),
                                                          mean, -3.0)
  mask = expected > 1e-30
  np.testing.assert_allclose(got[mask], np.log(expected[mask]), rtol=2e-4, atol=2e-4)


def test_gaussian_kl_matches_quadrature():
  for m1, v1, m2, v2 in [(0.3, 0.5, -0.2, 2.0), (1.0, 1.0, 1.0, 1.0), (0.0, 3.0, 0.5, 0.25)]:
    p, q = stats.norm(m1, np.sqrt(v1)), stats.norm(m2, np.sqrt(v2))
    expected = integrate.quad(lambda z, p=p, q=q: p.pdf(z) * (p.logpdf(z) - q.logpdf(z)),
                              m1 - 15 * np.sqrt(v1), m1 + 15 * np.sqrt(v1))[0]
    got = distributions.gaussian_kl(m1, np.log(v1), m2, np.log(v2))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_discretized_gaussian_matches_cdf_differences_and_sums_to_one():
  bins = np.linspace(-1.0, 1.0, 256)
  for mean, log_scale in [(0.2, -3.0), (-0.95, -5.0), (0.0, 0.0)]:
    dist = stats.norm(mean, np.exp(log_scale))
    # float64, each bin from the side of its smaller tail (sf above the mean), so the
    # reference itself does not cancel.
    expected = np.where(bins > mean, dist.sf(bins - 1 / 255) - dist.sf(bins + 1 / 255),
                        dist.cdf(bins + 1 / 255) - dist.cdf(bins - 1 / 255))
    expected[0], expected[-1] = dist.cdf(bins[0] + 1 / 255), dist.sf(bins[-1] - 1 / 255)
    got = distributions.discretized_gaussian_log_likelihood(jnp.asarray(bins, jnp.float32),
                                                            mean, log_scale)
    assert float(jnp.sum(jnp.exp(got))) == pytest.approx(1.0, rel=1e-4)
    mask = expected > 1e-30
    np.testing.assert_allclose(got[mask], np.log(expected[mask]), rtol=1e-3, atol=1e-3)
