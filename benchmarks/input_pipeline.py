"""Throughput of the training input pipeline alone: images/s for CIFAR-10-sized (32x32x3) and
CelebA-64-sized (64x64x3) records, decoded once into memory (the default for splits that fit
data.in_memory_gib), and read from the files in this process (grain threads) and by 1, 2 and
4 grain worker processes.

  python benchmarks/input_pipeline.py [--batch=128] [--batches=200] [--workers=0,1,2,4]
      [--records=10000] [--dir=/tmp/gen_jax_input_bench]

The datasets are written in their real formats (a CIFAR-10 python tarball of random images;
a CelebA zip of JPEG faces) and prepared once by gen_jax's offline builders into `--dir`,
the path a run takes. Each row times `--batches` batches of `pipeline.train_iterator` (shuffled
reads, the per-record map, batching; no device transfer) after 10 batches of warm-up (the
in-memory row's decoding of the whole split before them is not timed), and prints images/s
and the peak RSS of this process. Compare rows of one session only.
"""

import os
import resource
import sys
import time

from absl import app, flags, logging
from machine import description
from ml_collections import ConfigDict

from gen_jax.data import pipeline, sources

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.data import real_formats  # noqa: E402  (the writers of the real formats)

_BATCH = flags.DEFINE_integer('batch', 128, 'Images per batch.')
_BATCHES = flags.DEFINE_integer('batches', 200, 'Timed batches per row.')
_WORKERS = flags.DEFINE_list('workers', ['0', '1', '2', '4'],
                             'grain worker processes per row (0: threads in this process).')
_THREADS = flags.DEFINE_integer('threads', 1, 'data.num_threads (reader threads per process).')
_RECORDS = flags.DEFINE_integer('records', 10_000, 'Training records per dataset.')
_DIR = flags.DEFINE_string('dir', '/tmp/gen_jax_input_bench', 'Where the files are written.')


def dataset(name: str, root: str, records: int) -> ConfigDict:
  """Writes the source files of `name` (once) and returns its data config."""
  manual = os.path.join(root, f'{name}_files')
  if not os.path.isdir(manual):
    os.makedirs(manual)
    if name == 'cifar10':
      real_formats.write_cifar10(manual, per_batch=records // 5)
    else:
      real_formats.write_celeba(manual, partition=[0] * records + [1, 2], attributes=False)
  size, crop = (32, 0) if name == 'cifar10' else (64, 108)
  return ConfigDict({'name': name, 'data_dir': os.path.join(root, 'tfds'), 'manual_dir': manual,
                     'image_size': size, 'crop_size': crop, 'channels': 3,
                     'batch_size': _BATCH.value, 'num_threads': _THREADS.value,
                     'num_workers': 0, 'in_memory_gib': 0.0})


def images_per_second(data: ConfigDict, batches: int) -> float:
  stream = pipeline.train_iterator(data, seed=0, process_index=0, process_count=1)
  for _ in range(10):
    next(stream)
  start = time.perf_counter()
  for _ in range(batches):
    next(stream)
  elapsed = time.perf_counter() - start
  stream.close()
  return batches * data.batch_size / elapsed


def main(argv: list[str]) -> None:
  del argv
  logging.set_verbosity(logging.ERROR)  # as gen_jax.main: tfds's notes would bury the table
  print(description())
  print('| records | read | workers | threads | images/s | peak RSS MiB |')
  print('| --- | --- | --- | --- | --- | --- |')
  for name in ('cifar10', 'celeb_a'):
    data = dataset(name, _DIR.value, _RECORDS.value)
    start = time.perf_counter()
    sources.prepare(data)
    print(f'{name}: prepared in {time.perf_counter() - start:.1f} s '
          f'(once; later runs reuse it)', file=sys.stderr)
    for in_memory, workers in [(True, 0)] + [(False, w) for w in map(int, _WORKERS.value)]:
      data.num_workers, data.in_memory_gib = workers, 64.0 if in_memory else 0.0
      rate = images_per_second(data, _BATCHES.value)
      rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
      shape = f'{data.image_size}x{data.image_size}x3'
      read = 'in memory' if in_memory else 'files'
      print(f'| {name} {shape} | {read} | {workers} | {data.num_threads} | {rate:,.0f} | '
            f'{rss:,.0f} |', flush=True)


if __name__ == '__main__':
  app.run(main)
