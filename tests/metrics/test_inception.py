"""The FID InceptionV3 against Keras's InceptionV3 (same random weights), its two FID flags
one at a time, the resizer against torch's bilinear formula, and the torch state-dict reader
against hand-built .pth files (and, where a torch venv exists, files torch itself wrote and the
pytorch-fid network run in torch)."""

import collections
import io
import os
import pickle
import re
import subprocess
import sys
import types
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util
from jax import lax

from gen_jax.errors import UserError
from gen_jax.metrics import inception, torch_weights

TORCH_PYTHON = os.environ.get('GEN_JAX_TORCH_PYTHON', '')

# torchvision's names of the 94 conv-BN layers, in the order keras's inception_v3.py creates them.
BLOCK_CONVS = {
    'A': ['branch1x1', 'branch5x5_1', 'branch5x5_2', 'branch3x3dbl_1', 'branch3x3dbl_2',
          'branch3x3dbl_3', 'branch_pool'],
    'B': ['branch3x3', 'branch3x3dbl_1', 'branch3x3dbl_2', 'branch3x3dbl_3'],
    'C': ['branch1x1', 'branch7x7_1', 'branch7x7_2', 'branch7x7_3', 'branch7x7dbl_1',
          'branch7x7dbl_2', 'branch7x7dbl_3', 'branch7x7dbl_4', 'branch7x7dbl_5', 'branch_pool'],
    'D': ['branch3x3_1', 'branch3x3_2', 'branch7x7x3_1', 'branch7x7x3_2', 'branch7x7x3_3',
          'branch7x7x3_4'],
    'E': ['branch1x1', 'branch3x3_1', 'branch3x3_2a', 'branch3x3_2b', 'branch3x3dbl_1',
          'branch3x3dbl_2', 'branch3x3dbl_3a', 'branch3x3dbl_3b', 'branch_pool'],
}
BLOCKS = [('Mixed_5b', 'A'), ('Mixed_5c', 'A'), ('Mixed_5d', 'A'), ('Mixed_6a', 'B'),
          ('Mixed_6b', 'C'), ('Mixed_6c', 'C'), ('Mixed_6d', 'C'), ('Mixed_6e', 'C'),
          ('Mixed_7a', 'D'), ('Mixed_7b', 'E'), ('Mixed_7c', 'E')]
CONV_PATHS = ([(n,) for n in ('Conv2d_1a_3x3', 'Conv2d_2a_3x3', 'Conv2d_2b_3x3', 'Conv2d_3b_1x1',
                              'Conv2d_4a_3x3')]
              + [(block, conv) for block, kind in BLOCKS for conv in BLOCK_CONVS[kind]])


def random_bn(rng: np.random.Generator, channels: int) -> dict[str, np.ndarray]:
  """BatchNorm values far enough from the identity that a misapplied statistic shows."""
  return {'scale': rng.uniform(0.5, 1.5, channels).astype(np.float32),
          'bias': rng.normal(0.0, 0.2, channels).astype(np.float32),
          'mean': rng.normal(0.0, 0.2, channels).astype(np.float32),
          'var': rng.uniform(0.5, 2.0, channels).astype(np.float32)}


def forward(module: inception.InceptionV3, variables, images) -> tuple[np.ndarray, np.ndarray]:
  features, logits = jax.jit(module.apply)(variables, images)
  return np.asarray(features), np.asarray(logits)


def assert_close(got: np.ndarray, want: np.ndarray, tol: float = 1e-4):
  """Equal to within `tol` relative to each value or, for values near zero, to the largest."""
  np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


# Keras parity.


class KerasRun(types.SimpleNamespace):
  variables: dict  # Keras's weights in our layout (no BN scale, random fc)
  images: np.ndarray  # [2, 299, 299, 3] in [-1, 1]
  mixed9: np.ndarray  # [2, 8, 8, 2048], the input of the last block
  mixed10: np.ndarray  # [2, 8, 8, 2048], the last block's output
  pooled: np.ndarray  # [2, 2048]


def _creation_index(layer) -> int:
  match = re.search(r'_(\d+)$', layer.name)
  return int(match.group(1)) if match else 0


