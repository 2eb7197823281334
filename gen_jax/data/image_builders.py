"""Offline tfds builders for image files: CelebA from its aligned-faces zip, and a folder of a
user's own images.

Decoding and resizing JPEGs is the costly part of reading these datasets, so it is done once,
when the dataset is prepared: each is stored at `data.image_size` as uint8 arrays, under a
builder config named for that size and crop (`DATA_DIR/celeb_a_files/64px_crop108/1.0.0`),
and training reads ready arrays.
"""

import contextlib
import dataclasses
import hashlib
import io
import os
import zipfile
import zlib
from collections.abc import Callable, Iterator
from concurrent import futures

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

CELEBA_ZIP, CELEBA_FOLDER = 'img_align_celeba.zip', 'img_align_celeba'
CELEBA_PARTITION, CELEBA_ATTRIBUTES = 'list_eval_partition.txt', 'list_attr_celeba.txt'
CELEBA_SPLITS = ('train', 'validation', 'test')  # partition 0, 1, 2
FOLDER_TEST_FRACTION = 0.02  # the held-out share of an image folder
IMAGE_EXTENSIONS = frozenset(Image.registered_extensions())
_PARALLEL_DECODES = 2 * (os.cpu_count() or 1)  # Pillow releases the GIL while it decodes


def center_crop_resize(image: Image.Image, crop_size: int, image_size: int) -> Image.Image:
  """Crops the centred `crop_size` square (0: the largest centred square) and resizes it to
  `image_size` x `image_size` (antialiased bilinear); raises ValueError if the crop is larger
  than the image."""
  w, h = image.size
  side = crop_size or min(w, h)
  if side > min(w, h):
    raise ValueError(f'crop_size={crop_size} is larger than the image ({h}x{w})')
  left, top = (w - side) // 2, (h - side) // 2
  image = image.crop((left, top, left + side, top + side))
  if side != image_size:
    image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
  return image


def load_image(read: bytes | str, name: str, mode: str, crop_size: int,
               image_size: int) -> np.ndarray:
  """Decodes an image file (bytes or a path) to uint8 [image_size, image_size, C], C = 3 for
  mode 'RGB' and 1 for 'L'; a file Pillow cannot read raises ValueError naming `name`."""
  try:
    with Image.open(read if isinstance(read, str) else io.BytesIO(read)) as image:
      image = center_crop_resize(image.convert(mode), crop_size, image_size)
  except (OSError, SyntaxError, Image.DecompressionBombError) as e:
    raise ValueError(f'{name} is not an image Pillow can read ({e})') from None
  except ValueError as e:
    raise ValueError(f'{name}: {e}') from None
  array = np.asarray(image, np.uint8)
  return array if array.ndim == 3 else array[:, :, None]


@dataclasses.dataclass
class SizeConfig(tfds.core.BuilderConfig):
  """How images are stored: their size, crop and channels, and (image folders) the classes.
  The config's name, a folder under the builder's, says all of it."""

  image_size: int = 64
  crop_size: int = 0
  channels: int = 3
  class_names: tuple[str, ...] = ()


def size_config(image_size: int, crop_size: int, channels: int = 3,
                folder: str | None = None) -> SizeConfig:
  """Returns the builder config for images stored at `image_size`. For an image `folder`
  the classes are listed and hashed, with the folder's path, into the name, so that two
  folders (or one whose classes changed) never share a prepared copy."""
  name = f'{image_size}px_crop{crop_size}' + ('' if channels == 3 else f'_{channels}ch')
  class_names = ()
  if folder is not None:
    class_names = tuple(list_image_folder(folder))
    key = '\n'.join((os.path.abspath(folder),) + class_names)
    name += '_' + hashlib.sha1(key.encode()).hexdigest()[:10]
  return SizeConfig(name=name, image_size=image_size, crop_size=crop_size, channels=channels,
                    class_names=class_names)


def _decode_all(items: list, decode) -> Iterator:
  """`decode` over `items` on a thread pool, in order."""
  with futures.ThreadPoolExecutor(_PARALLEL_DECODES) as pool:
    yield from pool.map(decode, items)


