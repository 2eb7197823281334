"""BatchNorm, GroupNorm and GroupNorm followed by SiLU.

`BatchNorm` and `GroupNorm` are flax's layers (same fields, variables, names and outputs);
with the run's CPU kernels (`gen_jax.nn.kernels`) their common case (float32, normalized
over the last axis, scale and bias) is computed by `gen_jax.nn.cpu`'s custom VJPs instead.
Statistics are float32 on both paths (flax's `force_float32_reductions`); a norm that names
no `dtype` returns the run's compute dtype (`gen_jax.nn.kernels`).
"""

import jax
import jax.numpy as jnp
from flax import linen as nn

from gen_jax.nn import kernels
from gen_jax.nn.cpu import norms as cpu_norms


def _float32(x: jax.Array, module: nn.Module) -> bool:
  return x.dtype == jnp.float32 and all(
      d is None or jnp.dtype(d) == jnp.float32 for d in (module.dtype, module.param_dtype))


def _in_compute_dtype(module: nn.Module, y: jax.Array) -> jax.Array:
  return y if module.dtype is not None else y.astype(kernels.compute_dtype())


def _scale_and_bias(module: nn.Module, features: int) -> tuple[jax.Array, jax.Array]:
  scale = module.param('scale', module.scale_init, (features,), module.param_dtype)
  bias = module.param('bias', module.bias_init, (features,), module.param_dtype)
  return scale, bias


class BatchNorm(nn.BatchNorm):
  """`flax.linen.BatchNorm`. In training the statistics are the batch's, over `axis_name`
  too when given (the global batch inside `shard_map`), and the running averages are
  updated: ra = momentum * ra + (1 - momentum) * batch statistic."""

  @nn.compact
  def __call__(self, x: jax.Array, use_running_average: bool | None = None, *,
               mask: jax.Array | None = None) -> jax.Array:
    running = nn.merge_param('use_running_average', self.use_running_average,
                             use_running_average)
    if (running or mask is not None or not kernels.cpu() or not _float32(x, self)
        or self.axis not in (-1, x.ndim - 1) or not (self.use_scale and self.use_bias)
        or self.axis_index_groups is not None or not self.use_fast_variance):
      return _in_compute_dtype(self, super().__call__(x, use_running_average, mask=mask))
    features = x.shape[-1]
    ra_mean = self.variable('batch_stats', 'mean', jnp.zeros, (features,), jnp.float32)
    ra_var = self.variable('batch_stats', 'var', jnp.ones, (features,), jnp.float32)
    scale, bias = _scale_and_bias(self, features)
    # flax takes no cross-device statistics while initialising (outside any mesh).
    axis_name = None if self.is_initializing() else self.axis_name
    if axis_name is None:  # per-device statistics: per-device parameter cotangents
      scale, bias = cpu_norms.vary_like(scale, x), cpu_norms.vary_like(bias, x)
    y, (mean, var) = cpu_norms.batch_norm(x, scale, bias, self.epsilon, axis_name)
    if not self.is_initializing():
      ra_mean.value = self.momentum * ra_mean.value + (1.0 - self.momentum) * mean
      ra_var.value = self.momentum * ra_var.value + (1.0 - self.momentum) * var
    return y


def _cpu_group_norm_covers(module: nn.GroupNorm, x: jax.Array) -> bool:
  return (kernels.cpu() and x.ndim >= 2 and _float32(x, module)
          and module.num_groups is not None and module.group_size is None
          and module.use_scale and module.use_bias and module.reduction_axes is None
          and module.axis_name is None and module.use_fast_variance)


def _cpu_group_norm(module: nn.GroupNorm, x: jax.Array, silu: bool) -> jax.Array:
  features = x.shape[-1]
  if features % module.num_groups:
    raise ValueError(f'GroupNorm: {features} channels do not split into '
                     f'{module.num_groups} groups')
  scale, bias = _scale_and_bias(module, features)
  return cpu_norms.group_norm(x, cpu_norms.vary_like(scale, x), cpu_norms.vary_like(bias, x),
                              module.num_groups, module.epsilon, silu)


class GroupNorm(nn.GroupNorm):
  """`flax.linen.GroupNorm` over the last axis of x [B, ..., C]: each example's channels in
  `num_groups` groups, normalized over the group and all other axes."""

  @nn.compact
  def __call__(self, x: jax.Array, *, mask: jax.Array | None = None) -> jax.Array:
    if mask is not None or not _cpu_group_norm_covers(self, x):
      return _in_compute_dtype(self, super().__call__(x, mask=mask))
    return _cpu_group_norm(self, x, silu=False)


class GroupNormSiLU(nn.GroupNorm):
  """silu(`flax.linen.GroupNorm`(x)), one layer with the GroupNorm's variables: the pair that
  opens every residual branch of the DDPM UNet. The CPU kernels fuse the two, saving only
  x and the statistics for the backward pass."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if not _cpu_group_norm_covers(self, x):
      return nn.silu(_in_compute_dtype(self, super().__call__(x)))
    return _cpu_group_norm(self, x, silu=True)