@pytest.fixture(scope='module')
def keras_run() -> KerasRun:
  """keras.applications.InceptionV3 (random weights, BN statistics set at random) on 2 images."""
  os.environ.setdefault('KERAS_BACKEND', 'jax')
  try:
    import keras
  except ImportError:
    pytest.fail("keras is not installed: pip install -e '.[test]'")
  assert keras.backend.backend() == 'jax', f'KERAS_BACKEND={os.environ["KERAS_BACKEND"]}'
  keras.utils.set_random_seed(0)
  base = keras.applications.InceptionV3(weights=None, include_top=False, pooling='avg',
                                        input_shape=(299, 299, 3))
  by_type = lambda cls: sorted((la for la in base.layers if isinstance(la, cls)),
                               key=_creation_index)
  convs, bns = by_type(keras.layers.Conv2D), by_type(keras.layers.BatchNormalization)
  assert len(convs) == len(bns) == len(CONV_PATHS) == 94
  rng = np.random.default_rng(0)
  like = traverse_util.flatten_dict(inception.abstract_variables(
      inception.InceptionV3(bn_scale=False)))
  flat = {p: rng.normal(0.0, 0.01, like[p].shape).astype(np.float32)
          for p in like if p[1] == 'fc'}
  for path, conv, bn in zip(CONV_PATHS, convs, bns, strict=True):
    assert not bn.scale and bn.epsilon == 1e-3 and not conv.use_bias
    kernel = np.asarray(conv.kernel)
    values = random_bn(rng, kernel.shape[-1])
    assert [w.path.rpartition('/')[2] for w in bn.weights] == ['beta', 'moving_mean',
                                                               'moving_variance']
    bn.set_weights([values['bias'], values['mean'], values['var']])
    flat[('params', *path, 'conv', 'kernel')] = kernel
    flat[('params', *path, 'bn', 'bias')] = values['bias']
    flat[('batch_stats', *path, 'bn', 'mean')] = values['mean']
    flat[('batch_stats', *path, 'bn', 'var')] = values['var']
  assert flat.keys() == like.keys()
  assert all(flat[p].shape == like[p].shape for p in like)  # so the pairing is right
  model = keras.Model(base.input, [base.get_layer('mixed9').output,
                                   base.get_layer('mixed10').output, base.output])
  images = rng.uniform(-1.0, 1.0, (2, 299, 299, 3)).astype(np.float32)
  mixed9, mixed10, pooled = model.predict(images, verbose=0)  # jitted: faster than a call
  return KerasRun(variables=traverse_util.unflatten_dict(flat), images=images, mixed9=mixed9,
                  mixed10=mixed10, pooled=pooled)


@pytest.mark.slow
def test_standard_network_equals_keras_inception_v3(keras_run):
  """Keras's architecture is the standard one with TF's average pooling (padding not counted)
  and no BN scale."""
  module = inception.InceptionV3(avg_pool_excludes_padding=True, bn_scale=False)
  features, logits = forward(module, keras_run.variables, keras_run.images)
  assert features.shape == (2, 2048) and logits.shape == (2, 1000)
  assert (keras_run.pooled > 0).mean() > 0.5 and keras_run.pooled.std() > 0.01  # not degenerate
  assert_close(features, keras_run.pooled)


@pytest.mark.slow
def test_fid_network_is_keras_with_a_max_pool_in_the_last_block(keras_run):
  """fid=True: the reference is Keras's last block with its pool branch (its last 192
  channels) recomputed by hand from Keras's mixed9 with a 3x3 max pool."""
  module = inception.InceptionV3(fid=True, bn_scale=False)
  features, _ = forward(module, keras_run.variables, keras_run.images)
  x = jnp.asarray(keras_run.mixed9)
  pooled = lax.reduce_window(x, -jnp.inf, lax.max, (1, 3, 3, 1), (1, 1, 1, 1),
                             ((0, 0), (1, 1), (1, 1), (0, 0)))
  p = keras_run.variables['params']['Mixed_7c']['branch_pool']
  s = keras_run.variables['batch_stats']['Mixed_7c']['branch_pool']['bn']
  y = jnp.einsum('bhwc,cd->bhwd', pooled, p['conv']['kernel'][0, 0], precision='highest')
  branch = jax.nn.relu((y - s['mean']) * lax.rsqrt(s['var'] + 1e-3) + p['bn']['bias'])
  reference = np.concatenate([keras_run.mixed10[..., :-192], branch], -1).mean((1, 2))
  assert_close(features, reference)
  assert np.abs(features - keras_run.pooled).max() > 100 * 1e-4 * np.abs(keras_run.pooled).max()


# The FID flags one at a time, block by block.


def pool_by_hand(x: np.ndarray, kind: str) -> np.ndarray:
  """3x3 stride-1 pool with 1 pixel of padding, written out with explicit windows."""
  _, h, w, _ = x.shape
  out = np.empty_like(x)
  for i in range(h):
    for j in range(w):
      window = x[:, max(i - 1, 0):i + 2, max(j - 1, 0):j + 2]
      if kind == 'max':
        out[:, i, j] = window.max((1, 2))
      else:
        count = 9 if kind == 'avg_count_pad' else window.shape[1] * window.shape[2]
        out[:, i, j] = window.sum((1, 2)) / count
  return out


