"""Offline tfds builders: scikit-learn's 8x8 digits and MNIST from its four idx files.

Both are ordinary `tfds.core.GeneratorBasedBuilder`s, so they are prepared once into
`data_dir` as array_record files and read through `tfds.data_source` exactly like
`mnist` or `cifar10` on a cluster. Images are `Tensor(uint8)` features rather than
`tfds.features.Image`, because encoding an `Image` feature needs TensorFlow.
"""

import gzip
import os
import struct

import numpy as np
import tensorflow_datasets as tfds

MNIST_FILES = {
    'train': ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
    'test': ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'),
}
DIGITS_NUM_TEST = 297  # the last 297 of sklearn's 1797 digits; the first 1500 train


def _image_features(height: int, width: int) -> tfds.features.FeaturesDict:
  return tfds.features.FeaturesDict({
      'image': tfds.features.Tensor(shape=(height, width, 1), dtype=np.uint8),
      'label': tfds.features.ClassLabel(num_classes=10),
  })


class Digits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn's 1,797 8x8 handwritten digits (16 grey levels, scaled to 0..255)."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=_image_features(8, 8), supervised_keys=('image', 'label'))

  def _split_generators(self, dl_manager):
    del dl_manager  # the data ships inside scikit-learn
    return {'train': self._generate_examples(slice(None, -DIGITS_NUM_TEST)),
            'test': self._generate_examples(slice(-DIGITS_NUM_TEST, None))}

  def _generate_examples(self, part: slice):
    from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
    digits = load_digits()
    images = np.round(digits.images[part] * (255.0 / 16.0)).astype(np.uint8)
    labels = digits.target[part]
    for i, (image, label) in enumerate(zip(images, labels)):
      yield i, {'image': image[:, :, None], 'label': int(label)}


def read_idx(path: str) -> np.ndarray:
  """Reads a (gzipped) idx file; returns a uint8 array of the shape its header gives."""
  opener = gzip.open if path.endswith('.gz') else open
  with opener(path, 'rb') as f:
    data = f.read()
  zero, dtype_code, ndim = struct.unpack('>HBB', data[:4])
  if zero != 0 or dtype_code != 0x08:
    raise ValueError(f'{path} is not an idx file of unsigned bytes (header {data[:4]!r})')
  shape = struct.unpack(f'>{ndim}I', data[4:4 + 4 * ndim])
  array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
  if array.size != int(np.prod(shape)):
    raise ValueError(f'{path} is truncated: header says {shape}, found {array.size} bytes')
  return array.reshape(shape)


class MnistIdx(tfds.core.GeneratorBasedBuilder):
  """MNIST from the four original idx files (gzipped) in the manual dir."""

  VERSION = tfds.core.Version('1.0.0')
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Put the four MNIST idx files (' + ', '.join(sum(MNIST_FILES.values(), ())) +
      ') in a folder and pass it as --config.data.manual_dir.')

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=_image_features(28, 28), supervised_keys=('image', 'label'))

  def _split_generators(self, dl_manager):
    manual_dir = os.fspath(dl_manager.manual_dir)
    paths = {split: [os.path.join(manual_dir, name) for name in names]
             for split, names in MNIST_FILES.items()}
    for path in sum(paths.values(), []):
      if not os.path.exists(path):
        raise FileNotFoundError(f'MNIST idx file {path} not found; '
                                + self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    return {split: self._generate_examples(*p) for split, p in paths.items()}

  def _generate_examples(self, images_path: str, labels_path: str):
    images, labels = read_idx(images_path), read_idx(labels_path)
    if len(images) != len(labels):
      raise ValueError(f'{images_path} holds {len(images)} images but '
                       f'{labels_path} {len(labels)} labels')
    for i, (image, label) in enumerate(zip(images, labels)):
      yield i, {'image': image[:, :, None], 'label': int(label)}
