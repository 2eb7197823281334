"""Conv, ConvTranspose, Dense, Upsample, Downsample and dropout by example id.

`Conv`, `ConvTranspose` and `Dense` are flax's layers (same fields, variables, initialisers
and outputs); `Upsample` / `Downsample` are the resampling layers of Ho et al.'s diffusion_tf.
Each computes its plain flax / lax form, or, when the run's kernels are the CPU's
(`gen_jax.nn.kernels`) and the CPU kernels cover its arguments (float32, NHWC, no dilation or
groups), the same function by `gen_jax.nn.cpu`.
"""

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax import lax

from gen_jax.nn import kernels
from gen_jax.nn.cpu import convs, norms

_DIMS = ('NHWC', 'HWIO', 'NHWC')


def _float32(*arrays_or_dtypes) -> bool:
  return all(a is None or jnp.dtype(getattr(a, 'dtype', a)) == jnp.float32
             for a in arrays_or_dtypes)


def _pair(value: int | Sequence[int] | None) -> tuple[int, ...]:
  if value is None:
    return (1, 1)
  return (value, value) if isinstance(value, int) else tuple(value)


def _cpu_conv_covers(module: nn.Conv, x: jax.Array) -> bool:
  """Whether the CPU kernels compute `module` (an nn.Conv or nn.ConvTranspose) on x."""
  return (kernels.cpu() and x.ndim == 4 and _float32(x, module.dtype, module.param_dtype)
          and module.padding in ('SAME', 'VALID') and module.precision is None
          and _pair(module.kernel_dilation) == (1, 1)
          and getattr(module, 'mask', None) is None
          and _pair(getattr(module, 'input_dilation', 1)) == (1, 1)
          and getattr(module, 'feature_group_count', 1) == 1
          and not getattr(module, 'transpose_kernel', False)
          and all(getattr(module, name, None) is None for name in (
              'conv_general_dilated', 'conv_general_dilated_cls', 'preferred_element_type')))


def _add_bias(module: nn.Module, y: jax.Array, features: int) -> jax.Array:
  if not module.use_bias:
    return y
  return norms.add_bias(y, module.param('bias', module.bias_init, (features,),
                                        module.param_dtype))


class Conv(nn.Conv):
  """`flax.linen.Conv`: x [B, H, W, C] -> [B, H', W', features]."""

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    if not _cpu_conv_covers(self, inputs):
      return super().__call__(inputs)
    kernel = self.param('kernel', self.kernel_init,
                        (*_pair(self.kernel_size), inputs.shape[-1], self.features),
                        self.param_dtype)
    y = convs.conv(inputs, kernel, _pair(self.strides), self.padding)
    return _add_bias(self, y, self.features)


class ConvTranspose(nn.ConvTranspose):
  """`flax.linen.ConvTranspose`: x [B, H, W, C] -> [B, s H, s W, features] ('SAME')."""

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    if not (_cpu_conv_covers(self, inputs) and _pair(self.kernel_size) == (4, 4)
            and _pair(self.strides) == (2, 2) and self.padding == 'SAME'):
      return super().__call__(inputs)
    kernel = self.param('kernel', self.kernel_init, (4, 4, inputs.shape[-1], self.features),
                        self.param_dtype)
    return _add_bias(self, convs.conv_up(inputs, kernel), self.features)


class Dense(nn.Dense):
  """`flax.linen.Dense`: x [..., C] -> [..., features]."""

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    if not (kernels.cpu() and _float32(inputs, self.dtype, self.param_dtype)
            and self.precision is None and self.dot_general is None
            and self.dot_general_cls is None):
      return super().__call__(inputs)
    kernel = self.param('kernel', self.kernel_init, (inputs.shape[-1], self.features),
                        self.param_dtype)
    y = convs.dense(inputs, norms.vary_like(kernel, inputs))
    return _add_bias(self, y, self.features)


def upsample_nearest(x: jax.Array) -> jax.Array:
  """Nearest-neighbour x2: [B, H, W, C] -> [B, 2H, 2W, C]."""
  b, h, w, c = x.shape
  return jnp.broadcast_to(x[:, :, None, :, None], (b, h, 2, w, 2, c)).reshape(
      b, 2 * h, 2 * w, c)


