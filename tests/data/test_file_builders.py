"""The builders that prepare CIFAR, CelebA and image folders from their files, offline.

Each dataset is written small, in its publisher's exact format (tests/data/real_formats.py),
prepared through the same load_source path a run uses, and read back record by record.
"""

import os
import pickle
import tarfile

import numpy as np
import pytest
from ml_collections import ConfigDict

from gen_jax.data import builders, image_builders, pipeline, sources
from tests.data import real_formats


def data_config(name, tfds_dir, manual_dir, image_size=32, crop_size=0, channels=3):
  return ConfigDict({'name': name, 'data_dir': str(tfds_dir), 'manual_dir': str(manual_dir),
                     'image_size': image_size, 'crop_size': crop_size, 'channels': channels,
                     'batch_size': 4, 'num_threads': 0})


def records(config, split):
  source = sources.load_source(config, split)
  return [source[i] for i in range(len(source))]


def expected_cifar_images(batch):
  """The official layout, decoded independently: plane-major RGB rows -> [n, 32, 32, 3]."""
  data = batch[b'data']
  return np.stack([np.dstack([row[c * 1024:(c + 1) * 1024].reshape(32, 32) for c in range(3)])
                   for row in data])


def by_content(images):
  return {image.tobytes(): i for i, image in enumerate(images)}


def test_cifar10_from_the_python_tarball(tmp_path):
  (tmp_path / 'manual').mkdir()
  batches = real_formats.write_cifar10(str(tmp_path / 'manual'))
  config = data_config('cifar10', tmp_path / 'tfds', tmp_path / 'manual')
  for split in ('train', 'test'):
    got = records(config, split)
    images = np.concatenate([expected_cifar_images(b) for b in batches[split]])
    labels = sum((b[b'labels'] for b in batches[split]), [])
    assert len(got) == len(images)
    index = by_content(images)
    for record in got:  # tfds stores records in its own order: match them by content
      assert record['image'].dtype == np.uint8 and record['image'].shape == (32, 32, 3)
      assert record['label'] == labels[index[record['image'].tobytes()]]
    assert sorted(index[r['image'].tobytes()] for r in got) == list(range(len(images)))
  assert os.path.isdir(tmp_path / 'tfds' / 'cifar10_files' / '1.0.0')


def test_cifar10_from_the_extracted_folder_matches_the_tarball(tmp_path):
  (tmp_path / 'manual').mkdir()
  real_formats.write_cifar10(str(tmp_path / 'manual'))
  with tarfile.open(tmp_path / 'manual' / 'cifar-10-python.tar.gz') as tar:
    tar.extractall(tmp_path / 'extracted', filter='data')
  from_tar = records(data_config('cifar10', tmp_path / 'a', tmp_path / 'manual'), 'test')
  from_dir = records(data_config('cifar10', tmp_path / 'b', tmp_path / 'extracted'), 'test')
  assert sorted(r['image'].tobytes() for r in from_tar) == sorted(
      r['image'].tobytes() for r in from_dir)


def test_cifar100_fine_and_coarse_labels(tmp_path):
  (tmp_path / 'manual').mkdir()
  batches = real_formats.write_cifar100(str(tmp_path / 'manual'))
  got = records(data_config('cifar100', tmp_path / 'tfds', tmp_path / 'manual'), 'train')
  batch = batches['train']
  index = by_content(expected_cifar_images(batch))
  assert len(got) == len(index) == 9
  for record in got:
    i = index[record['image'].tobytes()]
    assert (record['label'], record['coarse_label']) == (
        batch[b'fine_labels'][i], batch[b'coarse_labels'][i])
  assert len(records(data_config('cifar100', tmp_path / 'tfds', tmp_path / 'manual'),
                     'test')) == 4


def test_cifar_archives_that_are_damaged_or_hostile_are_refused_in_one_line(tmp_path):
  manual = tmp_path / 'manual'
  manual.mkdir()
  real_formats.write_cifar10(str(manual))
  archive = manual / 'cifar-10-python.tar.gz'
  archive.write_bytes(archive.read_bytes()[:300])
  with pytest.raises(sources.UserError, match='cifar-10-python.tar.gz is damaged'):
    sources.load_source(data_config('cifar10', tmp_path / 'tfds', manual), 'train')
  assert not [p for p in (tmp_path / 'tfds').rglob('*') if 'incomplete' in p.name]

  class Hostile:  # unpickling it would run os.system
    def __reduce__(self):
      return (os.system, ('touch hacked',))
  with pytest.raises(ValueError, match='not a CIFAR python batch.*posix.system'):
    builders.read_cifar_batch(pickle.dumps({b'data': Hostile()}), 'data_batch_1')


