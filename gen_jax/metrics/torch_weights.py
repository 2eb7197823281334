"""Reads PyTorch state dicts (`torch.save(model.state_dict(), path)`) without torch.

Both of torch's formats are read:

* zip (torch >= 1.6): `<prefix>/data.pkl`, a pickle of the state dict whose tensors refer
  to raw little-endian storages `<prefix>/data/<key>` by persistent id
  ('storage', storage type, key, location, numel);
* legacy (torch < 1.6): the pickles magic number, protocol version, system info, the state
  dict (persistent ids with a sixth field, the view), the list of storage keys, then each
  storage as an int64 element count and its bytes.

The pickle is read by an unpickler that builds nothing but ordered dicts, numpy arrays and
plain data: `find_class` admits only `collections.OrderedDict`, torch's tensor-rebuild
functions (served by numpy functions here) and the torch storage types (as dtypes), so a
malicious file cannot run code. `to_flax_variables` maps torchvision's names
(`Mixed_5b.branch1x1.conv.weight`, `...bn.running_mean`, `fc.weight`) onto a Flax tree.
"""

import collections
import hashlib
import io
import os
import pickle
import re
import zipfile
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import ml_dtypes
import numpy as np
from flax import traverse_util

from gen_jax.errors import UserError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

STORAGE_DTYPES = {
    'FloatStorage': np.float32, 'DoubleStorage': np.float64, 'HalfStorage': np.float16,
    'BFloat16Storage': ml_dtypes.bfloat16, 'LongStorage': np.int64, 'IntStorage': np.int32,
    'ShortStorage': np.int16, 'CharStorage': np.int8, 'ByteStorage': np.uint8,
    'BoolStorage': np.bool_,
}


class StorageType(NamedTuple):
  """What a pickled `torch.FloatStorage` (etc.) global stands for: its element dtype."""
  name: str
  dtype: np.dtype


def rebuild_tensor(storage: np.ndarray, offset: int, size: tuple, stride: tuple,
                   *unused: Any) -> np.ndarray:
  """torch._utils._rebuild_tensor_v2: a strided view of `storage` (a 1-D array), bounds-checked.

  It stays a view, since a legacy file fills the storages after the tensors are built;
  `read_state_dict` copies the finished arrays.
  """
  size, stride = tuple(int(n) for n in size), tuple(int(s) for s in stride)
  if len(size) != len(stride) or offset < 0 or min(stride, default=0) < 0:
    raise pickle.UnpicklingError(f'bad tensor layout: offset {offset} size {size} '
                                 f'stride {stride}')
  if all(size):
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if last >= storage.size:
      raise pickle.UnpicklingError(f'tensor of size {size} stride {stride} at offset {offset} '
                                   f'overruns its storage of {storage.size} elements')
  item = storage.itemsize
  return np.lib.stride_tricks.as_strided(storage[offset:], size, [s * item for s in stride],
                                         writeable=False)


def rebuild_parameter(data: np.ndarray, *unused: Any) -> np.ndarray:
  """torch._utils._rebuild_parameter: an nn.Parameter is its data here."""
  return data


REBUILDERS = {
    '_rebuild_tensor_v2': rebuild_tensor,
    '_rebuild_parameter': rebuild_parameter,
}


