"""Where a dataset comes from: the builder of `data.name` (an offline one reading the files in
data.manual_dir, or tfds's own), preparing it once into data.data_dir, and its random-access
source. Every way preparing can fail ends in one UserError line.
"""

import fcntl
import importlib.util
import os
import socket
from typing import Any

import jax
import tensorflow_datasets as tfds
from ml_collections import ConfigDict

from gen_jax import layout
from gen_jax.data import builders, image_builders
from gen_jax.errors import UserError

# data.name -> the builder that prepares it offline from files in data.manual_dir. Without a
# manual_dir, the names tfds also knows (mnist, cifar10, cifar100, celeb_a) are read from a
# copy that tfds prepared (array_record), and any other tfds name likewise.
FILE_BUILDERS = {
    'digits': builders.Digits, 'mnist_idx': builders.MnistIdx, 'mnist': builders.MnistIdx,
    'cifar10': builders.Cifar10Files, 'cifar100': builders.Cifar100Files,
    'celeb_a': image_builders.CelebAFiles, 'image_folder': image_builders.ImageFolder}
NEED_MANUAL_DIR = ('mnist_idx', 'image_folder')
SIZED_BUILDERS = (image_builders.CelebAFiles, image_builders.ImageFolder)
PREPARE_EXTRA = "pip install -e '.[prepare]'"
tfds.disable_progress_bar()


def _one_line(e: BaseException) -> str:
  return ' '.join(str(e).split())