def test_celeba_zip_is_cropped_resized_and_split_as_listed(tmp_path):
  manual = tmp_path / 'manual'
  manual.mkdir()
  faces = real_formats.write_celeba(str(manual), partition=[0, 0, 0, 1, 2, 0, 2])
  config = data_config('celeb_a', tmp_path / 'tfds', manual, image_size=16, crop_size=108)
  for split, p in (('train', 0), ('validation', 1), ('test', 2)):
    got = records(config, split)
    wanted = {n: f for n, f in faces.items() if f['partition'] == p}
    assert len(got) == len(wanted)
    for record in got:
      assert record['image'].shape == (16, 16, 3)
      # the 108 crop is exactly the face's inner square: every pixel has its colour
      colour = record['image'].reshape(-1, 3).mean(0)
      match = [n for n, f in wanted.items() if np.abs(colour - f['inner']).max() < 3]
      assert len(match) == 1, (colour, wanted)
      assert record['has_attributes']
      np.testing.assert_array_equal(record['attributes'], wanted[match[0]]['attributes'])
      # JPEG's chroma blur reaches a few pixels across the square's edge; a crop off by
      # even one output pixel would bring in the black border (an error above 100)
      assert np.abs(record['image'].astype(int) - wanted[match[0]]['inner']).max() < 30
  assert os.path.isdir(tmp_path / 'tfds' / 'celeb_a_files' / '16px_crop108' / '1.0.0')


def test_celeba_folder_without_attributes_and_its_errors(tmp_path):
  manual = tmp_path / 'manual'
  manual.mkdir()
  real_formats.write_celeba(str(manual), partition=[0, 1, 2], attributes=False, as_zip=False)
  config = data_config('celeb_a', tmp_path / 'tfds', manual, image_size=8, crop_size=108)
  (record,) = records(config, 'validation')
  assert not record['has_attributes'] and record['image'].shape == (8, 8, 3)
  (manual / 'list_eval_partition.txt').write_text('000001.jpg 0\n000009.jpg 0\n')
  with pytest.raises(sources.UserError, match='000009.jpg'):
    sources.load_source(data_config('celeb_a', tmp_path / 'tfds2', manual, 8, 108), 'train')
  os.remove(manual / 'list_eval_partition.txt')
  with pytest.raises(sources.UserError, match='list_eval_partition.txt not found'):
    sources.load_source(data_config('celeb_a', tmp_path / 'tfds3', manual, 8, 108), 'train')
  for leftover in (tmp_path / 'tfds2').rglob('*'):
    assert 'incomplete' not in leftover.name and '.tmp.' not in leftover.name, leftover


def test_image_folder_classes_split_and_center_crop(tmp_path):
  folder = tmp_path / 'pets'
  written = real_formats.write_image_folder(str(folder), {'dog': 30, 'cat': 25})
  (folder / '.DS_Store').write_bytes(b'\0\1')
  (folder / 'cat' / 'notes.txt').write_text('not an image')
  config = data_config('image_folder', tmp_path / 'tfds', folder, image_size=12)
  train, test = records(config, 'train'), records(config, 'test')
  assert len(train) + len(test) == 55 and len(test) == round(55 * 0.02)
  assert set(image_builders.held_out(list(written), 0.02)) == set(
      image_builders.held_out(sorted(written, reverse=True), 0.02))
  names = ['cat', 'dog']  # sorted class folders
  colours = {tuple(w['colour']): names.index(w['class']) for w in written.values()}
  for record in train + test:
    assert record['image'].shape == (12, 12, 3)
    colour = record['image'].reshape(-1, 3).mean(0)
    label = [c for col, c in colours.items() if np.abs(colour - col).max() < 4]
    assert label == [record['label']]


def test_flat_image_folder_is_unlabelled_and_greyscale_on_request(tmp_path):
  folder = tmp_path / 'flat'
  real_formats.write_image_folder(str(folder), {'': 5})
  config = data_config('image_folder', tmp_path / 'tfds', folder, image_size=6, channels=1)
  got = records(config, 'train') + records(config, 'test')
  assert len(got) == 5 and all(r['image'].shape == (6, 6, 1) for r in got)
  assert 'label' not in got[0]
  batch = next(pipeline.train_iterator(config, 0, 0, 1))
  np.testing.assert_array_equal(batch['label'], -1)


def test_image_folder_errors_are_one_line(tmp_path):
  folder = tmp_path / 'mixed'
  real_formats.write_image_folder(str(folder), {'a': 2, '': 2})
  with pytest.raises(sources.UserError, match='both class folders'):
    sources.load_source(data_config('image_folder', tmp_path / 'tfds', folder), 'train')
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(sources.UserError, match='holds no images'):
    sources.load_source(data_config('image_folder', tmp_path / 'tfds', empty), 'train')
  broken = tmp_path / 'broken'
  real_formats.write_image_folder(str(broken), {'a': 3})
  (broken / 'a' / 'img_1.jpg').write_bytes(b'JFIF but not really')
  with pytest.raises(sources.UserError, match=r'a/img_1.jpg is not an image Pillow can read'):
    sources.load_source(data_config('image_folder', tmp_path / 'tfds', broken), 'train')
  with pytest.raises(sources.UserError, match='needs data.manual_dir'):
    sources.load_source(ConfigDict({'name': 'image_folder', 'data_dir': str(tmp_path),
                                     'manual_dir': None}), 'train')


def test_two_folders_or_sizes_never_share_a_prepared_copy(tmp_path):
  for name in ('a', 'b'):
    real_formats.write_image_folder(str(tmp_path / name), {'x': 2, 'y': 2})
  configs = [image_builders.size_config(8, 0, 3, str(tmp_path / 'a')),
             image_builders.size_config(8, 0, 3, str(tmp_path / 'b')),
             image_builders.size_config(16, 0, 3, str(tmp_path / 'a'))]
  assert len({c.name for c in configs}) == 3
  assert configs[0].class_names == ('x', 'y')
