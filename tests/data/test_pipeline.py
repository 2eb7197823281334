"""The grain stream: determinism, process slicing, checkpointable position, preprocessing."""

import numpy as np
import pytest
from ml_collections import ConfigDict

from gen_jax.data import pipeline, sources


def digits(tfds_dir, **overrides):
  config = ConfigDict({'name': 'digits', 'data_dir': tfds_dir, 'manual_dir': None,
                       'image_size': 8, 'crop_size': 0, 'batch_size': 32, 'num_threads': 0})
  config.update(overrides)
  return config


def take(iterator, n):
  return [next(iterator) for _ in range(n)]


def test_same_seed_same_stream_other_seed_other_stream(tfds_dir):
  a = take(pipeline.train_iterator(digits(tfds_dir), 0, 0, 1), 3)
  b = take(pipeline.train_iterator(digits(tfds_dir), 0, 0, 1), 3)
  c = take(pipeline.train_iterator(digits(tfds_dir), 1, 0, 1), 3)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x['image'], y['image'])
  assert not np.array_equal(a[0]['image'], c[0]['image'])
  np.testing.assert_array_equal(a[1]['id'], np.arange(32, 64))


def test_each_epoch_is_a_new_permutation(tfds_dir):
  """1500 digits, batch 30: batches 0-49 are epoch 1, 50-99 epoch 2; both hold every record."""
  batches = take(pipeline.train_iterator(digits(tfds_dir, batch_size=30), 0, 0, 1), 100)
  epochs = [np.concatenate([b['image'] for b in batches[i:i + 50]]) for i in (0, 50)]
  source = sources.load_source(digits(tfds_dir), 'train')
  every = np.stack([source[i]['image'] for i in range(len(source))])
  key = lambda images: sorted(map(bytes, images.reshape(len(images), -1)))  # noqa: E731
  assert key(epochs[0]) == key(every) == key(epochs[1])
  assert not np.array_equal(epochs[0], epochs[1])


def test_processes_read_slices_of_the_same_global_batches(tfds_dir):
  whole = take(pipeline.train_iterator(digits(tfds_dir), 0, 0, 1), 4)
  parts = [take(pipeline.train_iterator(digits(tfds_dir), 0, p, 4), 4) for p in range(4)]
  for step in range(4):
    for key in ('image', 'id', 'label'):
      joined = np.concatenate([parts[p][step][key] for p in range(4)])
      np.testing.assert_array_equal(joined, whole[step][key])


def test_restored_position_continues_the_stream(tfds_dir):
  iterator = pipeline.train_iterator(digits(tfds_dir), 0, 0, 1)
  take(iterator, 5)
  state = iterator.get_state()
  expected = take(iterator, 3)
  fresh = pipeline.train_iterator(digits(tfds_dir), 0, 0, 1)
  fresh.set_state(state)
  for x, y in zip(take(fresh, 3), expected):
    np.testing.assert_array_equal(x['image'], y['image'])
    np.testing.assert_array_equal(x['id'], y['id'])


def test_batch_must_divide_by_processes(tfds_dir):
  with pytest.raises(pipeline.UserError, match='data.batch_size=32 must divide'):
    pipeline.train_iterator(digits(tfds_dir), 0, 0, 3)


def test_decode_crops_then_resizes():
  image = np.zeros((10, 12, 3), np.uint8)
  image[1:9, 2:10] = 200  # the centred 8x8 square
  out = pipeline.decode_image(image, image_size=4, crop_size=8)
  assert out.shape == (4, 4, 3)
  np.testing.assert_array_equal(out, 200)
  assert pipeline.decode_image(np.zeros((8, 8), np.uint8), 16, 0).shape == (16, 16, 1)
  with pytest.raises(pipeline.UserError, match='crop_size=20'):
    pipeline.decode_image(image, 4, 20)