@pytest.mark.parametrize('kind', inception.POOLS)
def test_pool_3x3_matches_explicit_windows(kind):
  x = np.random.default_rng(1).normal(size=(2, 5, 6, 3)).astype(np.float32)
  np.testing.assert_allclose(inception.pool_3x3(jnp.asarray(x), kind), pool_by_hand(x, kind),
                             rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('block', ['A', 'C', 'E'])
@pytest.mark.parametrize('kind', ['avg_count_pad', 'max'])
def test_pool_flag_changes_only_the_pool_branch(block, kind):
  """A block with pool `kind` equals the 'avg' block except in its pool branch (the last
  channels), which equals conv-BN-ReLU of the hand-pooled input."""
  module = {'A': lambda pool: inception.InceptionA(32, pool),
            'C': lambda pool: inception.InceptionC(16, pool),
            'E': lambda pool: inception.InceptionE(pool)}[block]
  rng = np.random.default_rng(2)
  x = rng.normal(size=(2, 5, 5, 24)).astype(np.float32)
  shapes = jax.eval_shape(module('avg').init, jax.random.key(0), x)
  flat = {p: rng.normal(0.0, 1.0 / np.sqrt(np.prod(s.shape[:-1])), s.shape).astype(np.float32)
          for p, s in traverse_util.flatten_dict(shapes).items()}  # kernels: unit gain
  for path in [p for p in flat if p[-2:] == ('bn', 'mean')]:
    values = random_bn(rng, flat[path].shape[0])
    for collection, leaf in (('params', 'scale'), ('params', 'bias'), ('batch_stats', 'mean'),
                             ('batch_stats', 'var')):
      flat[(collection, *path[1:-1], leaf)] = values[leaf]
  variables = traverse_util.unflatten_dict(flat)
  base = np.asarray(module('avg').apply(variables, x))
  got = np.asarray(module(kind).apply(variables, x))
  p, s = variables['params']['branch_pool'], variables['batch_stats']['branch_pool']['bn']
  y = pool_by_hand(x.astype(np.float64), kind) @ np.asarray(p['conv']['kernel'][0, 0], np.float64)
  branch = np.maximum((y - s['mean']) / np.sqrt(s['var'] + 1e-3) * p['bn']['scale']
                      + p['bn']['bias'], 0.0)
  width = branch.shape[-1]
  np.testing.assert_array_equal(got[..., :-width], base[..., :-width])
  np.testing.assert_allclose(got[..., -width:], branch, rtol=1e-5, atol=1e-5)
  assert np.abs(got[..., -width:] - base[..., -width:]).max() > 1e-2
  if kind == 'avg_count_pad':  # padding only matters at the border
    np.testing.assert_allclose(got[:, 1:-1, 1:-1], base[:, 1:-1, 1:-1], rtol=1e-5, atol=1e-5)


def test_fid_switches_on_both_flags_unless_one_is_set_on_its_own():
  V3 = inception.InceptionV3
  assert V3().pools() == ('avg_count_pad', 'avg_count_pad')  # torchvision
  assert V3(fid=True).pools() == ('avg', 'max')
  assert V3(avg_pool_excludes_padding=True).pools() == ('avg', 'avg')  # Keras
  assert V3(last_block_max_pool=True).pools() == ('avg_count_pad', 'max')
  assert V3(fid=True, avg_pool_excludes_padding=False).pools() == ('avg_count_pad', 'max')
  assert V3(fid=True, last_block_max_pool=False).pools() == ('avg', 'avg')
  assert inception.fid_inception().num_classes == 1008


def torch_bilinear(x: np.ndarray, size: int) -> np.ndarray:
  """torch's F.interpolate(mode='bilinear', align_corners=False) formula, as matrices."""
  def matrix(n_in: int) -> np.ndarray:
    src = np.maximum((np.arange(size) + 0.5) * n_in / size - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(int), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    m = np.zeros((size, n_in))
    np.add.at(m, (np.arange(size), lo), 1.0 - (src - lo))
    np.add.at(m, (np.arange(size), hi), src - lo)
    return m
  return np.einsum('oh,bhwc,pw->bopc', matrix(x.shape[1]), x, matrix(x.shape[2]), optimize=True)


@pytest.mark.parametrize('shape', [(2, 32, 32, 3), (1, 28, 28, 1), (1, 400, 350, 3)])
def test_resize_for_inception_is_torch_bilinear(shape):
  x = np.random.default_rng(3).uniform(-1, 1, shape).astype(np.float32)
  got = np.asarray(inception.resize_for_inception(x))
  want = torch_bilinear(np.repeat(x, 3 // shape[-1], -1).astype(np.float64), 299)
  assert got.shape == (shape[0], 299, 299, 3)
  # jax places the samples in float32, whose spacing near 400 is 3e-5 pixels.
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
  same = np.random.default_rng(4).uniform(-1, 1, (1, 299, 299, 3)).astype(np.float32)
  np.testing.assert_array_equal(inception.resize_for_inception(same), same)


# The torch state-dict reader on hand-built files.


class Storage(types.SimpleNamespace):
  """A storage to pickle: torch type name ('FloatStorage', ...), key and 1-D data."""
  type_name: str
  key: str
  data: np.ndarray
  view: tuple | None = None  # legacy format only: (view key, offset, numel)


class Tensor:
  """Pickles as torch does: _rebuild_tensor_v2(storage, offset, size, stride, ...)."""

  def __init__(self, storage: Storage, offset: int, size: tuple, stride: tuple):
    self.args = (storage, offset, size, stride, False, collections.OrderedDict())

  def __reduce__(self):
    return sys.modules['torch._utils']._rebuild_tensor_v2, self.args


@pytest.fixture
def torch_stand_ins(monkeypatch):
  """Modules `torch` and `torch._utils` holding stand-ins, so pickle writes torch's globals."""
  torch, utils = types.ModuleType('torch'), types.ModuleType('torch._utils')

  def _rebuild_tensor_v2(*args):
    raise AssertionError('a stand-in, never called')

  _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = 'torch._utils', (
      '_rebuild_tensor_v2')
  utils._rebuild_tensor_v2 = _rebuild_tensor_v2
  for name in torch_weights.STORAGE_DTYPES:
    setattr(torch, name, type(name, (), {'__module__': 'torch'}))
  torch._utils = utils
  monkeypatch.setitem(sys.modules, 'torch', torch)
  monkeypatch.setitem(sys.modules, 'torch._utils', utils)
  return torch


def pickle_state(state: dict, legacy: bool) -> bytes:
  """Protocol-2 pickle of `state` with torch's persistent ids for the storages."""
  torch = sys.modules['torch']

  class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
      if not isinstance(obj, Storage):
        return None
      pid = ('storage', getattr(torch, obj.type_name), obj.key, 'cpu', obj.data.size)
      return (*pid, obj.view) if legacy else pid

  buffer = io.BytesIO()
  Pickler(buffer, protocol=2).dump(state)
  return buffer.getvalue()


def write_zip_pth(path, state: dict, storages: list[Storage]):
  with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as zf:
    zf.writestr('archive/data.pkl', pickle_state(state, legacy=False))
    zf.writestr('archive/byteorder', 'little')
    for s in storages:
      zf.writestr(f'archive/data/{s.key}', s.data.astype(s.data.dtype.newbyteorder('<')).tobytes())
    zf.writestr('archive/version', '3\n')


def write_legacy_pth(path, state: dict, storages: list[Storage]):
  dump = lambda obj: pickle.dumps(obj, protocol=2)
  sys_info = {'protocol_version': 1001, 'little_endian': True,
              'type_sizes': {'short': 2, 'int': 4, 'long': 4}}
  parts = [dump(torch_weights.LEGACY_MAGIC), dump(1001), dump(sys_info),
           pickle_state(state, legacy=True), dump(sorted(s.key for s in storages))]
  for s in sorted(storages, key=lambda s: s.key):
    parts += [np.int64(s.data.size).tobytes(), s.data.astype('<' + s.data.dtype.str[1:]).tobytes()]
  with open(path, 'wb') as f:
    f.write(b''.join(parts))


def example_state(legacy: bool) -> tuple[dict, list[Storage], dict[str, np.ndarray]]:
  """A state dict with a contiguous, a transposed, two storage-sharing, a 0-d int64, a
  float16 and (legacy only) a storage-view tensor; and the arrays it must read as."""
  rng = np.random.default_rng(5)
  conv = rng.normal(size=(4, 3, 2, 2)).astype(np.float32)
  fc = rng.normal(size=(3, 5)).astype(np.float32)
  shared = np.arange(10, dtype=np.float32)
  half = rng.normal(size=(2, 2)).astype(np.float16)
  s = [Storage(type_name='FloatStorage', key='0', data=conv.ravel()),
       Storage(type_name='FloatStorage', key='1', data=fc.ravel()),
       Storage(type_name='FloatStorage', key='2', data=shared),
       Storage(type_name='LongStorage', key='3', data=np.array([7], np.int64)),
       Storage(type_name='HalfStorage', key='4', data=half.ravel())]
  state = collections.OrderedDict([
      ('a.conv.weight', Tensor(s[0], 0, (4, 3, 2, 2), (12, 4, 2, 1))),
      ('fc.weight', Tensor(s[1], 0, (5, 3), (1, 5))),  # fc.T, not contiguous
      ('shared.tail', Tensor(s[2], 2, (4,), (1,))),
      ('shared.head', Tensor(s[2], 0, (2, 3), (3, 1))),
      ('a.bn.num_batches_tracked', Tensor(s[3], 0, (), ())),
      ('half', Tensor(s[4], 0, (2, 2), (2, 1)))])
  want = {'a.conv.weight': conv, 'fc.weight': fc.T, 'shared.tail': shared[2:6],
          'shared.head': shared[:6].reshape(2, 3), 'a.bn.num_batches_tracked': np.array(7),
          'half': half}
  if legacy:
    view = Storage(type_name='FloatStorage', key='5', data=shared + 100, view=('5v', 3, 4))
    s.append(view)
    state['viewed'] = Tensor(view, 1, (2,), (1,))
    want['viewed'] = (shared + 100)[4:6]
  state._metadata = collections.OrderedDict([('', {'version': 1})])  # as state_dict() sets
  return state, s, want


@pytest.mark.parametrize('legacy', [False, True], ids=['zip', 'legacy'])
def test_reads_hand_built_pth(tmp_path, torch_stand_ins, legacy):
  state, storages, want = example_state(legacy)
  path = tmp_path / 'weights.pth'
  (write_legacy_pth if legacy else write_zip_pth)(path, state, storages)
  got = torch_weights.read_state_dict(str(path))
  assert list(got) == list(want)
  for name, array in want.items():
    assert got[name].dtype == array.dtype and got[name].shape == array.shape, name
    np.testing.assert_array_equal(got[name], array, err_msg=name)


def test_refuses_any_other_global(tmp_path, torch_stand_ins):
  marker = tmp_path / 'ran'

  class Evil:
    def __reduce__(self):
      return os.system, (f'touch {marker}',)

  path = tmp_path / 'evil.pth'
  with zipfile.ZipFile(path, 'w') as zf:
    zf.writestr('archive/data.pkl', pickle.dumps({'x': Evil()}, protocol=2))
  with pytest.raises(UserError, match='not allowed'):
    torch_weights.read_state_dict(str(path))
  assert not marker.exists()
  (tmp_path / 'junk.pth').write_bytes(b'not a checkpoint at all')
  with pytest.raises(UserError, match='not a torch state dict'):
    torch_weights.read_state_dict(str(tmp_path / 'junk.pth'))


def test_hub_hash_in_the_file_name_is_checked(tmp_path):
  path = tmp_path / 'weights-deadbeef.pth'
  path.write_bytes(b'something')
  with pytest.raises(UserError, match='deadbeef'):
    torch_weights.check_hub_hash(str(path))
  good = tmp_path / f'weights-{torch_weights.file_sha256(str(path))[:8]}.pth'
  good.write_bytes(b'something')
  assert torch_weights.check_hub_hash(str(good)) == torch_weights.file_sha256(str(path))


# pytorch-fid's names onto the Flax tree.


def to_torchvision_names(variables) -> dict[str, np.ndarray]:
  """The inverse mapping, written out: the state dict pytorch-fid's network would save."""
  state = {}
  for path, value in traverse_util.flatten_dict(variables).items():
    collection, *module, leaf = path
    name, value = '.'.join(module), np.asarray(value)
    if leaf == 'kernel':
      state[name + '.weight'] = value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T
    else:
      suffix = {'scale': 'weight', 'bias': 'bias', 'mean': 'running_mean', 'var': 'running_var'}
      state[f'{name}.{suffix[leaf]}'] = value
      if leaf == 'mean':
        state[name + '.num_batches_tracked'] = np.array(0, np.int64)
  return state


def write_state_dict(path, state: dict[str, np.ndarray]) -> None:
  """Writes `state` as torch.save would, in the zip format (needs `torch_stand_ins`)."""
  storages, tensors = [], collections.OrderedDict()
  for i, (name, value) in enumerate(state.items()):
    value = np.array(value, order='C')
    type_name = 'LongStorage' if value.dtype == np.int64 else 'FloatStorage'
    storages.append(Storage(type_name=type_name, key=str(i), data=value.ravel()))
    strides = tuple(s // value.itemsize for s in value.strides)
    tensors[name] = Tensor(storages[-1], 0, value.shape, strides)
  write_zip_pth(path, tensors, storages)


def random_fid_variables():
  like = inception.abstract_variables(inception.fid_inception())
  rng = np.random.default_rng(6)
  return jax.tree.map(lambda s: rng.normal(size=s.shape).astype(s.dtype), like)


def test_pytorch_fid_names_map_onto_the_flax_tree(tmp_path, torch_stand_ins):
  variables = random_fid_variables()
  state = to_torchvision_names(variables)
  assert len(state) == 94 * 6 + 2  # conv.weight, 4 BN tensors, num_batches_tracked; fc
  for name, shape in [('Conv2d_1a_3x3.conv.weight', (32, 3, 3, 3)),
                      ('Mixed_5b.branch5x5_2.conv.weight', (64, 48, 5, 5)),
                      ('Mixed_6b.branch7x7_2.conv.weight', (128, 128, 1, 7)),
                      ('Mixed_7c.branch3x3dbl_3b.bn.running_var', (384,)),
                      ('Mixed_7c.branch_pool.conv.weight', (192, 2048, 1, 1)),
                      ('fc.weight', (1008, 2048)), ('fc.bias', (1008,))]:
    assert state[name].shape == shape, name
  like = inception.abstract_variables(inception.fid_inception())
  got = torch_weights.to_flax_variables(state, like)
  jax.tree.map(np.testing.assert_array_equal, got, variables)

  missing = {k: v for k, v in state.items() if k != 'Mixed_6a.branch3x3.bn.running_mean'}
  with pytest.raises(UserError, match='Mixed_6a/branch3x3/bn/mean'):
    torch_weights.to_flax_variables(missing, like)
  with pytest.raises(UserError, match='unexpected.*AuxLogits'):
    torch_weights.to_flax_variables({**state, 'AuxLogits.fc.bias': np.zeros(1008)}, like)
  with pytest.raises(UserError, match='fc.bias'):
    torch_weights.to_flax_variables({**state, 'fc.bias': np.zeros(1000)}, like)

  # The whole file, written as torch's zip format, through the public loader.
  path = tmp_path / 'pt_inception.pth'
  write_state_dict(path, state)
  loaded, apply = inception.load_inception_fid(str(path))
  jax.tree.map(np.testing.assert_array_equal, loaded, variables)
  shapes = jax.eval_shape(apply, loaded, jax.ShapeDtypeStruct((3, 32, 32, 1), jnp.float32))
  assert [s.shape for s in shapes] == [(3, 2048), (3, 1008)]


# Cross-checks against torch itself: marked `torch`, deselected by default (CI has no torch;
# the hand-built files above cover the reader there). `pytest -m torch` runs them and fails
# if no torch Python is found.


needs_torch = pytest.mark.torch


def run_torch(script: str, *args: str):
  if not os.path.exists(TORCH_PYTHON):
    pytest.fail(f'no torch Python at {TORCH_PYTHON}: set GEN_JAX_TORCH_PYTHON')
  result = subprocess.run([TORCH_PYTHON, '-c', script, *args], capture_output=True, text=True,
                          timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]


TORCH_SAVE = r'''
import collections, sys
import numpy as np, torch
torch.manual_seed(0)
x = torch.randn(6, 5)
state = collections.OrderedDict([
    ('conv.weight', torch.randn(4, 3, 2, 2)), ('fc.weight', x.t()), ('slice', x[2:4]),
    ('steps', torch.tensor(7)), ('half', torch.randn(3).half()),
    ('bf16', torch.randn(3).bfloat16()),
    ('mask', torch.tensor([True, False])), ('param', torch.nn.Parameter(torch.randn(2)))])
torch.save(state, sys.argv[1] + '/zip.pth')
torch.save(state, sys.argv[1] + '/legacy.pth', _use_new_zipfile_serialization=False)
want = {k: (v.float() if v.dtype == torch.bfloat16 else v).detach().numpy()
        for k, v in state.items()}
np.savez(sys.argv[1] + '/want.npz', **want)
'''


@needs_torch
def test_reads_what_torch_save_writes(tmp_path):
  run_torch(TORCH_SAVE, str(tmp_path))
  want = dict(np.load(tmp_path / 'want.npz'))
  for name in ('zip.pth', 'legacy.pth'):
    got = torch_weights.read_state_dict(str(tmp_path / name))
    assert list(got) == list(want), name
    for key, array in want.items():
      np.testing.assert_array_equal(np.asarray(got[key], array.dtype), array, err_msg=key)
    assert got['bf16'].dtype == jnp.bfloat16 and got['steps'].dtype == np.int64


TORCH_FID_NET = r'''
import sys
import numpy as np, torch
import torch.nn.functional as F
from torch import nn


class BasicConv2d(nn.Module):
  def __init__(self, cin, cout, **kwargs):
    super().__init__()
    self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
    self.bn = nn.BatchNorm2d(cout, eps=0.001)

  def forward(self, x):
    return F.relu(self.bn(self.conv(x)))


def tf_avg_pool(x):  # pytorch-fid's patch: padding not counted
  return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def branches(x, *chains):
  out = []
  for chain in chains:
    y = x
    for layer in chain:
      y = layer(y)
    out.append(y)
  return torch.cat(out, 1)


class FIDInceptionA(nn.Module):
  def __init__(self, cin, pool_features):
    super().__init__()
    C = BasicConv2d
    self.branch1x1 = C(cin, 64, kernel_size=1)
    self.branch5x5_1 = C(cin, 48, kernel_size=1)
    self.branch5x5_2 = C(48, 64, kernel_size=5, padding=2)
    self.branch3x3dbl_1 = C(cin, 64, kernel_size=1)
    self.branch3x3dbl_2 = C(64, 96, kernel_size=3, padding=1)
    self.branch3x3dbl_3 = C(96, 96, kernel_size=3, padding=1)
    self.branch_pool = C(cin, pool_features, kernel_size=1)

  def forward(self, x):
    return branches(x, [self.branch1x1], [self.branch5x5_1, self.branch5x5_2],
                    [self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3],
                    [tf_avg_pool, self.branch_pool])


class InceptionB(nn.Module):
  def __init__(self, cin):
    super().__init__()
    C = BasicConv2d
    self.branch3x3 = C(cin, 384, kernel_size=3, stride=2)
    self.branch3x3dbl_1 = C(cin, 64, kernel_size=1)
    self.branch3x3dbl_2 = C(64, 96, kernel_size=3, padding=1)
    self.branch3x3dbl_3 = C(96, 96, kernel_size=3, stride=2)

  def forward(self, x):
    return branches(x, [self.branch3x3],
                    [self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3],
                    [lambda y: F.max_pool2d(y, kernel_size=3, stride=2)])


class FIDInceptionC(nn.Module):
  def __init__(self, cin, c7):
    super().__init__()
    C = BasicConv2d
    self.branch1x1 = C(cin, 192, kernel_size=1)
    self.branch7x7_1 = C(cin, c7, kernel_size=1)
    self.branch7x7_2 = C(c7, c7, kernel_size=(1, 7), padding=(0, 3))
    self.branch7x7_3 = C(c7, 192, kernel_size=(7, 1), padding=(3, 0))
    self.branch7x7dbl_1 = C(cin, c7, kernel_size=1)
    self.branch7x7dbl_2 = C(c7, c7, kernel_size=(7, 1), padding=(3, 0))
    self.branch7x7dbl_3 = C(c7, c7, kernel_size=(1, 7), padding=(0, 3))
    self.branch7x7dbl_4 = C(c7, c7, kernel_size=(7, 1), padding=(3, 0))
    self.branch7x7dbl_5 = C(c7, 192, kernel_size=(1, 7), padding=(0, 3))
    self.branch_pool = C(cin, 192, kernel_size=1)

  def forward(self, x):
    return branches(x, [self.branch1x1], [self.branch7x7_1, self.branch7x7_2, self.branch7x7_3],
                    [self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                     self.branch7x7dbl_4, self.branch7x7dbl_5],
                    [tf_avg_pool, self.branch_pool])


class InceptionD(nn.Module):
  def __init__(self, cin):
    super().__init__()
    C = BasicConv2d
    self.branch3x3_1 = C(cin, 192, kernel_size=1)
    self.branch3x3_2 = C(192, 320, kernel_size=3, stride=2)
    self.branch7x7x3_1 = C(cin, 192, kernel_size=1)
    self.branch7x7x3_2 = C(192, 192, kernel_size=(1, 7), padding=(0, 3))
    self.branch7x7x3_3 = C(192, 192, kernel_size=(7, 1), padding=(3, 0))
    self.branch7x7x3_4 = C(192, 192, kernel_size=3, stride=2)

  def forward(self, x):
    return branches(x, [self.branch3x3_1, self.branch3x3_2],
                    [self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3,
                     self.branch7x7x3_4],
                    [lambda y: F.max_pool2d(y, kernel_size=3, stride=2)])


class FIDInceptionE(nn.Module):
  def __init__(self, cin, last):
    super().__init__()
    C = BasicConv2d
    self.last = last
    self.branch1x1 = C(cin, 320, kernel_size=1)
    self.branch3x3_1 = C(cin, 384, kernel_size=1)
    self.branch3x3_2a = C(384, 384, kernel_size=(1, 3), padding=(0, 1))
    self.branch3x3_2b = C(384, 384, kernel_size=(3, 1), padding=(1, 0))
    self.branch3x3dbl_1 = C(cin, 448, kernel_size=1)
    self.branch3x3dbl_2 = C(448, 384, kernel_size=3, padding=1)
    self.branch3x3dbl_3a = C(384, 384, kernel_size=(1, 3), padding=(0, 1))
    self.branch3x3dbl_3b = C(384, 384, kernel_size=(3, 1), padding=(1, 0))
    self.branch_pool = C(cin, 192, kernel_size=1)

  def forward(self, x):
    b3 = self.branch3x3_1(x)
    bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
    if self.last:  # pytorch-fid's FIDInceptionE_2: max pooling
      pool = lambda y: F.max_pool2d(y, kernel_size=3, stride=1, padding=1)
    else:
      pool = tf_avg_pool
    return torch.cat([self.branch1x1(x), self.branch3x3_2a(b3), self.branch3x3_2b(b3),
                      self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd),
                      self.branch_pool(pool(x))], 1)


class FIDInceptionV3(nn.Module):
  def __init__(self):
    super().__init__()
    C = BasicConv2d
    self.Conv2d_1a_3x3 = C(3, 32, kernel_size=3, stride=2)
    self.Conv2d_2a_3x3 = C(32, 32, kernel_size=3)
    self.Conv2d_2b_3x3 = C(32, 64, kernel_size=3, padding=1)
    self.Conv2d_3b_1x1 = C(64, 80, kernel_size=1)
    self.Conv2d_4a_3x3 = C(80, 192, kernel_size=3)
    self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = (FIDInceptionA(192, 32), FIDInceptionA(256, 64),
                                                   FIDInceptionA(288, 64))
    self.Mixed_6a = InceptionB(288)
    self.Mixed_6b, self.Mixed_6c = FIDInceptionC(768, 128), FIDInceptionC(768, 160)
    self.Mixed_6d, self.Mixed_6e = FIDInceptionC(768, 160), FIDInceptionC(768, 192)
    self.Mixed_7a = InceptionD(768)
    self.Mixed_7b, self.Mixed_7c = FIDInceptionE(1280, False), FIDInceptionE(2048, True)
    self.fc = nn.Linear(2048, 1008)

  def forward(self, x):  # x: [B, 3, H, W] in [-1, 1]
    x = F.interpolate(x, size=(299, 299), mode='bilinear', align_corners=False)
    x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
    x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(F.max_pool2d(x, kernel_size=3, stride=2)))
    x = F.max_pool2d(x, kernel_size=3, stride=2)
    for name in ('5b', '5c', '5d', '6a', '6b', '6c', '6d', '6e', '7a', '7b', '7c'):
      x = getattr(self, 'Mixed_' + name)(x)
    features = x.mean((2, 3))
    return features, self.fc(features)


torch.manual_seed(0)
net = FIDInceptionV3().eval()
with torch.no_grad():
  for m in net.modules():
    if isinstance(m, nn.BatchNorm2d):
      m.weight.uniform_(0.5, 1.5), m.bias.normal_(0, 0.2)
      m.running_mean.normal_(0, 0.2), m.running_var.uniform_(0.5, 2.0)
  images = torch.rand(2, 3, 64, 48) * 2 - 1
  features, logits = net(images)
torch.save(net.state_dict(), sys.argv[1] + '/fid.pth')
np.savez(sys.argv[1] + '/out.npz', images=images.permute(0, 2, 3, 1).numpy(),
         features=features.numpy(), logits=logits.numpy())
'''


@needs_torch
def test_loaded_network_equals_pytorch_fid_in_torch(tmp_path):
  """pytorch-fid's FID network (torchvision's Inception3 with the FIDInceptionA/C/E patches,
  1008 classes, F.interpolate to 299), random weights saved by torch, run by both."""
  run_torch(TORCH_FID_NET, str(tmp_path))
  out = np.load(tmp_path / 'out.npz')
  variables, apply = inception.load_inception_fid(str(tmp_path / 'fid.pth'))
  features, logits = jax.jit(apply)(variables, out['images'])
  assert_close(np.asarray(features), out['features'])
  assert_close(np.asarray(logits), out['logits'])
