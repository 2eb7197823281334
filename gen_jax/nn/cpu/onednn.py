"""2-D f32 convolutions computed by oneDNN (the library behind PyTorch's CPU convolutions)
inside jitted XLA:CPU programs, through XLA's FFI.

XLA:CPU runs convolutions with Eigen's kernels, which are slower than oneDNN's on the DDPM
UNet's 3x3 layers, most in the gradients (`benchmarks/conv_parts.py`).
jaxlib 0.10.2 is built without XLA's own oneDNN convolution path, so `conv` calls oneDNN
itself: `onednn_conv.cc` (beside this file) holds three FFI handlers (forward, input
gradient, kernel gradient), which `load()` compiles once with the C++ compiler against the
headers of the `onednn-devel-cpu-gomp` wheel and jaxlib's FFI headers, caches under
`$GEN_JAX_CACHE` (default `~/.cache/gen_jax`), loads and registers.

`conv` is the same function as `lax.conv_general_dilated` in NHWC / HWIO (float rounding
apart), differentiable to any order: each of the three ops is linear in each argument and
its cotangents are the other two ops. Where the library or the compiler is missing, on
other backends, for other dtypes and for small convs (`MIN_FLOPS`), `conv` is
`lax.conv_general_dilated`.
`GEN_JAX_ONEDNN=0` turns oneDNN off.
"""

import contextlib
import ctypes
import functools
import hashlib
import importlib.metadata
import math
import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax import lax

from gen_jax.nn.cpu.norms import vary_like

_SOURCE = Path(__file__).parent / 'onednn_conv.cc'
_TARGETS = {'forward': 'GenJaxOnednnConvForward', 'input_grad': 'GenJaxOnednnConvBackwardData',
            'kernel_grad': 'GenJaxOnednnConvBackwardWeights'}
_DIMS = ('NHWC', 'HWIO', 'NHWC')
Padding = tuple[tuple[int, int], tuple[int, int]]
_xla_only = False
# A conv whose forward pass has fewer FLOPs (per device) stays XLA's. oneDNN's cost per call
# (waking its OpenMP threads, the primitive lookup, the kernel's reorders) is the same for
# any size, so small convs are faster on XLA's (`benchmarks/onednn_crossover.py` measures the
# crossover; vae_digits' convs are below it). The UNet's convs have 57 MFLOP or more at batch 16.
MIN_FLOPS = 5e7


def _wheel_file(distribution: str, name: str) -> Path:
  """The installed file of `distribution` whose path ends with `name`."""
  for file in importlib.metadata.files(distribution) or ():
    if str(file).endswith(name):
      return Path(file.locate()).resolve()
  raise FileNotFoundError(f'{distribution} has no {name}')


def _library_paths() -> tuple[Path, Path]:
  """(libdnnl.so.3, the include dir holding oneapi/dnnl/dnnl.hpp) of the installed wheels."""
  library = _wheel_file('onednn-cpu-gomp', '/libdnnl.so.3')
  header = _wheel_file('onednn-devel-cpu-gomp', '/oneapi/dnnl/dnnl.hpp')
  return library, header.parent.parent.parent


def _build(library: Path, include: Path) -> Path:
  """Compiles `_SOURCE` unless the cache has it; returns the shared object's path."""
  versions = (jax.__version__, importlib.metadata.version('onednn-cpu-gomp'))
  digest = hashlib.sha256(_SOURCE.read_bytes() + repr(versions).encode()).hexdigest()[:16]
  cache = Path(os.environ.get('GEN_JAX_CACHE', Path.home() / '.cache' / 'gen_jax'))
  target = cache / f'onednn_conv-{digest}.so'
  if target.exists():
    return target
  cache.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(dir=cache) as tmp:
    built = Path(tmp) / target.name
    command = [os.environ.get('CXX', 'g++'), '-O2', '-std=c++17', '-shared', '-fPIC', '-w',
               str(_SOURCE), f'-I{jax.ffi.include_dir()}', f'-I{include}',
               f'-L{library.parent}', '-l:libdnnl.so.3', '-o', str(built)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
      raise RuntimeError(f'{command[0]} failed: {result.stderr.strip().splitlines()[-1:]}')
    built.rename(target)  # atomic: concurrent builders each rename a complete file
  return target


@functools.cache
def load() -> bool:
  """Builds (once per cache), loads and registers the FFI handlers; returns whether oneDNN
  convolutions are available. Logs the reason once when they are not."""
  if os.environ.get('GEN_JAX_ONEDNN', '1') == '0':
    return False
  try:
    library, include = _library_paths()
    # libgomp's default keeps its threads spinning after each conv, taking the cores from
    # XLA's own threads; it reads this when it loads, with libdnnl.
    os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
    ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
    handlers = ctypes.CDLL(str(_build(library, include)))
  except (OSError, RuntimeError, importlib.metadata.PackageNotFoundError) as e:
    logging.warning('oneDNN convolutions unavailable, using XLA\'s: %s', e)
    return False
  for target in _TARGETS.values():
    jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(handlers, target)),
                                platform='cpu')
  return True


