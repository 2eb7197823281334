"""Inpainting masks: float32 [H, W, 1], 1 where a pixel of the given image is kept and 0
where it is generated."""

import numpy as np

from gen_jax import layout
from gen_jax.data.image_builders import load_image

SHAPES = ('none', 'box', 'half', 'random')


def box_mask(size: int) -> np.ndarray:
  """Generates the centred square of half the side (a quarter of the image)."""
  mask = np.ones((size, size, 1), np.float32)
  low, high = size // 4, size // 4 + size // 2
  mask[low:high, low:high] = 0.0
  return mask


def half_mask(size: int) -> np.ndarray:
  """Keeps the left half and generates the right half."""
  mask = np.ones((size, size, 1), np.float32)
  mask[:, size // 2:] = 0.0
  return mask


def random_mask(size: int, fraction: float, seed: int, image_id: int) -> np.ndarray:
  """Generates each pixel with probability `fraction`, drawn from (seed, image_id): the same
  mask for an image whatever the batch or device count."""
  rng = np.random.default_rng([seed, image_id])
  return (rng.random((size, size, 1)) >= fraction).astype(np.float32)


def mask_file(path: str, size: int, crop_size: int = 0) -> np.ndarray:
  """A user's mask image (any format Pillow reads), centre-cropped (`crop_size`, 0: the
  largest square) and resized to `size` like the images it masks: white (> 127 in grey) is
  kept, black is generated."""
  grey = load_image(layout.path(path).read_bytes(), path, 'L', crop_size, size)
  return (grey > 127).astype(np.float32)


def masks(shape: str, size: int, ids: np.ndarray, fraction: float = 0.5, seed: int = 0,
          crop_size: int = 0) -> np.ndarray:
  """The masks [n, size, size, 1] of images `ids` [n]: `shape` is one of SHAPES ('none':
  generate every pixel) or the path of a mask image, the same for every image."""
  if shape == 'none':
    one = np.zeros((size, size, 1), np.float32)
  elif shape == 'box':
    one = box_mask(size)
  elif shape == 'half':
    one = half_mask(size)
  elif shape == 'random':
    if not 0.0 <= fraction <= 1.0:
      raise ValueError(f'mask fraction={fraction}: expected a value in [0, 1]')
    return np.stack([random_mask(size, fraction, seed, int(i)) for i in ids])
  else:
    one = mask_file(shape, size, crop_size)
  return np.repeat(one[None], len(ids), axis=0)