class StateDictUnpickler(pickle.Unpickler):
  """Unpickles a torch state dict's pickle, admitting only the globals it needs.

  `load_storage(storage_type, key, numel, view)` returns the 1-D array of a persistent id
  ('storage', type, key, location, numel[, view]).
  """

  def __init__(self, file: io.BufferedIOBase,
               load_storage: Callable[[StorageType, str, int, Any], np.ndarray] | None = None):
    super().__init__(file, encoding='utf-8')
    self._load_storage = load_storage

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) == ('collections', 'OrderedDict'):
      return collections.OrderedDict
    if module == 'torch._utils' and name in REBUILDERS:
      return REBUILDERS[name]
    if module == 'torch' and name in STORAGE_DTYPES:
      return StorageType(name, np.dtype(STORAGE_DTYPES[name]))
    raise pickle.UnpicklingError(f'{module}.{name} is not allowed in a torch state dict')

  def persistent_load(self, pid: Any) -> np.ndarray:
    if (self._load_storage is None or not isinstance(pid, tuple) or len(pid) not in (5, 6)
        or pid[0] != 'storage' or not isinstance(pid[1], StorageType)):
      raise pickle.UnpicklingError(f'unexpected persistent id {pid!r}')
    _, storage_type, key, _, numel, *view = pid
    return self._load_storage(storage_type, str(key), int(numel), view[0] if view else None)


def _read_zip(path: str) -> Any:
  with zipfile.ZipFile(path) as zf:
    pickles = [n for n in zf.namelist() if n == 'data.pkl' or n.endswith('/data.pkl')]
    if not pickles:
      raise UserError(f'{path}: a zip file without data.pkl, not a torch state dict')
    prefix = min(pickles, key=len)[:-len('data.pkl')]
    order = '<'
    if prefix + 'byteorder' in zf.namelist():
      order = {'little': '<', 'big': '>'}[zf.read(prefix + 'byteorder').decode().strip()]
    storages: dict[str, np.ndarray] = {}

    def load_storage(storage_type: StorageType, key: str, numel: int, view: Any) -> np.ndarray:
      del view  # the zip format has none
      if key not in storages:
        raw = zf.read(f'{prefix}data/{key}')
        data = np.frombuffer(raw, storage_type.dtype.newbyteorder(order))
        if data.size < numel:
          raise pickle.UnpicklingError(f'storage {key}: {data.size} elements, expected {numel}')
        storages[key] = data[:numel].astype(storage_type.dtype)
      return storages[key]

    return StateDictUnpickler(io.BytesIO(zf.read(prefix + 'data.pkl')), load_storage).load()


def _read_legacy(path: str) -> Any:
  with open(path, 'rb') as f:
    stream = io.BytesIO(f.read())
  try:
    magic = StateDictUnpickler(stream).load()
  except Exception as e:  # any byte soup: say what the file is not
    raise UserError(f'{path}: not a torch state dict (neither zip nor legacy format)') from e
  if magic != LEGACY_MAGIC:
    raise UserError(f'{path}: not a torch state dict (neither zip nor legacy format)')
  if (version := StateDictUnpickler(stream).load()) != LEGACY_PROTOCOL:
    raise UserError(f'{path}: legacy torch protocol {version}, expected {LEGACY_PROTOCOL}')
  sys_info = StateDictUnpickler(stream).load()
  order = '<' if sys_info.get('little_endian', True) else '>'
  roots: dict[str, np.ndarray] = {}

  def load_storage(storage_type: StorageType, key: str, numel: int, view: Any) -> np.ndarray:
    root = roots.setdefault(key, np.empty(numel, storage_type.dtype))
    if view is None:
      return root
    _, start, length = view
    return root[int(start):int(start) + int(length)]

  state = StateDictUnpickler(stream, load_storage).load()
  for key in StateDictUnpickler(stream).load():
    root = roots[str(key)]
    count = int(np.frombuffer(stream.read(8), order + 'i8')[0])
    raw = stream.read(count * root.itemsize)
    if count != root.size or len(raw) != root.nbytes:
      raise UserError(f'{path}: storage {key} holds {count} elements, expected {root.size}')
    root[:] = np.frombuffer(raw, root.dtype.newbyteorder(order))
  return state


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """Reads a `torch.save`d state dict (zip or legacy format): {name: array}, in file order."""
  try:
    state = _read_zip(path) if zipfile.is_zipfile(path) else _read_legacy(path)
  except (pickle.UnpicklingError, KeyError, EOFError) as e:
    raise UserError(f'{path}: unreadable as a torch state dict: {e}') from e
  if not isinstance(state, Mapping) or not all(
      isinstance(k, str) and isinstance(v, np.ndarray) for k, v in state.items()):
    raise UserError(f'{path}: holds a {type(state).__name__}, not a state dict of tensors')
  return {k: np.array(v) for k, v in state.items()}


