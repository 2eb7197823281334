"""On-device preprocessing of uint8 batches, with per-example keys from the global example id."""

import jax
import jax.numpy as jnp

from gen_jax.rng import example_keys


def prepare_images(images: jax.Array, ids: jax.Array, rng: jax.Array, *, binarize: bool,
                   random_flip: bool) -> jax.Array:
  """Scales uint8 [B, H, W, C] to float32 in [-1, 1]; optionally binarizes and flips.

  Dynamic binarization draws each pixel from Bernoulli(intensity) and maps it to {-1, 1};
  a flip mirrors an example horizontally with probability 1/2. Both use keys folded from
  the example's global id, so they do not depend on the device or process count.
  """
  x = images.astype(jnp.float32) / 255.0
  keys = example_keys(rng, ids)
  if binarize:
    x = jax.vmap(lambda k, p: jax.random.bernoulli(jax.random.fold_in(k, 0), p))(keys, x)
    x = x.astype(jnp.float32)
  if random_flip:
    flip = jax.vmap(lambda k: jax.random.bernoulli(jax.random.fold_in(k, 1)))(keys)
    x = jnp.where(flip[:, None, None, None], x[:, :, ::-1], x)
  return x * 2.0 - 1.0
