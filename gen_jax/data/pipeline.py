"""tfds sources read through grain: a checkpointable training stream and padded eval batches.

The training stream is one global sequence of examples, the same for any number of
processes: position `n` of the stream is global example `n`, and step `s` uses positions
`s * B ... s * B + B - 1` (B = global batch). Process `p` of `P` reads the `p`-th slice of
each global batch. Each example carries its stream position as `id`, from which the
on-device augmentation and the families fold their per-example random keys.
"""

import fcntl
import os
from collections.abc import Iterator
from typing import Any

import grain
import numpy as np
import tensorflow_datasets as tfds
from ml_collections import ConfigDict
from PIL import Image

from gen_jax.data import builders
from gen_jax.errors import UserError

OFFLINE_BUILDERS = {'digits': builders.Digits, 'mnist_idx': builders.MnistIdx}
tfds.disable_progress_bar()


def _builder(data: ConfigDict) -> tfds.core.DatasetBuilder:
  try:
    return tfds.builder(data.name, data_dir=data.data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise UserError(
        f'unknown dataset data.name={data.name!r}: expected a tfds dataset name (e.g. mnist, '
        f'cifar10, celeb_a) or an offline builder ({", ".join(OFFLINE_BUILDERS)})') from None


def _prepare(builder: Any, data: ConfigDict) -> None:
  """Prepares the dataset once, under a file lock: runs started side by side on a fresh
  data_dir (a sweep with --parallel) would otherwise race to rename the same folder."""
  root = os.path.dirname(os.path.dirname(builder.data_dir))  # DATA_DIR/NAME
  os.makedirs(root, exist_ok=True)
  with open(os.path.join(root, '.prepare.lock'), 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
    if builder.is_prepared():  # prepared by the run that held the lock before us
      return
    try:
      builder.download_and_prepare(
          file_format='array_record',
          download_config=tfds.download.DownloadConfig(manual_dir=data.manual_dir))
    except (FileNotFoundError, AssertionError, ValueError) as e:  # tfds asserts on an empty dir
      raise UserError(f'cannot prepare dataset {data.name!r}: {" ".join(str(e).split())}') from None


def load_source(data: ConfigDict, split: str) -> Any:
  """Returns the tfds random-access source of `split`, preparing the dataset once if needed."""
  builder = _builder(data)
  if not builder.is_prepared():
    if data.manual_dir is not None and not os.path.isdir(data.manual_dir):
      raise UserError(f'data.manual_dir={data.manual_dir!r} is not a directory '
                      f'(dataset {data.name!r} reads its source files from there)')
    if builder.MANUAL_DOWNLOAD_INSTRUCTIONS and data.manual_dir is None:
      raise UserError(f'dataset {data.name!r} needs data.manual_dir: '
                      f'{builder.MANUAL_DOWNLOAD_INSTRUCTIONS}')
    _prepare(builder, data)
  try:
    return tfds.data_source(data.name, split=split, data_dir=data.data_dir)
  except ValueError as e:
    raise UserError(f'dataset {data.name!r}, split {split!r}: {" ".join(str(e).split())}') from None


def decode_image(image: np.ndarray, image_size: int, crop_size: int) -> np.ndarray:
  """Center-crops to `crop_size` (0: no crop) and resizes to a square of `image_size`.

  Returns: uint8 [image_size, image_size, C].
  """
  image = np.asarray(image)
  if image.ndim == 2:
    image = image[:, :, None]
  if crop_size:
    h, w = image.shape[:2]
    if crop_size > min(h, w):
      raise UserError(f'data.crop_size={crop_size} is larger than the images ({h}x{w})')
    top, left = (h - crop_size) // 2, (w - crop_size) // 2
    image = image[top:top + crop_size, left:left + crop_size]
  if image.shape[:2] != (image_size, image_size):
    channels = image.shape[2]
    pil = Image.fromarray(image[:, :, 0] if channels == 1 else image)
    pil = pil.resize((image_size, image_size), Image.Resampling.BILINEAR)
    image = np.asarray(pil).reshape(image_size, image_size, channels)
  return image


def _example(record: dict, index: int, data: ConfigDict) -> dict[str, np.ndarray]:
  return {'image': decode_image(record['image'], data.image_size, data.crop_size),
          'label': np.int32(record.get('label', -1)),
          'id': np.int32(index)}


def train_iterator(data: ConfigDict, seed: int, process_index: int, process_count: int,
                   split: str = 'train') -> grain.DatasetIterator:
  """Endless shuffled stream of this process's slices of the global batches.

  Yields: {'image': uint8 [b, H, W, C], 'label': int32 [b], 'id': int32 [b]} with
  b = data.batch_size // process_count. `get_state()`/`set_state()` save its position.
  """
  if data.batch_size % process_count:
    raise UserError(f'data.batch_size={data.batch_size} must divide by the process count '
                    f'{process_count}')
  ds = (grain.MapDataset.source(load_source(data, split)).seed(seed).shuffle().repeat()
        .map_with_index(lambda i, record: _example(record, i, data))
        .batch(data.batch_size // process_count))
  ds = ds[process_index::process_count]
  read_options = grain.ReadOptions(num_threads=data.num_threads, prefetch_buffer_size=4)
  return iter(ds.to_iter_dataset(read_options))


def eval_source(data: ConfigDict, split: str, num_examples: int,
                key: str = 'num_examples') -> Any:
  """Returns the source of `split`, checked to hold at least `num_examples` examples (a
  UserError names the config `key` that asked for them)."""
  source = load_source(data, split)
  if num_examples > len(source):
    raise UserError(f'{key}={num_examples} but split {split!r} of {data.name!r} '
                    f'holds only {len(source)} examples')
  return source


def eval_batches(data: ConfigDict, split: str, num_examples: int, global_batch_size: int,
                 process_index: int, process_count: int) -> Iterator[dict[str, np.ndarray]]:
  """The first `num_examples` of `split` in tfds order, in global batches padded with mask 0.

  Yields: {'image': uint8 [b, H, W, C], 'label', 'id': int32 [b], 'mask': float32 [b]}, this
  process's slice of each global batch; every process yields the same number of batches.
  """
  source = eval_source(data, split, num_examples)
  ds = grain.MapDataset.source(source)[:num_examples].map_with_index(
      lambda i, record: _example(record, i, data))
  local = global_batch_size // process_count
  for start in range(0, num_examples, global_batch_size):
    ids = np.arange(start + process_index * local, start + (process_index + 1) * local)
    examples = [ds[min(i, num_examples - 1)] for i in ids]
    batch = {k: np.stack([e[k] for e in examples]) for k in examples[0]}
    batch['id'] = ids.astype(np.int32)
    batch['mask'] = (ids < num_examples).astype(np.float32)
    yield batch
