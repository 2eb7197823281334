"""Conv, ConvTranspose, Dense, Upsample, Downsample and dropout by example id.

`Conv`, `ConvTranspose` and `Dense` are flax's layers (same fields, variables, initialisers
and outputs); `Upsample` / `Downsample` are the resampling layers of Ho et al.'s diffusion_tf.
Each computes its plain flax / lax form, or, when the run's kernels are the CPU's
(`gen_jax.nn.kernels`) and the CPU kernels cover its arguments (float32, NHWC, no dilation or
groups), the same function by `gen_jax.nn.cpu`. A layer that names no `dtype` computes in the
run's (`kernels.compute_dtype`), its float32 parameters cast for the computation.
"""

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax.linen.dtypes import promote_dtype
from jax import lax

from gen_jax.nn import kernels
from gen_jax.nn.cpu import convs, norms

_DIMS = ('NHWC', 'HWIO', 'NHWC')


def promote(*args: jax.Array | None, dtype: jnp.dtype | None = None,
            inexact: bool = True) -> list[jax.Array | None]:
  """flax's `promote_dtype`: `args` cast to `dtype`, or, if None, to the run's compute dtype
  where it is not float32 (else to their common dtype, as flax does)."""
  if dtype is None and kernels.compute_dtype() != jnp.float32:
    dtype = kernels.compute_dtype()
  return promote_dtype(*args, dtype=dtype, inexact=inexact)


def _pair(value: int | Sequence[int] | None) -> tuple[int, ...]:
  if value is None:
    return (1, 1)
  return (value, value) if isinstance(value, int) else tuple(value)


def _covers(module: nn.Module, x: jax.Array) -> bool:
  """Whether this library computes `module` (a Conv, ConvTranspose or Dense) on x itself:
  the plain case, with no dtype, precision, dilation, groups, mask or custom dot of its own."""
  conv = isinstance(module, nn.Conv | nn.ConvTranspose)
  return ((x.ndim == 4 or not conv) and module.dtype is None
          and jnp.dtype(module.param_dtype) == jnp.float32 and module.precision is None
          and (not conv or (module.padding in ('SAME', 'VALID')
                            and _pair(module.kernel_dilation) == (1, 1)))
          and getattr(module, 'mask', None) is None
          and _pair(getattr(module, 'input_dilation', 1)) == (1, 1)
          and getattr(module, 'feature_group_count', 1) == 1
          and not getattr(module, 'transpose_kernel', False)
          and all(getattr(module, name, None) is None for name in (
              'conv_general_dilated', 'conv_general_dilated_cls', 'preferred_element_type',
              'dot_general', 'dot_general_cls')))


def _cpu(*arrays_or_dtypes: jax.Array | jnp.dtype) -> bool:
  """Whether the CPU kernels compute a layer on these arrays (or dtypes): float32 only."""
  return kernels.cpu() and all(jnp.dtype(getattr(a, 'dtype', a)) == jnp.float32
                               for a in arrays_or_dtypes)


@jax.custom_vjp
def _add_bias_f32_grad(y: jax.Array, bias: jax.Array) -> jax.Array:
  return y + bias.astype(y.dtype)


def _add_bias_fwd(y, bias):
  return _add_bias_f32_grad(y, bias), None


def _add_bias_bwd(_, dy):
  # Autodiff would sum a bfloat16 cotangent in bfloat16, and XLA:CPU accumulates such a sum
  # over several axes in bfloat16: the bias gradient stalls once the sum passes 2**8.
  return dy, jnp.sum(dy, axis=tuple(range(dy.ndim - 1)), dtype=jnp.float32)


_add_bias_f32_grad.defvjp(_add_bias_fwd, _add_bias_bwd)


def add_bias(y: jax.Array, bias: jax.Array | None) -> jax.Array:
  """y [..., C] + bias [C] (float32) in y's dtype; the bias gradient is summed in float32."""
  if bias is None:
    return y
  if _cpu(y, bias):
    return norms.add_bias(y, bias)
  if y.dtype == bias.dtype:
    return y + bias
  return _add_bias_f32_grad(y, norms.vary_like(bias, y))


def _bias(module: nn.Module, features: int) -> jax.Array | None:
  if not module.use_bias:
    return None
  return module.param('bias', module.bias_init, (features,), module.param_dtype)


