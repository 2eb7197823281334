"""Milliseconds of each part of a 4x4 stride-2 conv (forward, input gradient, kernel gradient),
down and up (transposed), for each formulation in `gen_jax.nn.cpu.convs`: the measurement
behind the CPU kernels' per-part choice (`conv_down`, `conv_up`). Shapes are the VAE's
(vae_mnist) and the 64x64 DCGAN's layers.

  python benchmarks/conv_parts.py [--only=D2] [--repeats=15]
"""

import jax
from absl import app, flags
from common import median_ms

from gen_jax import cpu_runtime
from gen_jax.nn.cpu import convs

_ONLY = flags.DEFINE_string('only', '', 'Only the layers whose name contains this.')
_REPEATS = flags.DEFINE_integer('repeats', 15, 'Timed calls per part (the median is printed).')

# name, batch, input size, input channels, output channels, up
_LAYERS = [('vae enc1', 128, 28, 1, 32, False), ('vae enc2', 128, 14, 32, 64, False),
           ('vae dec1', 128, 7, 64, 32, True), ('vae dec2', 128, 14, 32, 1, True),
           ('D1', 128, 64, 3, 64, False), ('D2', 128, 32, 64, 128, False),
           ('D3', 128, 16, 128, 256, False), ('D4', 128, 8, 256, 512, False),
           ('G1', 64, 4, 512, 256, True), ('G2', 64, 8, 256, 128, True),
           ('G3', 64, 16, 128, 64, True), ('G4', 64, 32, 64, 3, True)]
_IMPLS = {'xla': (convs.conv_down_xla, convs.conv_up_xla),
          'stride1': (convs.conv_down_stride1, convs.conv_up_stride1),
          'per-part': (convs.conv_down, convs.conv_up)}


def main(_):
  for name, batch, size, c_in, c_out, up in _LAYERS:
    if _ONLY.value not in name:
      continue
    x = jax.random.normal(jax.random.key(0), (batch, size, size, c_in))
    kernel = jax.random.normal(jax.random.key(1), (4, 4, c_in, c_out)) * 0.1
    parts = []
    for impl, forms in _IMPLS.items():
      conv = forms[up]
      dy = conv(x, kernel)

      def input_grad(x, kernel, dy, conv=conv):
        return jax.vjp(lambda x: conv(x, kernel), x)[1](dy)[0]

      def kernel_grad(x, kernel, dy, conv=conv):
        return jax.vjp(lambda kernel: conv(x, kernel), kernel)[1](dy)[0]

      times = [median_ms(conv, x, kernel, repeats=_REPEATS.value)]
      times += [median_ms(fn, x, kernel, dy, repeats=_REPEATS.value)
                for fn in (input_grad, kernel_grad)]
      parts.append(f'{impl} {times[0]:6.2f} {times[1]:6.2f} {times[2]:7.2f}')
    print(f'{name:8s} {"up" if up else "down"} {batch}x{size}x{size}x{c_in}->{c_out}  '
          f'(forward, input grad, kernel grad ms)  ' + ' | '.join(parts), flush=True)


if __name__ == '__main__':
  cpu_runtime.tune()  # as gen_jax.main does
  app.run(main)
