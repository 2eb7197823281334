"""Datasets read through grain: a checkpointable training stream and padded eval batches.

The training stream is one global sequence of examples, the same for any number of
processes: position `n` of the stream is global example `n`, and step `s` uses positions
`s * B ... s * B + B - 1` (B = global batch). Process `p` of `P` reads the `p`-th slice of
each global batch. Each example carries its stream position as `id`, from which the
on-device augmentation and the families fold their per-example random keys.
"""

import functools
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grain
import numpy as np
from absl import flags
from ml_collections import ConfigDict
from PIL import Image

from gen_jax.data import image_builders
from gen_jax.data.sources import load_source, read_crop_size
from gen_jax.errors import UserError


def decode_image(image: np.ndarray, image_size: int, crop_size: int) -> np.ndarray:
  """Center-crops to `crop_size` (0: the largest centred square) and resizes to a square of
  `image_size`; an image already of that size (and no crop asked) is returned as it is.

  Returns: uint8 [image_size, image_size, C].
  """
  image = np.asarray(image)
  if image.ndim == 2:
    image = image[:, :, None]
  if not crop_size and image.shape[:2] == (image_size, image_size):
    return image
  channels = image.shape[2]
  try:
    pil = image_builders.center_crop_resize(
        Image.fromarray(image[:, :, 0] if channels == 1 else image), crop_size, image_size)
  except ValueError as e:
    raise UserError(f'data.{e}') from None
  return np.asarray(pil).reshape(image_size, image_size, channels)


def _example(index: int, record: dict, image_size: int, crop: int) -> dict[str, np.ndarray]:
  """A record as the families see it; `index` is its position in the stream or split."""
  return {'image': decode_image(record['image'], image_size, crop),
          'label': np.int32(record.get('label', -1)),
          'id': np.int32(index)}


def decoded_arrays(source: Any, image_size: int, crop: int,
                   max_bytes: float) -> dict[str, np.ndarray] | None:
  """Every record of `source` decoded into host memory, {'image': uint8 [N, H, W, C],
  'label': int32 [N]}; None if the images would take more than `max_bytes`."""
  first = decode_image(source[0]['image'], image_size, crop)
  if len(source) * first.nbytes > max_bytes:
    return None
  images, labels = np.empty((len(source), *first.shape), np.uint8), np.empty(len(source), np.int32)
  for start in range(0, len(source), 1024):
    for i, record in enumerate(source.__getitems__(range(start, min(start + 1024, len(source)))),
                               start):
      images[i] = decode_image(record['image'], image_size, crop)
      labels[i] = record.get('label', -1)
  return {'image': images, 'label': labels}


def _gather(position: int, indices: np.ndarray, arrays: dict[str, np.ndarray]) -> dict:
  """Batch `position` of the stream from the arrays in memory, one gather per array."""
  ids = position * len(indices) + np.arange(len(indices), dtype=np.int32)
  return {'image': arrays['image'][indices], 'label': arrays['label'][indices], 'id': ids}


