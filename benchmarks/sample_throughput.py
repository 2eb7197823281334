"""Sampling throughput of a config's sampler (as `--mode=sample` runs it): images/s, compile
seconds, peak RSS, GFLOP/s.

  python benchmarks/sample_throughput.py --config=configs/ddpm_cifar10.py --num=16 \
      [--repeats=3] [--config.KEY=VALUE ...]

Times `--repeats` calls of the compiled, sharded sampler on `--num` ids, after one warm-up
call (fresh parameters: the speed does not depend on their values). FLOPs come from XLA's
cost analysis of the sampler built from the plain layers (`runtime.kernels='xla'`); for a
scan, XLA counts the loop body once (checked: 5 and 50 DDIM steps report the same), so they
are scaled by the number of network evaluations (`sample.steps` for DDIM, the schedule's T
for DDPM).
"""

import resource
import time

import jax
import jax.numpy as jnp
from absl import app, flags
from common import plain_layers
from machine import description
from ml_collections import config_flags

from gen_jax import cpu_runtime
from gen_jax import experiment as experiment_lib
from gen_jax.nn import kernels
from gen_jax.nn.cpu import onednn
from gen_jax.parallel import BATCH

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
_NUM = flags.DEFINE_integer('num', 16, 'Images per sampler call.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed calls, after the compiling one.')


def main(_):
  config = _CONFIG.value
  exp = experiment_lib.build(config)
  if exp.sample is None:
    raise app.UsageError(f'family {config.family!r} does not sample')
  params = exp.init().ema_params
  ids = jax.device_put(jnp.arange(_NUM.value, dtype=jnp.int32),
                       jax.sharding.NamedSharding(exp.mesh, BATCH))
  start = time.perf_counter()
  compiled = exp.sample.lower(params, exp.keys.sample, ids).compile()
  compile_s = time.perf_counter() - start
  # The model's FLOPs: the sampler built from the plain layers, which every backend runs.
  cost = experiment_lib.build(plain_layers(config)).sample.lower(
      params, exp.keys.sample, ids).cost_analysis()
  flops = float((cost[0] if isinstance(cost, list) else cost or {}).get('flops', 0.0))
  onednn_calls = onednn.calls_in(exp.sample.lower(params, exp.keys.sample, ids).as_text())
  evaluations = 1
  if config.family == 'ddpm':
    evaluations = (config.sample.steps if config.sample.sampler == 'ddim'
                   else config.diffusion.num_steps)

  jax.block_until_ready(compiled(params, exp.keys.sample, ids))  # warm-up
  start = time.perf_counter()
  for _ in range(_REPEATS.value):
    jax.block_until_ready(compiled(params, exp.keys.sample, ids))
  call_s = (time.perf_counter() - start) / _REPEATS.value
  total_flops = flops * evaluations * exp.mesh.size
  peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  sampler = config.sample.get('sampler', '-')
  print(description())
  print(f'config={config.family}/{config.data.name} sampler={sampler} '
        f'steps={evaluations} num={_NUM.value} devices={exp.mesh.size} '
        f'kernels={kernels.resolve(config.runtime.kernels)} onednn_conv_calls={onednn_calls}')
  print(f'images/s {_NUM.value / call_s:,.2f}  call {call_s:.2f} s  '
        f'compile {compile_s:.2f} s  peak RSS {peak_rss_mib:,.0f} MiB  '
        f'GFLOP/call {total_flops / 1e9:,.1f}  GFLOP/s {total_flops / call_s / 1e9:,.1f}')


if __name__ == '__main__':
  cpu_runtime.tune()  # as gen_jax.main does
  app.run(main)
