"""On-device augmentation: values, and randomness that follows the example id only."""

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax.data.augment import prepare_images


def test_scaling_binarization_and_flips_follow_the_id():
  rng = jax.random.key(0)
  images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (16, 6, 6, 1)), jnp.uint8)
  ids = jnp.arange(100, 116)
  plain = prepare_images(images, ids, rng, binarize=False, random_flip=False)
  np.testing.assert_allclose(plain, images / 127.5 - 1.0, atol=1e-6)

  binary = prepare_images(images, ids, rng, binarize=True, random_flip=False)
  assert set(np.unique(binary)) <= {-1.0, 1.0}
  # The same example (same id) gets the same draw in any batch position or batch size.
  order = jnp.arange(15, -1, -1)
  reordered = prepare_images(images[order], ids[order], rng, binarize=True, random_flip=True)
  again = prepare_images(images, ids, rng, binarize=True, random_flip=True)
  np.testing.assert_array_equal(reordered, again[order])
  np.testing.assert_array_equal(
      prepare_images(images[:4], ids[:4], rng, binarize=True, random_flip=True), again[:4])


def test_binarization_is_unbiased_and_flips_half():
  rng = jax.random.key(1)
  n = 4000
  images = jnp.full((n, 2, 2, 1), 64, jnp.uint8)  # intensity 64/255
  binary = prepare_images(images, jnp.arange(n), rng, binarize=True, random_flip=False)
  ones = float(jnp.mean(binary > 0))
  assert abs(ones - 64 / 255) < 4 * np.sqrt(0.25 / (4 * n))
  ramp = jnp.broadcast_to(jnp.arange(2, dtype=jnp.uint8)[None, None, :, None] * 255,
                          (n, 2, 2, 1))
  flipped = prepare_images(ramp, jnp.arange(n), rng, binarize=False, random_flip=True)
  share = float(jnp.mean(flipped[:, 0, 0, 0] > 0))
  assert abs(share - 0.5) < 4 * np.sqrt(0.25 / n)
