"""Train-step throughput of a config: images/s, compile seconds, peak RSS, GFLOP/s.

Compile seconds: the first step's time less a steady step's. Peak RSS: the process's. Page
faults and kernel CPU time per step show whether XLA's per-step buffers are reused (tcmalloc)
or faulted in again (`gen_jax/cpu_runtime.py`; this script re-executes itself with the same
malloc as `gen_jax.main`; the first output line names it).

  python benchmarks/train_throughput.py --config=configs/vae_mnist.py [--steps=100]
      [--input=synthetic|pipeline] [--config.KEY=VALUE ...]

`synthetic` feeds one fixed uint8 batch (the model alone); `pipeline` reads the real tfds +
grain stream as training does. FLOPs come from XLA's cost analysis of the step built from
the plain layers (`runtime.kernels='xla'`): the model's FLOPs, whatever kernels run it.
"""

import functools
import os
import resource
import time

import jax
from absl import app, flags
from common import plain_layers, synthetic_batch
from machine import description
from ml_collections import config_flags

from gen_jax import cpu_runtime, parallel
from gen_jax import experiment as experiment_lib
from gen_jax.data import pipeline
from gen_jax.nn import kernels
from gen_jax.nn.cpu import onednn

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
_STEPS = flags.DEFINE_integer('steps', 100, 'Timed steps, after the compiling one and 5 warm-ups.')
_INPUT = flags.DEFINE_enum('input', 'synthetic', ['synthetic', 'pipeline'], 'Input source.')


def main(_):
  config = _CONFIG.value
  exp = experiment_lib.build(config)
  d = config.data
  b = d.batch_size // jax.process_count()
  if _INPUT.value == 'pipeline':  # read and placed on the devices ahead, as training does
    batches = pipeline.train_iterator(d, config.seed, jax.process_index(), jax.process_count(),
                                      transform=functools.partial(parallel.shard_batch,
                                                                  mesh=exp.mesh))
  else:
    fixed = parallel.shard_batch(synthetic_batch(d, b), exp.mesh)
    batches = iter(lambda: fixed, None)
  state = exp.init()
  batch = next(batches)

  # The model's FLOPs: XLA's cost analysis of the step (per device) built from the plain
  # layers, which every backend runs; it counts none in FFI calls.
  cost = experiment_lib.build(plain_layers(config)).train_step.lower(state, batch).cost_analysis()
  flops = float((cost[0] if isinstance(cost, list) else cost or {}).get('flops', 0.0))
  onednn_calls = onednn.calls_in(exp.train_step.lower(state, batch).as_text())

  start = time.perf_counter()
  state, metrics = exp.train_step(state, batch)
  jax.block_until_ready(metrics)
  first_step_s = time.perf_counter() - start
  for _ in range(5):
    state, metrics = exp.train_step(state, next(batches))
  jax.block_until_ready(metrics)
  usage = resource.getrusage(resource.RUSAGE_SELF)
  start = time.perf_counter()
  for _ in range(_STEPS.value):
    state, metrics = exp.train_step(state, next(batches))
  jax.block_until_ready(metrics)
  seconds = time.perf_counter() - start
  usage_end = resource.getrusage(resource.RUSAGE_SELF)
  images_per_sec = _STEPS.value * d.batch_size / seconds
  peak_rss_mib = usage_end.ru_maxrss / 1024
  print(description())
  print(f'config={config.family}/{d.name} batch={d.batch_size} devices={exp.mesh.size} '
        f'input={_INPUT.value} kernels={kernels.resolve(config.runtime.kernels)} '
        f'onednn_conv_calls={onednn_calls}')
  step_s = seconds / _STEPS.value
  print(f'images/s {images_per_sec:,.0f}  step {1e3 * step_s:.2f} ms  '
        f'compile {first_step_s - step_s:.2f} s  peak RSS {peak_rss_mib:,.0f} MiB  '
        f'GFLOP/step {flops * exp.mesh.size / 1e9:.3f}  '
        f'GFLOP/s {flops * exp.mesh.size * _STEPS.value / seconds / 1e9:,.1f}')
  faults, kernel_s, user_s = ((getattr(usage_end, f) - getattr(usage, f)) / _STEPS.value
                              for f in ('ru_minflt', 'ru_stime', 'ru_utime'))
  print(f'per step: page faults {faults:,.0f}  kernel CPU {kernel_s:.3f} s  '
        f'user CPU {user_s:.3f} s  '
        f'GLIBC_TUNABLES={os.environ.get("GLIBC_TUNABLES", "")}')


if __name__ == '__main__':
  cpu_runtime.tune()  # as gen_jax.main does
  app.run(main)