def train_dataset(data: ConfigDict, seed: int, process_index: int, process_count: int,
                  split: str = 'train') -> tuple[grain.MapDataset, bool]:
  """The endless shuffled stream as a random-access dataset: element k is this process's
  slice of global batch k, {'image': uint8 [b, H, W, C], 'label': int32 [b], 'id': int32 [b]}
  with b = data.batch_size // process_count; and whether it reads from host memory.

  A split whose decoded images fit data.in_memory_gib is decoded once into host memory and
  each batch is one gather; a larger one is read and decoded record by record. Both give
  the same stream: the same permutation of the records in each epoch.
  """
  if data.batch_size % process_count:
    raise UserError(f'data.batch_size={data.batch_size} must divide by the process count '
                    f'{process_count}')
  source, crop = load_source(data, split), read_crop_size(data)
  arrays = decoded_arrays(source, data.image_size, crop, data.get('in_memory_gib', 0) * 2**30)
  if arrays is None:
    example = functools.partial(_example, image_size=data.image_size, crop=crop)
    ds = (grain.MapDataset.source(source).seed(seed).shuffle().repeat()
          .map_with_index(example).batch(data.batch_size // process_count))
  else:
    ds = (grain.MapDataset.range(len(source)).seed(seed).shuffle().repeat()
          .batch(data.batch_size // process_count)
          .map_with_index(functools.partial(_gather, arrays=arrays)))
  return ds[process_index::process_count], arrays is not None


class TrainStream:
  """Iterates a `train_dataset` from position `next_index` on. grain reads ahead with
  `num_threads` threads, or `num_workers` worker processes; a thread applies `transform`
  (e.g. placing the batch on the devices) `ahead` batches in advance.

  `get_state()` is {'next_index': batches handed out}, the same whatever the number of
  threads or workers (unlike grain's own iterator state); `wait_seconds` totals the time
  `next()` spent waiting for a batch that was not ready.
  """

  def __init__(self, ds: grain.MapDataset, num_threads: int = 1, num_workers: int = 0,
               transform: Callable[[dict], Any] = lambda batch: batch, ahead: int = 2):
    self._ds, self._transform, self._ahead = ds, transform, ahead
    self._threads, self._workers = num_threads, num_workers
    self.next_index, self.wait_seconds = 0, 0.0
    self._thread = None

  def _start(self) -> None:
    self.close()
    read = self._ds[self.next_index:].to_iter_dataset(grain.ReadOptions(
        num_threads=self._threads, prefetch_buffer_size=2 * self._ahead))
    if self._workers:
      if not flags.FLAGS.is_parsed():  # grain's workers read absl flags: outside an absl app
        flags.FLAGS.mark_as_parsed()  # (a notebook, a test) they keep their defaults
      read = read.mp_prefetch(grain.MultiprocessingOptions(num_workers=self._workers))
    self._queue, self._stop = queue.Queue(self._ahead), threading.Event()
    self._thread = threading.Thread(target=self._fill, args=(iter(read),), daemon=True)
    self._thread.start()

  def _fill(self, batches: Iterator[dict]) -> None:
    try:
      for batch in batches:
        item = (self._transform(batch), None)
        while not self._stop.is_set():
          try:
            self._queue.put(item, timeout=0.1)
            break
          except queue.Full:
            pass
        if self._stop.is_set():
          return
    except Exception as e:  # handed to the consumer, which raises it
      self._queue.put((None, e))

  def __iter__(self) -> 'TrainStream':
    return self

  def __next__(self) -> Any:
    if self._thread is None:
      self._start()
    start = time.perf_counter()
    batch, error = self._queue.get()
    self.wait_seconds += time.perf_counter() - start
    if error is not None:
      raise error
    self.next_index += 1
    return batch

  def peek(self) -> dict[str, np.ndarray]:
    """The host batch `next()` will return (before `transform`), read without advancing."""
    return self._ds[self.next_index]

  def get_state(self) -> dict[str, int]:
    return {'next_index': self.next_index}

  def set_state(self, state: dict) -> None:
    index = state.get('next_index') if isinstance(state, dict) else None
    if not isinstance(index, int) or index < 0:
      raise UserError(f'the data position saved with the checkpoint is {state!r}: expected '
                      '{"next_index": N}, N >= 0')
    self.close()
    self.next_index = index

  def close(self) -> None:
    if self._thread is not None:
      self._stop.set()
      self._thread.join()
      self._thread = None


def train_iterator(data: ConfigDict, seed: int, process_index: int, process_count: int,
                   split: str = 'train', **stream: Any) -> TrainStream:
  """The `TrainStream` of this process's slices of the global batches, from the start.

  Yields: {'image': uint8 [b, H, W, C], 'label': int32 [b], 'id': int32 [b]} (or what
  `stream['transform']` makes of it), b = data.batch_size // process_count.
  """
  ds, in_memory = train_dataset(data, seed, process_index, process_count, split)
  # Worker processes would each get a copy of the arrays in memory, for a gather each.
  workers = 0 if in_memory else data.get('num_workers', 0)
  return TrainStream(ds, data.num_threads, workers, **stream)


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
                 process_index: int, process_count: int,
                 key: str = 'num_examples') -> Iterator[dict[str, np.ndarray]]:
  """The first `num_examples` of `split` in tfds order, in global batches padded with mask 0
  (too few examples: a UserError naming the config `key` that asked for them).

  Yields: {'image': uint8 [b, H, W, C], 'label', 'id': int32 [b], 'mask': float32 [b]}, this
  process's slice of each global batch; every process yields the same number of batches.
  """
  source = eval_source(data, split, num_examples, key)
  ds = grain.MapDataset.source(source)[:num_examples].map_with_index(functools.partial(
      _example, image_size=data.image_size, crop=read_crop_size(data)))
  local = global_batch_size // process_count
  for start in range(0, num_examples, global_batch_size):
    ids = np.arange(start + process_index * local, start + (process_index + 1) * local)
    examples = [ds[min(i, num_examples - 1)] for i in ids]
    batch = {k: np.stack([e[k] for e in examples]) for k in examples[0]}
    batch['id'] = ids.astype(np.int32)
    batch['mask'] = (ids < num_examples).astype(np.float32)
    yield batch
