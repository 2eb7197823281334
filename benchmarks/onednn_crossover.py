"""oneDNN's 3x3 convolutions against XLA's, from small to large: milliseconds of the forward pass
plus both gradients (one jitted vjp) per shape, each way, and their ratio. The measurement behind
`gen_jax.nn.cpu.onednn.MIN_FLOPS`, below which `onednn.conv` stays XLA's.

  python benchmarks/onednn_crossover.py [--repeats=50] [--rounds=2]
"""

import jax
import jax.numpy as jnp
from absl import app, flags
from common import median_ms

from gen_jax import cpu_runtime
from gen_jax.nn.cpu import onednn

_REPEATS = flags.DEFINE_integer('repeats', 50, 'Timed calls per shape and way (median printed).')
_ROUNDS = flags.DEFINE_integer('rounds', 2, 'Passes over all shapes (the machine drifts).')

# batch, size, input channels, output channels: 5 to 600 MFLOP in the forward pass
_SHAPES = [(64, 4, 16, 16), (64, 4, 32, 32), (64, 8, 16, 16), (64, 14, 16, 16), (64, 8, 32, 32),
           (64, 4, 64, 64), (128, 7, 32, 32), (64, 8, 64, 64), (32, 8, 128, 128)]


def _forward_and_grads(x, kernel):
  y, vjp = jax.vjp(lambda x, k: onednn.conv(x, k), x, kernel)
  return y, vjp(jnp.ones_like(y))


def main(_):
  assert onednn.load(), 'oneDNN convolutions are unavailable here (see the warning above)'
  for _ in range(_ROUNDS.value):
    for n, size, c_in, c_out in _SHAPES:
      x = jax.random.normal(jax.random.key(0), (n, size, size, c_in))
      kernel = jax.random.normal(jax.random.key(1), (3, 3, c_in, c_out)) * 0.1
      previous, onednn.MIN_FLOPS = onednn.MIN_FLOPS, 0
      ms_onednn = median_ms(_forward_and_grads, x, kernel, repeats=_REPEATS.value)
      onednn.MIN_FLOPS = previous
      with onednn.xla_only():
        ms_xla = median_ms(_forward_and_grads, x, kernel, repeats=_REPEATS.value)
      mflop = onednn.forward_flops(x.shape, kernel.shape, (1, 1), ((1, 1), (1, 1))) / 1e6
      print(f'{n}x{size}x{size}x{c_in}->{c_out}  forward {mflop:6.1f} MFLOP  '
            f'forward + grads: oneDNN {ms_onednn:7.3f} ms  XLA {ms_xla:7.3f} ms  '
            f'XLA / oneDNN {ms_xla / ms_onednn:.2f}', flush=True)


if __name__ == '__main__':
  cpu_runtime.tune()  # as gen_jax.main does
  app.run(main)