class Conv(nn.Conv):
  """`flax.linen.Conv`: x [B, H, W, C] -> [B, H', W', features]."""
  promote_dtype: Callable = promote

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    if not _covers(self, inputs):
      return super().__call__(inputs)
    kernel = self.param('kernel', self.kernel_init,
                        (*_pair(self.kernel_size), inputs.shape[-1], self.features),
                        self.param_dtype)
    strides = _pair(self.strides)
    if _cpu(inputs, kernel):
      y = convs.conv(inputs, kernel, strides, self.padding)
    else:
      x, kernel = promote(inputs, kernel)
      y = lax.conv_general_dilated(x, kernel, strides, self.padding, dimension_numbers=_DIMS)
    return add_bias(y, _bias(self, self.features))


class ConvTranspose(nn.ConvTranspose):
  """`flax.linen.ConvTranspose`: x [B, H, W, C] -> [B, s H, s W, features] ('SAME')."""
  promote_dtype: Callable = promote

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    if not _covers(self, inputs):
      return super().__call__(inputs)
    size, strides = _pair(self.kernel_size), _pair(self.strides)
    kernel = self.param('kernel', self.kernel_init, (*size, inputs.shape[-1], self.features),
                        self.param_dtype)
    if _cpu(inputs, kernel) and size == (4, 4) and strides == (2, 2) and self.padding == 'SAME':
      y = convs.conv_up(inputs, kernel)
    else:
      x, kernel = promote(inputs, kernel)
      y = lax.conv_transpose(x, kernel, strides, self.padding, dimension_numbers=_DIMS)
    return add_bias(y, _bias(self, self.features))


class Dense(nn.Dense):
  """`flax.linen.Dense`: x [..., C] -> [..., features]."""
  promote_dtype: Callable = promote

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    if not _covers(self, inputs):
      return super().__call__(inputs)
    kernel = self.param('kernel', self.kernel_init, (inputs.shape[-1], self.features),
                        self.param_dtype)
    if _cpu(inputs, kernel):
      y = convs.dense(inputs, norms.vary_like(kernel, inputs))
    else:
      x, kernel = promote(inputs, kernel)
      y = lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))
    return add_bias(y, _bias(self, self.features))


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
    return kernel, _bias(self, features)

  def conv(self, x: jax.Array, strides: tuple[int, int]) -> jax.Array:
    """The plain 3x3 'SAME' conv of x with this layer's variables."""
    kernel, bias = self.conv_variables(x)
    x, kernel = promote(x, kernel)
    y = lax.conv_general_dilated(x, kernel, strides, 'SAME', dimension_numbers=_DIMS)
    return add_bias(y, bias)

  def cpu_conv(self, x: jax.Array, conv: Callable[[jax.Array, jax.Array], jax.Array]
               ) -> jax.Array:
    """conv(x, kernel) plus the bias, by the CPU kernels."""
    kernel, bias = self.conv_variables(x)
    return add_bias(conv(x, kernel), bias)


class Upsample(_Resample):
  """diffusion_tf's `upsample`: nearest-neighbour x2, then (`with_conv`) a 3x3 conv to
  `features` channels: [B, H, W, C] -> [B, 2H, 2W, features or C]."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if not self.with_conv:
      return upsample_nearest(x)
    if not _cpu(x, self.param_dtype):
      return self.conv(upsample_nearest(x), (1, 1))
    return self.cpu_conv(x, convs.upsample_conv3x3)


class Downsample(_Resample):
  """diffusion_tf's `downsample`: a 3x3 stride-2 conv to `features` channels (`with_conv`),
  else 2x2 average pooling: [B, H, W, C] -> [B, H/2, W/2, features or C]."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if not _cpu(x, self.param_dtype):
      if not self.with_conv:
        return nn.avg_pool(x, (2, 2), (2, 2))
      return self.conv(x, (2, 2))
    if not self.with_conv:
      return convs.avg_pool2(x)
    return self.cpu_conv(x, lambda x, kernel: convs.conv(x, kernel, (2, 2), 'SAME'))


def checkpointed(module: type[nn.Module], enabled: bool,
                 static_argnums: tuple[int, ...] = ()) -> type[nn.Module]:
  """`module`, or, if `enabled`, its rematerialized form (`nn.remat`: the backward pass
  recomputes the module's activations instead of keeping them) under the same class name,
  so the parameter tree does not change. `static_argnums` count `self` as 0."""
  if not enabled:
    return module
  remat = nn.remat(module, static_argnums=static_argnums)
  remat.__name__ = remat.__qualname__ = module.__name__
  return remat


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
