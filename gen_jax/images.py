"""Images in [-1, 1] to uint8, grids and PNG files."""

import io

import numpy as np
from PIL import Image


def to_uint8(images: np.ndarray) -> np.ndarray:
  """Maps float images in [-1, 1] to uint8 [0, 255] (rounded, clipped)."""
  return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def make_grid(images: np.ndarray, columns: int | None = None, pad: int = 1,
              min_cell: int = 32) -> np.ndarray:
  """Tiles uint8 [N, H, W, C] into one uint8 [rows * h, columns * w, C] image.

  Cells are upscaled by nearest neighbour to at least `min_cell` pixels, so 8x8 digits stay
  visible; `pad` pixels of white separate them.
  """
  n, h, w, c = images.shape
  columns = columns or int(np.ceil(np.sqrt(n)))
  rows = int(np.ceil(n / columns))
  scale = max(1, int(np.ceil(min_cell / max(h, w))))
  images = images.repeat(scale, axis=1).repeat(scale, axis=2)
  h, w = h * scale, w * scale
  grid = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, c), 255, np.uint8)
  for i, image in enumerate(images):
    r, col = divmod(i, columns)
    grid[pad + r * (h + pad):pad + r * (h + pad) + h,
         pad + col * (w + pad):pad + col * (w + pad) + w] = image
  return grid


def png_bytes(grid: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(grid[:, :, 0] if grid.shape[2] == 1 else grid).save(buffer, format='PNG')
  return buffer.getvalue()