class _Resample(nn.Module):
  """A 3x3 'SAME' conv's variables (`nn.Conv`'s: `kernel` [3, 3, C, F], `bias` [F])."""
  features: int | None = None  # None: as many as the input has
  with_conv: bool = True
  use_bias: bool = True
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
  bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()
  param_dtype: jnp.dtype = jnp.float32

  def conv_variables(self, x: jax.Array) -> tuple[jax.Array, jax.Array | None]:
    features = self.features or x.shape[-1]
    kernel = self.param('kernel', self.kernel_init, (3, 3, x.shape[-1], features),
                        self.param_dtype)
    bias = (self.param('bias', self.bias_init, (features,), self.param_dtype)
            if self.use_bias else None)
    return kernel, bias

  def conv(self, x: jax.Array, strides: tuple[int, int]) -> jax.Array:
    """The plain 3x3 'SAME' conv of x with this layer's variables."""
    kernel, bias = self.conv_variables(x)
    y = lax.conv_general_dilated(x, kernel, strides, 'SAME', dimension_numbers=_DIMS)
    return y if bias is None else y + bias

  def cpu_covers(self, x: jax.Array) -> bool:
    return kernels.cpu() and x.ndim == 4 and _float32(x, self.param_dtype)

  def cpu_conv(self, x: jax.Array, conv: Callable[[jax.Array, jax.Array], jax.Array]
               ) -> jax.Array:
    """conv(x, kernel) plus the bias, by the CPU kernels."""
    kernel, bias = self.conv_variables(x)
    y = conv(x, kernel)
    return y if bias is None else norms.add_bias(y, bias)


class Upsample(_Resample):
  """diffusion_tf's `upsample`: nearest-neighbour x2, then (`with_conv`) a 3x3 conv to
  `features` channels: [B, H, W, C] -> [B, 2H, 2W, features or C]."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if not self.with_conv:
      return upsample_nearest(x)
    if not self.cpu_covers(x):
      return self.conv(upsample_nearest(x), (1, 1))
    return self.cpu_conv(x, convs.upsample_conv3x3)


class Downsample(_Resample):
  """diffusion_tf's `downsample`: a 3x3 stride-2 conv to `features` channels (`with_conv`),
  else 2x2 average pooling: [B, H, W, C] -> [B, H/2, W/2, features or C]."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if not self.cpu_covers(x):
      if not self.with_conv:
        return nn.avg_pool(x, (2, 2), (2, 2))
      return self.conv(x, (2, 2))
    if not self.with_conv:
      return convs.avg_pool2(x)
    return self.cpu_conv(x, lambda x, kernel: convs.conv(x, kernel, (2, 2), 'SAME'))


def example_dropout(x: jax.Array, rate: float, key: jax.Array, ids: jax.Array) -> jax.Array:
  """Dropout whose mask for each example comes from fold_in(key, its id) [B]: the masks do not
  depend on how the batch is split over devices. Returns x [B, ...] masked and rescaled.

  Each 32-bit threefry word gives two 16-bit uniforms (half of `jax.random.bernoulli`'s
  random bits), so the drop probability is `rate` rounded to a multiple of 2^-16
  (0.1 -> 0.100006), and kept values are scaled by the exact inverse of the rounded keep
  probability.
  """
  size = math.prod(x.shape[1:])
  keep_count = round((1.0 - rate) * 2 ** 16)
  if not 0 < keep_count <= 2 ** 16:
    raise ValueError(f'dropout rate {rate}: expected a rate in [0, 1) that rounds to at '
                     'most 1 - 2^-16')

  def keep(i: jax.Array) -> jax.Array:
    words = jax.random.bits(jax.random.fold_in(key, i), (-(-size // 2),), jnp.uint32)
    halves = jnp.stack([words >> 16, words & 0xFFFF], axis=-1).reshape(-1)[:size]
    return (halves < keep_count).reshape(x.shape[1:])

  return jnp.where(jax.vmap(keep)(ids), x * (2 ** 16 / keep_count), 0.0)
