"""The offline tfds builders: idx parsing, split sizes, label counts, pixel content."""

import gzip
import os
import struct

import numpy as np
import pytest
import tensorflow_datasets as tfds
from ml_collections import ConfigDict

from gen_jax.data import builders, pipeline, sources

MNIST_TRAIN_LABEL_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def data_config(name, tfds_dir, manual_dir=None):
  return ConfigDict({'name': name, 'data_dir': tfds_dir, 'manual_dir': manual_dir})


def all_records(source):
  return [source[i] for i in range(len(source))]


def test_read_idx_round_trip_and_errors(tmp_path):
  array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
  path = tmp_path / 'a-idx3-ubyte.gz'
  with gzip.open(path, 'wb') as f:
    f.write(struct.pack('>HBB3I', 0, 8, 3, 2, 3, 4) + array.tobytes())
  np.testing.assert_array_equal(builders.read_idx(str(path)), array)
  with gzip.open(path, 'wb') as f:
    f.write(struct.pack('>HBB3I', 0, 8, 3, 2, 3, 4) + array.tobytes()[:-1])
  with pytest.raises(ValueError, match='truncated'):
    builders.read_idx(str(path))


def test_digits_builder_matches_sklearn(tfds_dir):
  from sklearn.datasets import load_digits
  train = all_records(sources.load_source(data_config('digits', tfds_dir), 'train'))
  test = all_records(sources.load_source(data_config('digits', tfds_dir), 'test'))
  assert (len(train), len(test)) == (1500, 297)
  assert train[0]['image'].shape == (8, 8, 1) and train[0]['image'].dtype == np.uint8
  digits = load_digits()
  expected_sum = np.round(digits.images * 255 / 16).sum()
  assert sum(int(r['image'].sum()) for r in train + test) == expected_sum
  labels = np.bincount([r['label'] for r in train + test], minlength=10)
  np.testing.assert_array_equal(labels, np.bincount(digits.target, minlength=10))


@pytest.mark.slow
def test_mnist_idx_builder(tfds_dir, mnist_dir):
  for split, counts, raw in [('train', MNIST_TRAIN_LABEL_COUNTS, 'train-images-idx3-ubyte.gz'),
                             ('test', MNIST_TEST_LABEL_COUNTS, 't10k-images-idx3-ubyte.gz')]:
    source = sources.load_source(data_config('mnist_idx', tfds_dir, mnist_dir), split)
    labels = np.array([r['label'] for r in source.__getitems__(range(len(source)))])
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), counts)
    images = builders.read_idx(os.path.join(mnist_dir, raw))
    record = source[0]
    matches = np.all(images == record['image'][:, :, 0], axis=(1, 2))
    assert matches.any(), 'the first record is not one of the idx images'


def test_mnist_without_manual_dir_is_a_clear_error(tmp_path):
  config = data_config('mnist_idx', str(tmp_path))
  with pytest.raises(sources.UserError, match='needs data.manual_dir'):
    sources.load_source(config, 'train')
  config.manual_dir = str(tmp_path / 'nowhere')
  with pytest.raises(sources.UserError, match='is not a directory'):
    sources.load_source(config, 'train')
  (tmp_path / 'empty').mkdir()
  config.manual_dir = str(tmp_path / 'empty')
  with pytest.raises(sources.UserError, match='does not exist or is empty'):
    sources.load_source(config, 'train')
  (tmp_path / 'empty' / 'README').write_text('not an idx file')
  with pytest.raises(sources.UserError, match='train-images-idx3-ubyte.gz not found'):
    sources.load_source(config, 'train')


def test_unknown_dataset_is_a_clear_error(tmp_path):
  with pytest.raises(sources.UserError, match="unknown dataset data.name='mnistt'"):
    sources.load_source(data_config('mnistt', str(tmp_path)), 'train')


def test_tfds_catalog_builder_reads_through_the_same_path(tmp_path, monkeypatch):
  """tfds's own `mnist` builder (mock records: no download) goes through load_source + grain."""
  monkeypatch.setattr(sources, 'has_tensorflow', lambda: True)  # the mock needs neither
  monkeypatch.setattr(sources, 'network_reachable', lambda: True)
  config = ConfigDict({'name': 'mnist', 'data_dir': str(tmp_path), 'manual_dir': None,
                       'image_size': 28, 'crop_size': 0, 'batch_size': 8, 'num_threads': 0})
  with tfds.testing.mock_data(num_examples=20, policy=tfds.testing.MockPolicy.USE_CODE):
    batch = next(pipeline.train_iterator(config, seed=0, process_index=0, process_count=1))
  assert batch['image'].shape == (8, 28, 28, 1) and batch['image'].dtype == np.uint8