def read_celeba_lists(manual_dir: str) -> tuple[dict[str, int], dict[str, np.ndarray] | None]:
  """Returns {file name: partition 0/1/2} and, when list_attr_celeba.txt is present,
  {file name: int8 [40] attributes in {0, 1}} (None without it)."""
  partition = {}
  with open(os.path.join(manual_dir, CELEBA_PARTITION)) as f:
    for line_number, line in enumerate(f, 1):
      fields = line.split()
      if not fields:
        continue
      if len(fields) != 2 or fields[1] not in '012':
        raise ValueError(f'{CELEBA_PARTITION} line {line_number}: expected "NAME.jpg 0|1|2", '
                         f'found {line.strip()!r}')
      partition[fields[0]] = int(fields[1])
  attributes_path = os.path.join(manual_dir, CELEBA_ATTRIBUTES)
  if not os.path.exists(attributes_path):
    return partition, None
  with open(attributes_path) as f:
    lines = f.read().splitlines()
  names, attributes = lines[1].split(), {}
  for line in lines[2:]:
    fields = line.split()
    if len(fields) != len(names) + 1:
      raise ValueError(f'{CELEBA_ATTRIBUTES}: expected a name and {len(names)} values, '
                       f'found {line.strip()!r}')
    attributes[fields[0]] = (np.array(fields[1:], np.int8) > 0).astype(np.int8)
  return partition, attributes


@contextlib.contextmanager
def open_celeba_faces(manual_dir: str) -> Iterator[Callable[[str], bytes | str]]:
  """Opens img_align_celeba.zip (or, without it, the extracted folder) once; yields a function
  from a face's file name to its bytes (from the zip) or its path (in the folder)."""
  zip_path, folder = os.path.join(manual_dir, CELEBA_ZIP), os.path.join(manual_dir, CELEBA_FOLDER)
  if not os.path.exists(zip_path):
    if not os.path.isdir(folder):
      raise FileNotFoundError(f'neither {zip_path} nor {folder} exists; '
                              + CelebAFiles.MANUAL_DOWNLOAD_INSTRUCTIONS)
    yield lambda name: os.path.join(folder, name)
    return
  try:
    archive = zipfile.ZipFile(zip_path)
  except (zipfile.BadZipFile, OSError) as e:
    raise ValueError(f'{zip_path} is damaged or not a zip file: {e}') from None

  def read(name: str) -> bytes:
    try:
      return archive.read(f'{CELEBA_FOLDER}/{name}')
    except KeyError:
      raise ValueError(f'{zip_path} holds no {CELEBA_FOLDER}/{name}, which '
                       f'{CELEBA_PARTITION} lists') from None
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as e:
      raise ValueError(f'{zip_path}: {CELEBA_FOLDER}/{name} is damaged ({e})') from None
  with archive:
    yield read