def test_eval_batches_pad_with_mask(tfds_dir):
  batches = list(pipeline.eval_batches(digits(tfds_dir), 'test', 50, 32, 0, 1))
  assert [len(b['id']) for b in batches] == [32, 32]
  assert batches[1]['mask'].sum() == 50 - 32 and batches[0]['mask'].sum() == 32
  halves = [list(pipeline.eval_batches(digits(tfds_dir), 'test', 50, 32, p, 2)) for p in (0, 1)]
  np.testing.assert_array_equal(
      np.concatenate([halves[0][1]['mask'], halves[1][1]['mask']]), batches[1]['mask'])
  with pytest.raises(pipeline.UserError, match='holds only 297'):
    next(pipeline.eval_batches(digits(tfds_dir), 'test', 1000, 32, 0, 1))


@pytest.mark.slow
def test_worker_processes_give_the_same_stream_and_position(tfds_dir):
  threads = pipeline.train_iterator(digits(tfds_dir, num_threads=2), 0, 0, 1)
  workers = pipeline.train_iterator(digits(tfds_dir, num_workers=2), 0, 0, 1)
  for x, y in zip(take(threads, 5), take(workers, 5)):
    np.testing.assert_array_equal(x['image'], y['image'])
    np.testing.assert_array_equal(x['id'], y['id'])
  assert threads.get_state() == workers.get_state() == {'next_index': 5}
  resumed = pipeline.train_iterator(digits(tfds_dir, num_workers=2), 0, 0, 1)
  resumed.set_state(threads.get_state())  # saved with threads, resumed with workers
  np.testing.assert_array_equal(next(resumed)['id'], next(threads)['id'])
  for stream in (threads, workers, resumed):
    stream.close()


def test_stream_counts_its_wait_and_passes_errors_on(tfds_dir):
  def transform(batch):
    if batch['id'][0] >= 64:
      raise RuntimeError('transform failed on the third batch')
    return batch
  stream = pipeline.train_iterator(digits(tfds_dir), 0, 0, 1, transform=transform)
  take(stream, 2)
  assert stream.wait_seconds > 0  # the first batch is never ready in advance
  with pytest.raises(RuntimeError, match='third batch'):
    next(stream)
  with pytest.raises(pipeline.UserError, match=r"is \{'step': 3\}: expected"):
    stream.set_state({'step': 3})


@pytest.mark.parametrize('processes', [1, 3])
def test_in_memory_stream_equals_the_record_by_record_stream(tfds_dir, processes):
  """1500 digits, batch 30 (10 per process): 60 batches cross the first epoch's end."""
  for p in range(processes):
    from_files = pipeline.train_iterator(digits(tfds_dir, batch_size=30), 0, p, processes)
    in_memory = pipeline.train_iterator(digits(tfds_dir, batch_size=30, in_memory_gib=1.0), 0,
                                        p, processes)
    assert not pipeline.train_dataset(digits(tfds_dir), 0, 0, 1)[1]
    assert pipeline.train_dataset(digits(tfds_dir, in_memory_gib=1.0), 0, 0, 1)[1]
    for x, y in zip(take(from_files, 60), take(in_memory, 60)):
      assert x.keys() == y.keys()
      for key in x:
        np.testing.assert_array_equal(x[key], y[key])
        assert x[key].dtype == y[key].dtype
    in_memory.set_state({'next_index': 3})
    from_files.set_state({'next_index': 3})
    np.testing.assert_array_equal(next(in_memory)['image'], next(from_files)['image'])
    from_files.close()
    in_memory.close()


def test_a_split_larger_than_the_memory_budget_is_read_from_files(tfds_dir):
  source = sources.load_source(digits(tfds_dir), 'train')
  assert pipeline.decoded_arrays(source, 8, 0, max_bytes=1500 * 64 - 1) is None
  arrays = pipeline.decoded_arrays(source, 8, 0, max_bytes=1500 * 64)
  assert arrays['image'].shape == (1500, 8, 8, 1)
  np.testing.assert_array_equal(arrays['image'][7], source[7]['image'])
  assert arrays['label'][7] == source[7]['label']