def _call(part: str, a: jax.Array, b: jax.Array, shape: Sequence[int], strides: tuple[int, int],
          padding: Padding) -> jax.Array:
  """One FFI handler on (a, b) -> an f32 array of `shape`."""
  call = jax.ffi.ffi_call(_TARGETS[part], jax.ShapeDtypeStruct(tuple(shape), jnp.float32),
                          vmap_method='sequential')
  out = call(a, b, strides=np.array(strides, np.int64),
             padding_lo=np.array([p[0] for p in padding], np.int64),
             padding_hi=np.array([p[1] for p in padding], np.int64))
  return vary_like(vary_like(out, a), b)  # inside shard_map: per-device like its operands


def _output_shape(x_shape, kernel_shape, strides, padding) -> tuple[int, ...]:
  n, h, w, _ = x_shape
  kh, kw, _, o = kernel_shape
  (top, bottom), (left, right) = padding
  return (n, (h + top + bottom - kh) // strides[0] + 1, (w + left + right - kw) // strides[1] + 1,
          o)


def forward_flops(x_shape: Sequence[int], kernel_shape: Sequence[int], strides: Sequence[int],
                  padding: Padding) -> int:
  """2 x the multiply-adds of the conv of x [N, H, W, C] with kernel [KH, KW, C, O]."""
  n, oh, ow, o = _output_shape(x_shape, kernel_shape, strides, padding)
  return 2 * n * oh * ow * o * math.prod(kernel_shape[:3])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _forward(x, kernel, strides, padding):
  return _call('forward', x, kernel, _output_shape(x.shape, kernel.shape, strides, padding),
               strides, padding)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _input_grad(dy, kernel, strides, padding, x_shape):
  return _call('input_grad', dy, kernel, x_shape, strides, padding)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _kernel_grad(x, dy, strides, padding, kernel_shape):
  return _call('kernel_grad', x, dy, kernel_shape, strides, padding)


# Each op is bilinear; <forward(x, k), dy> = <x, input_grad(dy, k)> = <k, kernel_grad(x, dy)>
# gives every cotangent of every op as one of the three.
_forward.defvjp(
    lambda x, k, s, p: (_forward(x, k, s, p), (x, k)),
    lambda s, p, res, g: (_input_grad(g, res[1], s, p, res[0].shape),
                          _kernel_grad(res[0], g, s, p, res[1].shape)))
_input_grad.defvjp(
    lambda dy, k, s, p, xs: (_input_grad(dy, k, s, p, xs), (dy, k)),
    lambda s, p, xs, res, g: (_forward(g, res[1], s, p), _kernel_grad(g, res[0], s, p,
                                                                      res[1].shape)))
_kernel_grad.defvjp(
    lambda x, dy, s, p, ks: (_kernel_grad(x, dy, s, p, ks), (x, dy)),
    lambda s, p, ks, res, g: (_input_grad(res[1], g, s, p, res[0].shape),
                              _forward(res[0], g, s, p)))


def conv(x: jax.Array, kernel: jax.Array, strides: Sequence[int] = (1, 1),
         padding: str | Padding = 'SAME') -> jax.Array:
  """`lax.conv_general_dilated(x, kernel, strides, padding)` for x [N, H, W, C] and kernel
  [KH, KW, C, O]: [N, OH, OW, O], by oneDNN where `load()` succeeded, the default backend is
  the CPU, both are float32 and the forward pass has `MIN_FLOPS` or more, else by XLA."""
  strides = tuple(int(s) for s in strides)
  if isinstance(padding, str):
    padding = tuple(lax.padtype_to_pads(x.shape[1:3], kernel.shape[:2], strides, padding))
  padding = tuple((int(lo), int(hi)) for lo, hi in padding)
  if (x.dtype == kernel.dtype == jnp.float32 and not _xla_only and jax.default_backend() == 'cpu'
      and forward_flops(x.shape, kernel.shape, strides, padding) >= MIN_FLOPS and load()):
    return _forward(vary_like(x, kernel), vary_like(kernel, x), strides, padding)
  return lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=_DIMS)


@contextlib.contextmanager
def xla_only():
  """Within it, `conv` traces to XLA's convolution (e.g. to get XLA's FLOP count of a program,
  which counts no FFI calls). Functions jitted and traced inside keep that choice."""
  global _xla_only
  previous, _xla_only = _xla_only, True
  try:
    yield
  finally:
    _xla_only = previous


def calls_in(lowered_text: str) -> int:
  """The number of oneDNN convolution calls in a lowered program's (StableHLO) text, each
  loop body counted once."""
  return sum(lowered_text.count(f'custom_call @{target}(') for target in _TARGETS.values())
