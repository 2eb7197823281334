"""Convolutions and dense layers as XLA:CPU runs them fastest, each the same function as
its plain form in `gen_jax.nn` (float rounding apart).

XLA:CPU does not hand strided and lhs-dilated ("transposed") convolutions to its fast
kernels, forward or backward. A 4x4 stride-2 'SAME' conv and transposed conv can also be
computed with stride-1 convolutions only:

* stride-2 conv: pad by 1, space-to-depth by 2, then a 2x2 stride-1 conv over 4x the
  channels whose kernel is the 4x4 kernel regrouped by tap parity;
* stride-2 transposed conv: one 2x2 stride-1 conv of the 1-padded input into 4x the
  output channels (output phase (r, c) uses taps (2i + r, 2j + c)), then depth-to-space.

`conv_down` / `conv_up` are custom VJPs that compute each of the forward pass, the input
gradient and the kernel gradient with whichever formulation XLA:CPU runs fastest
(`benchmarks/conv_parts.py` measures each part): XLA's strided conv forward (from 16 input
channels) and for its kernel gradient, which is also the fast input gradient of the
transposed conv; the stride-1 form everywhere else but for the kernel gradient of the
transposed conv, whose fastest form is the strided conv's kernel gradient with input and
cotangent swapped (`conv_up_kernel_grad`).

`upsample_conv3x3` is nearest x2 upsampling then a 3x3 conv, computed as one sub-pixel conv
at the low resolution. The stride-1 convolutions go to oneDNN (`onednn.conv`).
"""

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gen_jax.nn.cpu import onednn
from gen_jax.nn.cpu.norms import vary_like

_DIMS = ('NHWC', 'HWIO', 'NHWC')


def _conv(x: jax.Array, kernel: jax.Array, padding) -> jax.Array:
  return onednn.conv(x, kernel, (1, 1), padding)


def space_to_depth(x: jax.Array) -> jax.Array:
  """[N, 2H, 2W, C] -> [N, H, W, 4C], channels ordered (row parity, column parity, C)."""
  n, h, w, c = x.shape
  x = x.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(n, h // 2, w // 2, 4 * c)


def depth_to_space(x: jax.Array) -> jax.Array:
  """[N, H, W, 4C] (channels ordered (row parity, column parity, C)) -> [N, 2H, 2W, C]."""
  n, h, w, c4 = x.shape
  x = x.reshape(n, h, w, 2, 2, c4 // 4).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(n, 2 * h, 2 * w, c4 // 4)


def _by_parity(kernel: jax.Array) -> jax.Array:
  """[4, 4, I, O] -> [2 (i), 2 (j), 2 (row parity), 2 (column parity), I, O]: tap (2i+r, 2j+c)."""
  return kernel.reshape(2, 2, 2, 2, *kernel.shape[2:]).transpose(0, 2, 1, 3, 4, 5)


def _check_even(x: jax.Array) -> None:
  if x.shape[1] % 2 or x.shape[2] % 2:
    raise ValueError(f'the stride-1 conv formulation needs even height and width, got '
                     f'{x.shape[1:3]}')


def conv_down_stride1(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Equals a stride-2 'SAME' conv with the 4x4 `kernel` on even-sized `x`: [N, H/2, W/2, O]."""
  _check_even(x)
  _, _, i, o = kernel.shape
  k = _by_parity(kernel).reshape(2, 2, 4 * i, o)
  x = space_to_depth(jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))))
  return _conv(x, k, 'VALID')


def conv_up_stride1(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Equals flax's stride-2 'SAME' transposed conv with the 4x4 `kernel`: [N, 2H, 2W, O]."""
  return _sub_pixel_conv(x, _by_parity(kernel).transpose(0, 1, 4, 2, 3, 5))


def _sub_pixel_conv(x: jax.Array, phase_kernel: jax.Array) -> jax.Array:
  """x [N, H, W, I] and a [2, 2, I, 2, 2, O] kernel -> [N, 2H, 2W, O]: output pixel
  (2i + r, 2j + c) is the 2x2 window of the 1-padded x at (i + r, j + c) times
  phase_kernel[:, :, :, r, c]. All four phases are one stride-1 conv into 4O channels."""
  _, h, w, _ = x.shape
  _, _, i, _, _, o = phase_kernel.shape
  y = _conv(jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))), phase_kernel.reshape(2, 2, i, 4 * o),
            'VALID')  # [N, H+1, W+1, 4O]
  y = y.reshape(*y.shape[:3], 2, 2, o)
  phases = jnp.stack([jnp.stack([y[:, r:r + h, c:c + w, r, c] for c in (0, 1)], axis=3)
                      for r in (0, 1)], axis=3)  # [N, H, W, 2, 2, O]
  return depth_to_space(phases.reshape(*phases.shape[:3], 4 * o))


# Nearest x2 then a 3x3 conv: output row 2i + r sees input rows (i - 1, i) with the kernel's
# rows (0, 1 + 2) when r = 0 and rows (i, i + 1) with (0 + 1, 2) when r = 1; columns alike.
_UPSAMPLE_TAPS = np.array([[[1, 0, 0], [0, 1, 1]], [[1, 1, 0], [0, 0, 1]]], np.float32)


