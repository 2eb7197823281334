"""Offline tfds builders for arrays: scikit-learn's 8x8 digits, MNIST from its four idx files,
CIFAR-10 and CIFAR-100 from their official python tarballs.

They are ordinary `tfds.core.GeneratorBasedBuilder`s, so they are prepared once into
`data_dir` as array_record files and read through grain like any tfds dataset. Images are
`Tensor(uint8)` features rather than `tfds.features.Image`, because encoding an `Image`
feature needs TensorFlow.
"""

import gzip
import io
import os
import pickle
import struct
import tarfile

import numpy as np
import tensorflow_datasets as tfds

MNIST_FILES = {
    'train': ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
    'test': ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'),
}
DIGITS_NUM_TEST = 297  # the last 297 of sklearn's 1797 digits; the first 1500 train


def _image_features(height: int, width: int, channels: int = 1, num_classes: int = 10,
                    **more: tfds.features.FeatureConnector) -> tfds.features.FeaturesDict:
  return tfds.features.FeaturesDict({
      'image': tfds.features.Tensor(shape=(height, width, channels), dtype=np.uint8),
      'label': tfds.features.ClassLabel(num_classes=num_classes),
      **more,
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
  try:
    with opener(path, 'rb') as f:
      data = f.read()
  except (EOFError, gzip.BadGzipFile) as e:  # a truncated or foreign .gz
    raise ValueError(f'{path}: {type(e).__name__}: {e}') from None
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


class _BatchUnpickler(pickle.Unpickler):
  """Unpickles the CIFAR batches' dicts of lists and numpy arrays, and nothing else."""

  ALLOWED = {('numpy._core.multiarray', '_reconstruct'), ('numpy.core.multiarray', '_reconstruct'),
             ('numpy', 'ndarray'), ('numpy', 'dtype'),
             ('_codecs', 'encode')}  # how protocol-2 pickles written by Python 3 hold bytes

  def find_class(self, module: str, name: str):
    if (module, name) not in self.ALLOWED:
      raise pickle.UnpicklingError(f'unexpected object {module}.{name}')
    return super().find_class(module, name)


def read_cifar_batch(data: bytes, name: str) -> dict[str, np.ndarray]:
  """Parses one pickled CIFAR batch; returns 'image' uint8 [N, 32, 32, 3] and every
  '*labels' key as int64 [N] (CIFAR-10: 'labels'; CIFAR-100: 'fine_labels', 'coarse_labels')."""
  try:
    batch = _BatchUnpickler(io.BytesIO(data), encoding='bytes').load()
    images = np.asarray(batch[b'data'], np.uint8)
    out = {'image': images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)}
    for key in batch:
      if key.endswith(b'labels'):
        out[key.decode()] = np.asarray(batch[key], np.int64)
  except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError) as e:
    raise ValueError(f'{name} is not a CIFAR python batch ({type(e).__name__}: {e})') from None
  if any(len(v) != len(images) for v in out.values()):
    raise ValueError(f'{name}: the labels and images differ in number')
  return out


def read_cifar_members(manual_dir: str, archive: str, folder: str,
                       members: list[str]) -> dict[str, bytes]:
  """Returns the bytes of `folder/MEMBER` for each member, read from the tarball `archive`
  in `manual_dir` or, when absent, from the extracted `folder` beside it."""
  archive_path, folder_path = os.path.join(manual_dir, archive), os.path.join(manual_dir, folder)
  if os.path.exists(archive_path):
    try:
      with tarfile.open(archive_path) as tar:
        return {m: tar.extractfile(f'{folder}/{m}').read() for m in members}
    except (tarfile.TarError, KeyError, EOFError, OSError) as e:
      raise ValueError(f'{archive_path} is damaged or not the official archive: {e}') from None
  if not os.path.isdir(folder_path):
    raise FileNotFoundError(f'neither {archive_path} nor {folder_path} exists')
  out = {}
  for m in members:
    with open(os.path.join(folder_path, m), 'rb') as f:
      out[m] = f.read()
  return out


class _Cifar(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """CIFAR from the official python tarball in the manual dir, splits as published."""

  VERSION = tfds.core.Version('1.0.0')
  ARCHIVE, FOLDER, SPLITS, NUM_CLASSES, LABEL_KEY = '', '', {}, 0, ''
  COARSE_CLASSES = 0  # CIFAR-100's 20 superclasses, when the batches carry them

  def _info(self) -> tfds.core.DatasetInfo:
    more = ({'coarse_label': tfds.features.ClassLabel(num_classes=self.COARSE_CLASSES)}
            if self.COARSE_CLASSES else {})
    return self.dataset_info_from_configs(
        features=_image_features(32, 32, 3, self.NUM_CLASSES, **more),
        supervised_keys=('image', 'label'))

  def _split_generators(self, dl_manager):
    members = sum(self.SPLITS.values(), [])
    files = read_cifar_members(os.fspath(dl_manager.manual_dir), self.ARCHIVE, self.FOLDER,
                               members)
    return {split: self._generate_examples([(m, files[m]) for m in names])
            for split, names in self.SPLITS.items()}

  def _generate_examples(self, files: list[tuple[str, bytes]]):
    for name, data in files:
      batch = read_cifar_batch(data, f'{self.ARCHIVE}:{name}')
      for i, image in enumerate(batch['image']):
        example = {'image': image, 'label': int(batch[self.LABEL_KEY][i])}
        if self.COARSE_CLASSES:
          example['coarse_label'] = int(batch['coarse_labels'][i])
        yield f'{name}_{i:05d}', example


class Cifar10Files(_Cifar):
  """CIFAR-10 (Krizhevsky 2009) from cifar-10-python.tar.gz: 50,000 train, 10,000 test."""

  ARCHIVE, FOLDER = 'cifar-10-python.tar.gz', 'cifar-10-batches-py'
  NUM_CLASSES, LABEL_KEY = 10, 'labels'
  SPLITS = {'train': [f'data_batch_{i}' for i in range(1, 6)], 'test': ['test_batch']}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Put cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html) or its '
      'extracted cifar-10-batches-py/ in a folder and pass it as --config.data.manual_dir.')


class Cifar100Files(_Cifar):
  """CIFAR-100 from cifar-100-python.tar.gz: 100 fine classes ('label'), 20 coarse."""

  ARCHIVE, FOLDER = 'cifar-100-python.tar.gz', 'cifar-100-python'
  NUM_CLASSES, LABEL_KEY = 100, 'fine_labels'
  COARSE_CLASSES = 20
  SPLITS = {'train': ['train'], 'test': ['test']}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Put cifar-100-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html) or its '
      'extracted cifar-100-python/ in a folder and pass it as --config.data.manual_dir.')
