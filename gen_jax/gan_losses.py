"""GAN losses with one contract, and the gradient penalties.

Every loss maps (d_real_logits [B], d_fake_logits [B]) to LossTerms of per-batch means,
where d_loss = d_loss_real + d_loss_fake is minimised by the discriminator and g_loss by the
generator. g_loss depends on d_fake_logits alone for every loss here.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp


class LossTerms(NamedTuple):
  d_loss: jax.Array
  d_loss_real: jax.Array
  d_loss_fake: jax.Array
  g_loss: jax.Array


def _terms(real: jax.Array, fake: jax.Array, g: jax.Array) -> LossTerms:
  real, fake = jnp.mean(real), jnp.mean(fake)
  return LossTerms(real + fake, real, fake, jnp.mean(g))


def non_saturating(d_real: jax.Array, d_fake: jax.Array) -> LossTerms:
  """Goodfellow et al. (2014): D by cross-entropy, G maximises log D(G(z))."""
  return _terms(jax.nn.softplus(-d_real), jax.nn.softplus(d_fake), jax.nn.softplus(-d_fake))


def hinge(d_real: jax.Array, d_fake: jax.Array) -> LossTerms:
  """Lim & Ye (2017), Miyato et al. (2018): D by hinge at +-1, G minimises -D(G(z))."""
  return _terms(jax.nn.relu(1.0 - d_real), jax.nn.relu(1.0 + d_fake), -d_fake)


def wasserstein(d_real: jax.Array, d_fake: jax.Array) -> LossTerms:
  """Arjovsky et al. (2017): the critic maximises D(x) - D(G(z)); use with a penalty."""
  return _terms(-d_real, d_fake, -d_fake)


def least_squares(d_real: jax.Array, d_fake: jax.Array) -> LossTerms:
  """Mao et al. (2017), targets a = 0, b = c = 1, with their 1/2 factors."""
  return _terms(0.5 * (d_real - 1.0) ** 2, 0.5 * d_fake ** 2, 0.5 * (d_fake - 1.0) ** 2)


LOSSES: dict[str, Callable[[jax.Array, jax.Array], LossTerms]] = {
    'non_saturating': non_saturating, 'hinge': hinge, 'wasserstein': wasserstein,
    'least_squares': least_squares}

# images [B, H, W, C] -> logits [B], each example's logit from that example alone
CriticFn = Callable[[jax.Array], jax.Array]


def _input_gradients(critic: CriticFn, x: jax.Array) -> jax.Array:
  """d logit_i / d x_i for every example, flattened: [B, H*W*C]."""
  return jax.grad(lambda x: jnp.sum(critic(x)))(x).reshape(x.shape[0], -1)


def gradient_penalty(critic: CriticFn, real: jax.Array, fake: jax.Array,
                     mix: jax.Array) -> jax.Array:
  """WGAN-GP (Gulrajani et al. 2017): mean over examples of (||grad D(x_hat)||_2 - 1)^2 at
  x_hat = mix real + (1 - mix) fake, mix [B] in [0, 1]. Scalar, without the lambda."""
  mix = mix.reshape(-1, *[1] * (real.ndim - 1))
  x_hat = mix * real + (1.0 - mix) * fake
  norms = jnp.sqrt(jnp.sum(_input_gradients(critic, x_hat) ** 2, axis=1) + 1e-12)
  return jnp.mean((norms - 1.0) ** 2)


def r1_penalty(critic: CriticFn, real: jax.Array) -> jax.Array:
  """R1 (Mescheder et al. 2018): mean over examples of ||grad D(x)||^2 at the real data.
  Scalar, without the gamma / 2."""
  return jnp.mean(jnp.sum(_input_gradients(critic, real) ** 2, axis=1))