class CelebAFiles(tfds.core.GeneratorBasedBuilder):
  """CelebA's aligned faces (Liu et al. 2015) from img_align_celeba.zip (or the extracted
  img_align_celeba/) and list_eval_partition.txt, center-cropped and resized at preparation.
  Splits as published: train 162,770, validation 19,867, test 19,962. With
  list_attr_celeba.txt beside them, each face carries its 40 binary 'attributes'."""

  VERSION = tfds.core.Version('1.0.0')
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f'Put {CELEBA_ZIP} (or the extracted {CELEBA_FOLDER}/) and {CELEBA_PARTITION} '
      f'(optionally {CELEBA_ATTRIBUTES}) from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html '
      'in a folder and pass it as --config.data.manual_dir.')

  def _info(self) -> tfds.core.DatasetInfo:
    size = self.builder_config.image_size
    return self.dataset_info_from_configs(features=tfds.features.FeaturesDict({
        'image': tfds.features.Tensor(shape=(size, size, 3), dtype=np.uint8),
        'attributes': tfds.features.Tensor(shape=(40,), dtype=np.int8),
        'has_attributes': tfds.features.Tensor(shape=(), dtype=np.bool_),
    }))

  def _split_generators(self, dl_manager):
    manual_dir = os.fspath(dl_manager.manual_dir)
    if not os.path.exists(os.path.join(manual_dir, CELEBA_PARTITION)):
      raise FileNotFoundError(f'{os.path.join(manual_dir, CELEBA_PARTITION)} not found; '
                              + self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    partition, attributes = read_celeba_lists(manual_dir)
    return {split: self._generate_examples(manual_dir, sorted(
        n for n, p in partition.items() if p == index), attributes)
        for index, split in enumerate(CELEBA_SPLITS)}

  def _generate_examples(self, manual_dir: str, names: list[str],
                         attributes: dict[str, np.ndarray] | None):
    config = self.builder_config
    with open_celeba_faces(manual_dir) as read:
      def decode(name):
        return load_image(read(name), f'{CELEBA_FOLDER}/{name}', 'RGB', config.crop_size,
                          config.image_size)
      for name, image in zip(names, _decode_all(names, decode)):
        found = attributes is not None
        yield name, {'image': image, 'has_attributes': found,
                     'attributes': attributes[name] if found else np.zeros(40, np.int8)}


def _is_image(name: str) -> bool:
  return not name.startswith('.') and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def list_image_folder(folder: str) -> dict[str, list[str]]:
  """Returns {class name: sorted image paths relative to `folder`}: one class per top-level
  sub-folder (images found at any depth below it), or {'': [...]} for a flat folder of images
  without classes. Raises ValueError for a folder mixing both, or without images."""
  top = sorted(os.listdir(folder))
  loose = [n for n in top if _is_image(n) and os.path.isfile(os.path.join(folder, n))]
  classes = {}
  for name in top:
    if name.startswith('.') or not os.path.isdir(os.path.join(folder, name)):
      continue
    found = sorted(os.path.relpath(os.path.join(root, f), folder)
                   for root, _, files in os.walk(os.path.join(folder, name)) for f in files
                   if _is_image(f))
    if found:
      classes[name] = found
  if classes and loose:
    raise ValueError(f'{folder} holds both class folders ({", ".join(list(classes)[:3])}, ...) '
                     f'and loose images ({loose[0]}, ...): expected one or the other')
  if not classes and not loose:
    raise ValueError(f'{folder} holds no images (expected files ending in '
                     f'{", ".join(sorted(IMAGE_EXTENSIONS)[:6])}, ...)')
  return classes or {'': loose}


def held_out(paths: list[str], fraction: float) -> set[str]:
  """The deterministic held-out share of `paths`: those whose SHA-1 comes first, at least one
  when there are two or more; the same files whatever the order they are listed in."""
  count = max(int(round(len(paths) * fraction)), 1 if len(paths) > 1 else 0)
  return set(sorted(paths, key=lambda p: hashlib.sha1(p.encode()).hexdigest())[:count])


class ImageFolder(tfds.core.GeneratorBasedBuilder):
  """A folder of a user's images (any format Pillow reads), center-cropped and resized at
  preparation. Top-level sub-folders are classes (labels in sorted order); a flat folder
  gives unlabelled images. 2% of the images, chosen by a hash of their paths, form 'test'."""

  VERSION = tfds.core.Version('1.0.0')
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Pass the folder of images as --config.data.manual_dir (one sub-folder per class, '
      'or images only).')

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    features = {'image': tfds.features.Tensor(
        shape=(config.image_size, config.image_size, config.channels), dtype=np.uint8)}
    if config.class_names != ('',):
      features['label'] = tfds.features.ClassLabel(names=config.class_names)
    return self.dataset_info_from_configs(features=tfds.features.FeaturesDict(features))

  def _split_generators(self, dl_manager):
    folder = os.fspath(dl_manager.manual_dir)
    files = [(path, label) for label, paths in enumerate(list_image_folder(folder).values())
             for path in paths]
    test = held_out([path for path, _ in files], FOLDER_TEST_FRACTION)
    return {'train': self._generate_examples(folder, [f for f in files if f[0] not in test]),
            'test': self._generate_examples(folder, [f for f in files if f[0] in test])}

  def _generate_examples(self, folder: str, files: list[tuple[str, int]]):
    config = self.builder_config
    mode = 'RGB' if config.channels == 3 else 'L'

    def decode(path):
      return load_image(os.path.join(folder, path), path, mode, config.crop_size,
                        config.image_size)
    labelled = config.class_names != ('',)
    for (path, label), image in zip(files, _decode_all([p for p, _ in files], decode)):
      yield path, {'image': image, **({'label': label} if labelled else {})}
