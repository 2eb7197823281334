"""Per-channel operations for XLA:CPU whose sums over the batch are matrix-vector products.

XLA:CPU turns a sum over the leading axes of an [N, H, W, C] activation into a slow
reduce-window, several times slower than `ones @ x.reshape(-1, C)`. Autodiff adds one such
sum for every per-channel parameter (a bias, a norm's scale and shift), and the norms need
more for their statistics. So `add_bias`, `batch_norm` and `group_norm` have custom VJPs
that sum with (batched) matrix-vector products; the norms compute flax's fast variance
E[x^2] - E[x]^2. `group_norm` can also apply the SiLU that follows it (`GroupNormSiLU`), so
the pair saves only its input and statistics for the backward pass.

On other backends these dots would be worse than XLA's fused reductions (and at DEFAULT
precision a TPU rounds their operands to bf16), which is why only `gen_jax.nn` calls them,
and only when the run's kernels are the CPU's.
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax


def channel_sum(x: jax.Array, y: jax.Array | None = None) -> jax.Array:
  """Sum over all axes but the last of x [..., C] (or of x * y): [C]."""
  if y is not None:
    x = x * y  # an einsum 'mc,mc->c' would transpose both operands first
  x2 = x.reshape(-1, x.shape[-1])
  return jnp.ones(x2.shape[0], x.dtype) @ x2


def vary_like(p: jax.Array, x: jax.Array) -> jax.Array:
  """p marked as varying over the mesh axes x varies over (inside shard_map), so that the
  custom VJPs below may return per-device cotangents that shard_map then sums."""
  missing = jax.typeof(x).manual_axis_type.varying - jax.typeof(p).manual_axis_type.varying
  return lax.pcast(p, tuple(sorted(missing)), to='varying') if missing else p


@jax.custom_vjp
def _add_bias(x, bias):
  return x + bias


def _add_bias_fwd(x, bias):
  return x + bias, None


def _add_bias_bwd(_, dy):
  return dy, channel_sum(dy)


_add_bias.defvjp(_add_bias_fwd, _add_bias_bwd)


def add_bias(x: jax.Array, bias: jax.Array) -> jax.Array:
  """x [..., C] + bias [C]."""
  return _add_bias(x, vary_like(bias, x))


def _psum(x: Any, axis_name: str | None) -> Any:
  return x if axis_name is None else lax.psum(x, axis_name)


def _moments(x: jax.Array, axis_name: str | None) -> tuple[jax.Array, jax.Array]:
  count = _psum(x.size // x.shape[-1], axis_name)
  s1, s2 = _psum((channel_sum(x), channel_sum(x, x)), axis_name)
  mean = s1 / count
  return mean, jnp.maximum(0.0, s2 / count - mean * mean)


def _full_size(like: jax.Array, divisor: jax.Array) -> jax.Array:
  """divisor broadcast to like's shape as `like * 0 + divisor`, for the norms' backward passes
  to divide by, so that XLA:CPU computes their input gradient once.

  XLA:CPU copies a cheap elementwise chain into each of its consumers. One consumer of a
  norm's input gradient is the layout transpose that feeds a conv kernel gradient, which then
  recomputed the whole backward pass with strided reads, several times slower. A division
  is expensive, so XLA does not copy it, but it turns a division by a broadcast [C] into a
  multiply; it cannot fold `like * 0` (IEEE: inf * 0 is NaN), so this divisor stays
  full-size. Same values wherever `like` is finite.
  """
  return like * 0 + divisor


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def batch_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float,
               axis_name: str | None) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
  """Training-mode BatchNorm of x [..., C] over all axes but the last (and over `axis_name`).

  Returns (y [..., C], (mean [C], var [C])); the batch moments carry no gradient.
  """
  return _batch_norm_fwd(x, scale, bias, epsilon, axis_name)[0]


def _batch_norm_fwd(x, scale, bias, epsilon, axis_name):
  mean, var = _moments(x, axis_name)
  inv = lax.rsqrt(var + epsilon)
  y = (x - mean) * (inv * scale) + bias
  return (y, (mean, var)), (x, mean, inv, scale)


def _batch_norm_bwd(epsilon, axis_name, residuals, cotangents):
  del epsilon
  x, mean, inv, scale = residuals
  dy, _ = cotangents
  count = _psum(x.size // x.shape[-1], axis_name)
  d_bias = channel_sum(dy)
  d_scale = (channel_sum(dy, x) - mean * d_bias) * inv  # sum of dy * x_hat
  # Global sums: the replicated parameters' cotangents are the whole batch's.
  d_bias, d_scale = _psum((d_bias, d_scale), axis_name)
  dx = (dy - d_bias / count - (x - mean) * (inv * d_scale / count)) / _full_size(
      x, 1 / (inv * scale))
  return dx, d_scale, d_bias


batch_norm.defvjp(_batch_norm_fwd, _batch_norm_bwd)


def _group_means(sums: jax.Array, num_groups: int, positions: int) -> jax.Array:
  """Per-example channel sums over `positions` elements each [B, C] -> each group's mean,
  repeated for each of the group's channels: [B, C]."""
  b, c = sums.shape
  means = sums.reshape(b, num_groups, c // num_groups).sum(-1) / (positions * (c // num_groups))
  return jnp.repeat(means, c // num_groups, axis=1)


def _per_example_sums(flat: jax.Array, y: jax.Array | None = None) -> jax.Array:
  """Sums of flat [B, M, C] (or of flat * y) over M, as a batched matrix-vector product: [B, C]."""
  if y is not None:
    flat = flat * y
  return (jnp.ones((flat.shape[0], 1, flat.shape[1]), flat.dtype) @ flat)[:, 0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def group_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, num_groups: int,
               epsilon: float, silu: bool) -> jax.Array:
  """GroupNorm of x [B, ..., C], then silu(y) if `silu`: per example, each group of
  C / num_groups channels normalized over the group and all other axes with
  var = E[x^2] - E[x]^2, then * scale [C] + bias [C]. Same shape as x.

  The custom VJP saves only x and the [B, C] statistics and recomputes the normalized x (and
  the SiLU) in the backward pass, whose four sums are two batched matrix-vector products.
  """
  return _group_norm_fwd(x, scale, bias, num_groups, epsilon, silu)[0]


def _group_norm_fwd(x, scale, bias, num_groups, epsilon, silu):
  flat = x.reshape(x.shape[0], -1, x.shape[-1])
  mean = _group_means(_per_example_sums(flat), num_groups, flat.shape[1])
  mean_sq = _group_means(_per_example_sums(flat, flat), num_groups, flat.shape[1])
  inv = lax.rsqrt(jnp.maximum(0.0, mean_sq - mean * mean) + epsilon)
  y = (flat - mean[:, None]) * (inv * scale)[:, None] + bias
  if silu:
    # silu as a division: XLA:CPU does not duplicate an expensive op into a consumer, so y
    # stays one buffer instead of being recomputed inside the slow transposes through which
    # conv kernel gradients read it.
    y = y / (1.0 + jnp.exp(-y))
  return y.reshape(x.shape), (x, scale, bias, mean, inv)


def _group_norm_bwd(num_groups, epsilon, silu, residuals, g):
  del epsilon
  x, scale, bias, mean, inv = residuals
  flat = x.reshape(x.shape[0], -1, x.shape[-1])
  g = g.reshape(flat.shape)
  normalized = (flat - mean[:, None]) * inv[:, None]
  if silu:  # silu'(y) = s (1 + y (1 - s)), s = sigmoid(y)
    y = normalized * scale + bias
    s = jax.nn.sigmoid(y)
    g = g * (s * (1.0 + y * (1.0 - s)))
  sum_g, sum_gn = _per_example_sums(g), _per_example_sums(g, normalized)
  mean_g = _group_means(sum_g * scale, num_groups, flat.shape[1])
  mean_gn = _group_means(sum_gn * scale, num_groups, flat.shape[1])
  dx = (g * scale - mean_g[:, None] - normalized * mean_gn[:, None]) / _full_size(
      flat, 1 / inv[:, None])
  return dx.reshape(x.shape), jnp.sum(sum_gn, 0), jnp.sum(sum_g, 0)


group_norm.defvjp(_group_norm_fwd, _group_norm_bwd)
