"""--mode=edit: inpainting and SDEdit of a split's images or a folder's, with before/after
grids; the known pixels come back exactly as given."""

import os

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, run_cli
from tests.test_cli import assert_one_line_error


def ddpm_args(workdir, tfds_dir, *overrides):
  """A tiny ddpm_digits run (8x8) sampled and edited over 6 DDIM levels."""
  return ['--config=configs/ddpm_digits.py', f'--workdir={workdir}',
          f'--config.data.data_dir={tfds_dir}', '--config.data.batch_size=32',
          '--config.sample.every_steps=0', '--config.sample.steps=6',
          '--config.eval.batch_size=4', '--config.edit.jump=2', *overrides]


@pytest.fixture(scope='module')
def ddpm_run(tmp_path_factory, tfds_dir):
  workdir = str(tmp_path_factory.mktemp('ddpm'))
  run_cli(*ddpm_args(workdir, tfds_dir, '--config.train.num_steps=20'))
  return workdir


def split_images(tfds_dir, num):
  """The first `num` digits test images, uint8 [num, 8, 8, 1], as the pipeline reads them."""
  from gen_jax import config_lib
  from gen_jax.data import pipeline
  data = config_lib.config_beside(os.path.join(REPO, 'configs', 'ddpm_digits.py'),
                                  'ddpm_digits').data
  data.data_dir = tfds_dir
  return next(pipeline.eval_batches(data, 'test', num, num, 0, 1))['image']


def edit(workdir, tfds_dir, output, *overrides, devices=1):
  run_cli(*ddpm_args(workdir, tfds_dir), '--mode=edit', f'--config.edit.output={output}',
          '--config.edit.resample=2', *overrides, devices=devices)
  return np.load(output)


def test_inpainting_a_split_keeps_the_known_pixels(ddpm_run, tfds_dir, tmp_path):
  output = str(tmp_path / 'half.npz')
  result = edit(ddpm_run, tfds_dir, output, '--config.edit.num=5', '--config.edit.mask=half')
  given, edited, masks = result['given'], result['edited'], result['masks']
  np.testing.assert_array_equal(given, split_images(tfds_dir, 5))
  assert edited.shape == given.shape == (5, 8, 8, 1) and edited.dtype == np.uint8
  assert masks.shape == (5, 8, 8, 1) and masks[:, :, :4].all() and not masks[:, :, 4:].any()
  np.testing.assert_array_equal(edited[:, :, :4], given[:, :, :4])
  assert np.any(edited[:, :, 4:] != given[:, :, 4:])
  grid = np.asarray(Image.open(output.replace('.npz', '.png')))
  assert grid.shape == (3 * 33 + 1, 5 * 33 + 1)  # given, masked, edited; 8 px shown as 32


@pytest.mark.slow
def test_a_folder_and_a_mask_image_and_sdedit(ddpm_run, tfds_dir, tmp_path):
  folder = tmp_path / 'images'
  folder.mkdir()
  rng = np.random.default_rng(0)
  for i in range(3):
    Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(folder / f'{i}.png')
  mask = np.zeros((16, 16), np.uint8)
  mask[:8] = 255  # keep the top half
  Image.fromarray(mask).save(tmp_path / 'mask.png')
  output = str(tmp_path / 'folder.npz')
  result = edit(ddpm_run, tfds_dir, output, f'--config.edit.source={folder}',
                '--config.edit.num=3', f'--config.edit.mask={tmp_path / "mask.png"}')
  given, edited = result['given'], result['edited']
  expected = np.stack([np.asarray(Image.open(folder / f'{i}.png').resize(
      (8, 8), Image.Resampling.BILINEAR))[:, :, None] for i in range(3)])
  np.testing.assert_array_equal(given, expected)
  np.testing.assert_array_equal(edited[:, :4], given[:, :4])

  output = str(tmp_path / 'sdedit.npz')
  result = edit(ddpm_run, tfds_dir, output, f'--config.edit.source={folder}',
                '--config.edit.num=3', '--config.edit.mask=none', '--config.edit.strength=0.5')
  assert not result['masks'].any() and np.any(result['edited'] != result['given'])


@pytest.mark.parametrize('override,fragment', [
    ('--config.edit.mask=oval', "edit.mask='oval'"),
    ('--config.edit.strength=0', 'edit.strength=0'),
    ('--config.edit.num=9999', 'edit.num=9999'),
    ('--config.edit.source=/nonexistent/folder', "edit.source='/nonexistent/folder'"),
    ('--config.edit.jump=3', 'edit.jump=3 with edit.resample=2: expected a jump below 3'),
])
def test_bad_edit_values_are_one_line(ddpm_run, tfds_dir, override, fragment):
  result = run_cli(*ddpm_args(ddpm_run, tfds_dir), '--mode=edit', '--config.edit.resample=2',
                   '--config.edit.strength=0.5', override, check=False)
  assert_one_line_error(result, fragment)


def test_a_mask_file_pillow_cannot_read_is_one_line(ddpm_run, tfds_dir, tmp_path):
  (tmp_path / 'mask.png').write_text('not an image')
  result = run_cli(*ddpm_args(ddpm_run, tfds_dir), '--mode=edit',
                   f'--config.edit.mask={tmp_path / "mask.png"}', check=False)
  assert_one_line_error(result, 'edit.mask=', 'not an image Pillow can read')


def test_a_family_that_cannot_edit_says_so(tmp_path, tfds_dir):
  from tests.conftest import digits_args
  result = run_cli(*digits_args(str(tmp_path), tfds_dir), '--mode=edit', check=False)
  assert_one_line_error(result, "family 'vae' does not edit images")


@pytest.mark.slow
def test_edits_agree_on_one_and_eight_devices(ddpm_run, tfds_dir, tmp_path):
  results = [edit(ddpm_run, tfds_dir, str(tmp_path / f'{d}.npz'), '--config.edit.num=5',
                  '--config.edit.mask=random', devices=d)['edited'] for d in (1, 8)]
  assert np.abs(results[0].astype(int) - results[1].astype(int)).max() <= 1
  assert os.path.exists(tmp_path / '8.png')
