"""Trains ddpm_cifar10's UNet and the 64 px DCGAN on synthetic batches, in float32 and
bfloat16, with the plain layers, on whatever accelerator jax finds; prints what a user needs
before launching: steps/s, images/s, achieved TFLOP/s and MFU, peak device memory, the
fraction of time spent feeding data, and whether the losses stayed finite.

  bash benchmarks/accelerator_check.sh [--steps=200] [--smoke]

FLOPs per step are XLA's cost analysis of the compiled step (all devices). MFU divides the
achieved FLOP/s by the chip's dense bfloat16 peak (`PEAK_BF16_TFLOPS`, by device kind) times
the device count, for float32 runs too. Data wait: the host time spent making and placing
each batch, as a fraction of the timed wall time. `--smoke` shrinks both models so the
script runs in a minute on a CPU (a check of the script, not of a machine).
"""

import importlib.util
import time

import jax
import numpy as np
from absl import app, flags
from machine import description
from ml_collections import ConfigDict

from gen_jax import experiment as experiment_lib
from gen_jax import parallel

_STEPS = flags.DEFINE_integer('steps', 200, 'Timed steps per run, after 5 warm-up steps.')
_SMOKE = flags.DEFINE_bool('smoke', False, 'Tiny models, for checking the script on a CPU.')

# Dense bfloat16 peak TFLOP/s per chip (vendors' data sheets), by substrings of device_kind.
PEAK_BF16_TFLOPS = {'H200': 989.0, 'H100': 989.0, 'A100': 312.0, 'L4': 121.0, 'A10': 125.0,
                    'TPU v6': 918.0, 'TPU v5p': 459.0, 'TPU v5': 197.0, 'TPU v4': 275.0}


def load(name: str) -> ConfigDict:
  spec = importlib.util.spec_from_file_location(name, f'configs/{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def runs(smoke: bool) -> list[tuple[str, ConfigDict]]:
  """(name, config) of each run: both models in both dtypes, the plain layers."""
  ddpm, gan = load('ddpm_cifar10'), load('dcgan_celeba64')
  ddpm.data.batch_size = gan.data.batch_size = 128
  if smoke:
    ddpm.model.update(ch=32, ch_mult=(1, 2), num_res_blocks=1)
    ddpm.data.batch_size = gan.data.batch_size = 2 * jax.device_count()
    gan.model.update(g_channels=(32, 16, 8, 8), d_channels=(8, 8, 16, 32))
  result = []
  for name, config in (('ddpm_cifar10', ddpm), ('dcgan_celeba64', gan)):
    for dtype in ('float32', 'bfloat16'):
      c = ConfigDict(config.to_dict())
      c.runtime.kernels, c.model.dtype = 'xla', dtype
      result.append((f'{name} {dtype}', c))
  return result


def peak_tflops() -> float | None:
  kind = jax.devices()[0].device_kind
  for key, value in PEAK_BF16_TFLOPS.items():
    if key in kind:
      return value * jax.device_count()
  return None


def batches(config: ConfigDict, count: int):
  """`count` synthetic uint8 batches with fresh example ids, as the data pipeline gives them."""
  d, rng = config.data, np.random.default_rng(0)
  shape = (d.batch_size, d.image_size, d.image_size, d.channels)
  for i in range(count):
    yield {'image': rng.integers(0, 256, shape, dtype=np.uint8),
           'label': np.zeros(d.batch_size, np.int32),
           'id': np.arange(i * d.batch_size, (i + 1) * d.batch_size, dtype=np.int32)}


def measure(config: ConfigDict, steps: int) -> dict[str, float]:
  exp = experiment_lib.build(config)
  state = exp.init()
  source = batches(config, steps + 6)
  first = parallel.shard_batch(next(source), exp.mesh)
  start = time.perf_counter()
  compiled = exp.train_step.lower(state, first).compile()
  compile_s = time.perf_counter() - start
  cost = compiled.cost_analysis()
  flops = float((cost[0] if isinstance(cost, list) else cost or {}).get('flops', 0.0))
  flops *= exp.mesh.size  # the analysis is per device
  for _ in range(5):
    state, metrics = exp.train_step(state, parallel.shard_batch(next(source), exp.mesh))
  jax.block_until_ready(metrics)
  data_s, finite = 0.0, True
  start = time.perf_counter()
  for _ in range(steps):
    t = time.perf_counter()
    batch = parallel.shard_batch(next(source), exp.mesh)
    data_s += time.perf_counter() - t
    state, metrics = exp.train_step(state, batch)
  jax.block_until_ready(metrics)
  seconds = time.perf_counter() - start
  for value in parallel.host_values(metrics).values():
    finite &= bool(np.isfinite(value))
  memory = compiled.memory_analysis()
  peak = (memory.argument_size_in_bytes + memory.output_size_in_bytes
          + memory.temp_size_in_bytes - memory.alias_size_in_bytes)
  return {'steps_per_s': steps / seconds, 'images_per_s': steps * config.data.batch_size / seconds,
          'tflops': flops * steps / seconds / 1e12, 'compile_s': compile_s,
          'peak_gib': peak / 2 ** 30,
          'data_wait': data_s / seconds, 'finite': finite}


def main(_):
  print(description())
  devices = jax.devices()
  peak = peak_tflops()
  print(f'{len(devices)} x {devices[0].device_kind} ({jax.default_backend()}), jax '
        f'{jax.__version__}, dense bf16 peak {peak or "unknown"} TFLOP/s in all')
  print('| run | global batch | steps/s | images/s | TFLOP/s | MFU | peak GiB/device | '
        'data wait | loss finite | compile s |')
  print('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |')
  for name, config in runs(_SMOKE.value):
    r = measure(config, _STEPS.value)
    mfu = f'{r["tflops"] / peak:.1%}' if peak else 'n/a'
    print(f'| {name} | {config.data.batch_size} | {r["steps_per_s"]:.2f} | '
          f'{r["images_per_s"]:,.0f} | {r["tflops"]:.1f} | {mfu} | {r["peak_gib"]:.2f} | '
          f'{r["data_wait"]:.1%} | {r["finite"]} | {r["compile_s"]:.0f} |', flush=True)


if __name__ == '__main__':
  app.run(main)