def upsample_conv3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Equals a 3x3 'SAME' conv of x upsampled x2 by nearest neighbour, with 2.25x fewer FLOPs
  and no upsampled copy: x [N, H, W, I], kernel [3, 3, I, O] -> [N, 2H, 2W, O]."""
  taps = jnp.asarray(_UPSAMPLE_TAPS, kernel.dtype)  # [phase, window position, kernel tap]
  return _sub_pixel_conv(x, jnp.einsum('rai,cbj,ijIO->abIrcO', taps, taps, kernel))


def conv_down_xla(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """`nn.Conv`'s stride-2 'SAME' conv with the 4x4 `kernel`: [N, H/2, W/2, O]."""
  return lax.conv_general_dilated(x, kernel, (2, 2), 'SAME', dimension_numbers=_DIMS)


def conv_up_xla(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """`nn.ConvTranspose`'s stride-2 'SAME' transposed conv with the 4x4 `kernel`: [N, 2H, 2W, O]."""
  return lax.conv_transpose(x, kernel, (2, 2), 'SAME', dimension_numbers=_DIMS)


def _kernel_grad_of(conv: Callable) -> Callable:
  """(x, kernel, dy) -> conv(x, kernel)'s cotangent for `kernel`, given dy for its output."""
  return lambda x, kernel, dy: jax.vjp(lambda kernel: conv(x, kernel), kernel)[1](dy)[0]


def conv_up_kernel_grad(x: jax.Array, kernel: jax.Array, dy: jax.Array) -> jax.Array:
  """The kernel cotangent of `conv_up_xla(x, kernel)` for dy [N, 2H, 2W, O]: [4, 4, I, O].

  The transposed conv is linear in x, and its adjoint in x is the stride-2 conv of dy with
  the flipped, I/O-swapped kernel. So each kernel tap's cotangent is a sum of x times dy over
  the same pairs of positions as the kernel cotangent of that strided conv at input dy and
  output cotangent x, which XLA:CPU computes faster than the stride-1 form's and much faster
  than its own transposed conv's.
  """
  swapped = kernel[::-1, ::-1].transpose(0, 1, 3, 2)  # only its shape and type are used
  return _kernel_grad_of(conv_down_xla)(dy, swapped, x)[::-1, ::-1].transpose(0, 1, 3, 2)


def _per_part(forward: Callable, input_grad: Callable, kernel_grad: Callable) -> Callable:
  """A conv (x, kernel) -> y computed by `forward`, whose input cotangent is that of
  `input_grad` and whose kernel cotangent is kernel_grad(x, kernel, dy): three
  implementations of the same function."""

  @jax.custom_vjp
  def conv(x, kernel):
    return forward(x, kernel)

  def conv_fwd(x, kernel):
    return forward(x, kernel), (x, kernel)

  def conv_bwd(residuals, dy):
    x, kernel = residuals
    dx = jax.vjp(lambda x: input_grad(x, kernel), x)[1](dy)[0]
    return dx, kernel_grad(x, kernel, dy)

  conv.defvjp(conv_fwd, conv_bwd)
  return conv


_DOWN_MIXED = {
    narrow: _per_part(conv_down_stride1 if narrow else conv_down_xla, conv_down_stride1,
                      _kernel_grad_of(conv_down_xla)) for narrow in (True, False)}
_UP_MIXED = _per_part(conv_up_stride1, conv_up_xla, conv_up_kernel_grad)
_MIN_XLA_DOWN_CHANNELS = 16  # below it, the stride-1 forward is faster (RGB / gray inputs)


def conv_down(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """`conv_down_xla` by the fastest formulation per part: [N, H/2, W/2, O]."""
  _check_even(x)
  return _DOWN_MIXED[kernel.shape[2] < _MIN_XLA_DOWN_CHANNELS](x, vary_like(kernel, x))


def conv_up(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """`conv_up_xla` by the fastest formulation per part: [N, 2H, 2W, O]."""
  return _UP_MIXED(x, vary_like(kernel, x))


def conv(x: jax.Array, kernel: jax.Array, strides: Sequence[int],
         padding: str | Sequence[tuple[int, int]]) -> jax.Array:
  """`lax.conv_general_dilated(x, kernel, strides, padding)` in NHWC / HWIO: [N, OH, OW, O].
  A 4x4 stride-2 'SAME' conv of even-sized x is `conv_down`; any other goes to oneDNN."""
  if (tuple(kernel.shape[:2]) == (4, 4) and tuple(strides) == (2, 2) and padding == 'SAME'
      and x.shape[1] % 2 == 0 and x.shape[2] % 2 == 0):
    return conv_down(x, kernel)
  return onednn.conv(x, kernel, strides, padding)


@jax.custom_vjp
def dense(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """x [..., I] @ kernel [I, O] -> [..., O], whose kernel gradient is computed as
  (dy^T x)^T: for x^T dy, XLA:CPU's layout assignment transposes the cotangent dy together
  with its whole fused producer (e.g. a GroupNorm backward), a slow copy
  (benchmarks/ab_step.py measures such changes)."""
  return lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))


def _dense_fwd(x, kernel):
  return dense(x, kernel), (x, kernel)


def _dense_bwd(residuals, dy):
  x, kernel = residuals
  dx = lax.dot_general(dy, kernel, (((dy.ndim - 1,), (1,)), ((), ())))
  rows = lambda a: a.reshape(-1, a.shape[-1])  # noqa: E731
  return dx, lax.dot_general(rows(dy), rows(x), (((0,), (0,)), ((), ()))).T


dense.defvjp(_dense_fwd, _dense_bwd)


def avg_pool2(x: jax.Array) -> jax.Array:
  """2x2 average pooling with stride 2 as a reshaped mean rather than a reduce-window:
  [B, H, W, C] -> [B, H/2, W/2, C] (H, W even)."""
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