def file_sha256(path: str) -> str:
  with open(path, 'rb') as f:
    return hashlib.file_digest(f, 'sha256').hexdigest()


def check_hub_hash(path: str) -> str:
  """Returns the file's sha256; if its name ends in torch hub's '-<sha256 prefix>.pth'
  (as `pt_inception-2015-12-05-6726825d.pth` does), checks that prefix first."""
  digest = file_sha256(path)
  match = re.search(r'-([0-9a-f]{8,64})\.pth?$', os.path.basename(path))
  if match and not digest.startswith(match.group(1)):
    raise UserError(f'{path}: sha256 {digest[:16]}... does not start with the {match.group(1)} '
                    'its name promises; the download is corrupt or another file')
  return digest


def _flax_path(name: str, value: np.ndarray) -> tuple[tuple[str, ...], np.ndarray] | None:
  """A torchvision name and tensor -> (Flax path, array in Flax layout); None: not a variable."""
  *module, leaf = name.split('.')
  if leaf == 'num_batches_tracked':
    return None
  if leaf == 'running_mean':
    return ('batch_stats', *module, 'mean'), value
  if leaf == 'running_var':
    return ('batch_stats', *module, 'var'), value
  if leaf == 'bias':
    return ('params', *module, 'bias'), value
  if leaf == 'weight' and value.ndim == 4:  # conv, OIHW -> HWIO
    return ('params', *module, 'kernel'), value.transpose(2, 3, 1, 0)
  if leaf == 'weight' and value.ndim == 2:  # linear, [out, in] -> [in, out]
    return ('params', *module, 'kernel'), value.T
  if leaf == 'weight' and value.ndim == 1:  # BatchNorm's scale
    return ('params', *module, 'scale'), value
  raise UserError(f'state dict entry {name} {value.shape}: no Flax counterpart')


def to_flax_variables(state: Mapping[str, np.ndarray], like: Any) -> dict[str, Any]:
  """Maps a torchvision-named state dict onto the Flax variables tree `like`.

  `module.sub.conv.weight` [O, I, H, W] -> params/module/sub/conv/kernel [H, W, I, O];
  `*.bn.weight`/`bias` -> params .../bn/scale, bias; `*.bn.running_mean`/`running_var` ->
  batch_stats .../bn/mean, var; `fc.weight` [out, in] -> params/fc/kernel [in, out].
  `like` ({'params': ..., 'batch_stats': ...} of arrays or ShapeDtypeStructs) fixes the
  names, shapes and dtypes: any missing, extra or misshapen entry is an error.
  """
  expected = traverse_util.flatten_dict(like)
  flat = {}
  for name, value in state.items():
    if (mapped := _flax_path(name, np.asarray(value))) is not None:
      path, array = mapped
      flat[path] = (name, array)
  missing = sorted('/'.join(p) for p in expected.keys() - flat.keys())
  extra = sorted(flat[p][0] for p in flat.keys() - expected.keys())
  if missing or extra:
    raise UserError(f'state dict does not fit the network: missing {missing[:5]} '
                    f'({len(missing)} in all), unexpected {extra[:5]} ({len(extra)} in all)')
  out = {}
  for path, target in expected.items():
    name, array = flat[path]
    if array.shape != tuple(target.shape):
      raise UserError(f'state dict entry {name}: shape {array.shape} (as Flax), expected '
                      f'{tuple(target.shape)}')
    out[path] = np.array(array, dtype=target.dtype, order='C')
  return traverse_util.unflatten_dict(out)
