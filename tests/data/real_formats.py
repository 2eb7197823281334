"""Small datasets written in exactly the formats their publishers ship, for the builders' tests.

Each writer returns what it wrote, so a test can compare the prepared records with it.
"""

import io
import os
import pickle
import tarfile
import zipfile

import numpy as np
from PIL import Image

CELEBA_ATTRIBUTE_NAMES = [f'Attribute_{i}' for i in range(40)]


def cifar_batch(rng: np.random.Generator, n: int, label_keys: dict[str, int]) -> dict:
  """A CIFAR batch dict as the official pickles hold it: bytes keys, 'data' uint8 [n, 3072]
  (the red plane, then green, then blue, each row-major 32x32), labels as lists."""
  batch = {b'batch_label': b'testing batch 1 of 1',
           b'data': rng.integers(0, 256, (n, 3072), dtype=np.uint8),
           b'filenames': [f'img_{i}.png'.encode() for i in range(n)]}
  for key, classes in label_keys.items():
    batch[key.encode()] = [int(x) for x in rng.integers(0, classes, n)]
  return batch


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
  info = tarfile.TarInfo(name)
  info.size = len(data)
  tar.addfile(info, io.BytesIO(data))


def write_cifar10(folder: str, per_batch: int = 6, seed: int = 0) -> dict[str, list[dict]]:
  """Writes folder/cifar-10-python.tar.gz (cifar-10-batches-py/data_batch_1..5, test_batch,
  batches.meta); returns {'train': [5 batches], 'test': [1 batch]}."""
  rng = np.random.default_rng(seed)
  batches = {'train': [cifar_batch(rng, per_batch, {'labels': 10}) for _ in range(5)],
             'test': [cifar_batch(rng, per_batch, {'labels': 10})]}
  names = [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']
  meta = {b'label_names': [b'airplane', b'automobile', b'bird', b'cat', b'deer', b'dog',
                           b'frog', b'horse', b'ship', b'truck'], b'num_vis': 3072}
  with tarfile.open(os.path.join(folder, 'cifar-10-python.tar.gz'), 'w:gz') as tar:
    for name, batch in zip(names, batches['train'] + batches['test']):
      _add(tar, f'cifar-10-batches-py/{name}', pickle.dumps(batch, protocol=2))
    _add(tar, 'cifar-10-batches-py/batches.meta', pickle.dumps(meta, protocol=2))
  return batches


def write_cifar100(folder: str, n: int = 9, seed: int = 0) -> dict[str, dict]:
  """Writes folder/cifar-100-python.tar.gz (cifar-100-python/train, test, meta)."""
  rng = np.random.default_rng(seed)
  keys = {'fine_labels': 100, 'coarse_labels': 20}
  batches = {'train': cifar_batch(rng, n, keys), 'test': cifar_batch(rng, n // 2, keys)}
  with tarfile.open(os.path.join(folder, 'cifar-100-python.tar.gz'), 'w:gz') as tar:
    for split, batch in batches.items():
      _add(tar, f'cifar-100-python/{split}', pickle.dumps(batch, protocol=2))
    _add(tar, 'cifar-100-python/meta', pickle.dumps({b'fine_label_names': []}, protocol=2))
  return batches


def celeba_face(inner: tuple[int, int, int], outer: tuple[int, int, int]) -> Image.Image:
  """A 178x218 'aligned face' whose centred 108x108 square is `inner`, the rest `outer`."""
  array = np.empty((218, 178, 3), np.uint8)
  array[:] = outer
  array[55:163, 35:143] = inner
  return Image.fromarray(array)


def write_celeba(folder: str, partition: list[int], attributes: bool = True,
                 as_zip: bool = True, seed: int = 0) -> dict[str, dict]:
  """Writes CelebA's img_align_celeba.zip (img_align_celeba/000001.jpg, ...) or the extracted
  folder, list_eval_partition.txt and (optionally) list_attr_celeba.txt, one face per entry
  of `partition` (0 train, 1 validation, 2 test). Returns {file name: {'inner': colour,
  'partition': p, 'attributes': int [40] in {0, 1}}}."""
  rng = np.random.default_rng(seed)
  faces = {}
  for i, p in enumerate(partition):
    faces[f'{i + 1:06d}.jpg'] = {'inner': tuple(int(c) for c in rng.integers(40, 216, 3)),
                                 'partition': p,
                                 'attributes': rng.integers(0, 2, 40)}
  archive = zipfile.ZipFile(os.path.join(folder, 'img_align_celeba.zip'), 'w') if as_zip else None
  for name, face in faces.items():
    jpeg = io.BytesIO()
    celeba_face(face['inner'], (0, 0, 0)).save(jpeg, format='JPEG', quality=95)
    if archive is not None:
      archive.writestr(f'img_align_celeba/{name}', jpeg.getvalue())
    else:
      os.makedirs(os.path.join(folder, 'img_align_celeba'), exist_ok=True)
      with open(os.path.join(folder, 'img_align_celeba', name), 'wb') as f:
        f.write(jpeg.getvalue())
  if archive is not None:
    archive.close()
  with open(os.path.join(folder, 'list_eval_partition.txt'), 'w') as f:
    f.writelines(f'{name} {face["partition"]}\n' for name, face in faces.items())
  if attributes:
    with open(os.path.join(folder, 'list_attr_celeba.txt'), 'w') as f:
      f.write(f'{len(faces)}\n' + ' '.join(CELEBA_ATTRIBUTE_NAMES) + ' \n')
      for name, face in faces.items():
        values = '  '.join('1' if a else '-1' for a in face['attributes'])
        f.write(f'{name} {values}\n')
  return faces


def write_image_folder(folder: str, classes: dict[str, int], seed: int = 0) -> dict[str, dict]:
  """Writes `classes[c]` images under folder/c/ ('' for the folder itself) in PNG, JPEG and
  BMP, of assorted non-square sizes, some in a nested sub-folder; each image is one flat
  colour. Returns {path relative to folder: {'class': c, 'colour': (r, g, b)}}."""
  rng = np.random.default_rng(seed)
  written = {}
  formats = [('png', 'PNG'), ('jpg', 'JPEG'), ('bmp', 'BMP')]
  for c, count in classes.items():
    for i in range(count):
      ext, fmt = formats[i % len(formats)]
      relative = os.path.join(c, 'nested' if c and i % 4 == 3 else '', f'img_{i}.{ext}')
      relative = os.path.normpath(relative)
      colour = tuple(int(x) for x in rng.integers(20, 236, 3))
      size = (int(rng.integers(20, 40)), int(rng.integers(20, 40)))
      os.makedirs(os.path.dirname(os.path.join(folder, relative)), exist_ok=True)
      Image.new('RGB', size, colour).save(os.path.join(folder, relative), format=fmt)
      written[relative] = {'class': c, 'colour': colour}
  return written