def _builder(data: ConfigDict) -> tfds.core.DatasetBuilder:
  """The builder of data.name: an offline one reading data.manual_dir where there is one."""
  cls = FILE_BUILDERS.get(data.name)
  if cls is not None and (data.manual_dir is not None or data.name in ('digits', 'mnist_idx')):
    if data.manual_dir is not None and layout.is_object_store(data.manual_dir):
      raise UserError(f'data.manual_dir={data.manual_dir!r}: the offline builders read a local '
                      'folder; copy the files to the host that prepares the dataset')
    if data.manual_dir is not None and not os.path.isdir(data.manual_dir):
      raise UserError(f'data.manual_dir={data.manual_dir!r} is not a directory '
                      f'(dataset {data.name!r} reads its source files from there)')
    if cls in SIZED_BUILDERS:
      channels = 3 if cls is image_builders.CelebAFiles else data.channels
      folder = data.manual_dir if cls is image_builders.ImageFolder else None
      try:
        config = image_builders.size_config(data.image_size, data.crop_size, channels, folder)
      except (ValueError, OSError) as e:
        raise UserError(f'dataset {data.name!r}: {_one_line(e)}') from None
      return cls(data_dir=data.data_dir, config=config)
    return cls(data_dir=data.data_dir)
  if data.name in NEED_MANUAL_DIR:
    raise UserError(f'dataset {data.name!r} needs data.manual_dir: '
                    f'{cls.MANUAL_DOWNLOAD_INSTRUCTIONS}')
  try:
    return tfds.builder(data.name, data_dir=data.data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise UserError(
        f'unknown dataset data.name={data.name!r}: expected a tfds dataset name (e.g. mnist, '
        f'cifar10, celeb_a) or an offline builder ({", ".join(FILE_BUILDERS)})') from None


def has_tensorflow() -> bool:
  return importlib.util.find_spec('tensorflow') is not None


def _check_can_prepare(builder: Any, data: ConfigDict) -> None:
  """Refuses, in one line, a preparation that could only fail or hang: tfds's own builders
  need TensorFlow, and a network for their download."""
  if isinstance(builder, tuple(FILE_BUILDERS.values())):
    return
  offline = (f'; or prepare it offline: {FILE_BUILDERS[data.name].MANUAL_DOWNLOAD_INSTRUCTIONS}'
             if data.name in FILE_BUILDERS else '')
  if not has_tensorflow():
    raise UserError(f'dataset {data.name!r} is not prepared in {builder.data_dir} and tfds '
                    f'prepares it with TensorFlow, which is not installed: {PREPARE_EXTRA}'
                    f'{offline}')
  if not network_reachable():
    raise UserError(f'dataset {data.name!r} is not prepared in {builder.data_dir} and its '
                    f'download needs a network, which {DOWNLOAD_PROBE[0]} says is not there: '
                    f'prepare it on a machine with one{offline}')


DOWNLOAD_PROBE = ('storage.googleapis.com', 443)  # where tfds fetches from first


def network_reachable(address: tuple[str, int] = DOWNLOAD_PROBE, timeout: float = 5) -> bool:
  """Whether a TCP connection to `address` opens within `timeout` seconds."""
  try:
    socket.create_connection(address, timeout=timeout).close()
    return True
  except OSError:
    return False


def _remove_partial_files(dataset_dir: str) -> None:
  """Removes what a failed preparation leaves under DATA_DIR/NAME: tfds's `incomplete.*`
  folders and `*.tmp.*` / `*.incomplete` files (prepared versions are left alone)."""
  for root, dirs, files in layout.path(dataset_dir).walk():
    for name in dirs + files:
      if name.startswith('incomplete.') or '.tmp.' in name or name.endswith('.incomplete'):
        path = root / name
        path.rmtree() if name in dirs else path.unlink()
        if name in dirs:
          dirs.remove(name)


def _prepare(builder: Any, data: ConfigDict) -> None:
  """Prepares the dataset once, under a file lock: runs started side by side on a fresh
  data_dir (a sweep with --parallel) would otherwise race to rename the same folder."""
  _check_can_prepare(builder, data)
  root = os.path.dirname(builder.data_dir)  # DATA_DIR/NAME[/CONFIG]/VERSION -> DATA_DIR/NAME
  if builder.builder_config is not None:
    root = os.path.dirname(root)
  if layout.is_object_store(root):  # array_record writes local files only (without TF)
    raise UserError(
        f'dataset {data.name!r} is not prepared in {builder.data_dir}, and gen_jax prepares '
        f'datasets into a local data.data_dir only: prepare it into a local folder with '
        f'--mode=prepare, then copy DATA_DIR/{builder.name} to {os.path.dirname(root)}/ '
        f'(e.g. gcloud storage cp -r)')
  os.makedirs(root, exist_ok=True)
  with open(os.path.join(root, '.prepare.lock'), 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
    if builder.is_prepared():  # prepared by the run that held the lock before us
      return
    try:
      builder.download_and_prepare(
          file_format='array_record',
          download_config=tfds.download.DownloadConfig(manual_dir=data.manual_dir))
    except (OSError, AssertionError, ValueError, EOFError, ImportError, RuntimeError) as e:
      # tfds asserts on an empty dir; gzip raises EOFError on a truncated file
      _remove_partial_files(root)
      raise UserError(f'cannot prepare dataset {data.name!r}: '
                      f'{type(e).__name__}: {_one_line(e)}') from None
    except BaseException:
      _remove_partial_files(root)
      raise


def prepare(data: ConfigDict) -> dict[str, int]:
  """Prepares data.name in data.data_dir if it is not yet (what `--mode=prepare` runs once,
  before a multi-host launch); returns {split: number of examples}."""
  builder = _builder(data)
  if not builder.is_prepared():
    if builder.MANUAL_DOWNLOAD_INSTRUCTIONS and data.manual_dir is None:
      raise UserError(f'dataset {data.name!r} needs data.manual_dir: '
                      f'{builder.MANUAL_DOWNLOAD_INSTRUCTIONS}')
    _prepare(builder, data)
  return {name: split.num_examples for name, split in builder.info.splits.items()}


def load_source(data: ConfigDict, split: str) -> Any:
  """Returns the tfds random-access source of `split`. A single-process run prepares the
  dataset if needed; a multi-process one only reads a data_dir prepared beforehand."""
  builder = _builder(data)
  if not builder.is_prepared():
    if jax.process_count() > 1:
      raise UserError(
          f'dataset {data.name!r} is not prepared in {builder.data_dir}: prepare it once, '
          f'before a multi-process launch, with python -m gen_jax.main --mode=prepare '
          f'--config=... (the same data.* overrides)')
    prepare(data)
    builder = _builder(data)  # reads the info that preparing wrote
  try:
    return builder.as_data_source(split=split)
  except NotImplementedError:  # tfds prepared it as TFRecord, which has no random access
    raise UserError(
        f'dataset {data.name!r} in {builder.data_dir} is in {builder.info.file_format.value} '
        f'format, and gen_jax reads array_record: convert it once with {PREPARE_EXTRA} and '
        f'tfds convert_format --dataset_version_dir={builder.data_dir} '
        f'--out_file_format=array_record') from None
  except (ValueError, KeyError) as e:
    raise UserError(f'dataset {data.name!r}, split {split!r}: {_one_line(e)}') from None


def read_crop_size(data: ConfigDict) -> int:
  """The crop applied while reading: none where the images were cropped and resized when
  the dataset was prepared (the image-file builders)."""
  sized = FILE_BUILDERS.get(data.name) in SIZED_BUILDERS and data.manual_dir is not None
  return 0 if sized else data.crop_size
