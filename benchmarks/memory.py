"""Per-device memory and FLOPs of a DDPM config's train step, read before any launch: for
float32 / bfloat16 and remat off / on, on fake CPU devices.

  python benchmarks/memory.py [--config=configs/ddpm_cifar10.py] [--devices=8]
      [--batch=128] [--config.KEY=VALUE ...]

Nothing is trained. For each setting it reports, per device:
* state: parameters, optimizer state and EMA (float32 in every setting);
* activations: what the backward pass keeps, per example: the residuals of the UNet's
  forward pass as jax's autodiff saves them (`print_saved_residuals`' list), the part
  that bfloat16 and remat change, independent of the backend;
* XLA:CPU peak: arguments + outputs + temporaries - donated buffers of the compiled step of
  the plain layers (`runtime.kernels='xla'`, what GPUs and TPUs run). XLA:CPU schedules the
  recomputation next to the forward pass, so this figure does not fall with remat; GPU and
  TPU compilers keep remat's saving;
* GFLOP per step and device, from XLA's cost analysis of the step;
* the largest per-device batch that fits 80 GB and 16 GB:
  (capacity - state - gradients) / activations per example, an estimate that leaves out
  XLA's transient workspace (a layer's temporaries, cuDNN's scratch).
"""

import os
import sys
import time

# Fake devices must be requested before jax starts.
_DEVICES = next((int(a.split('=', 1)[1]) for a in sys.argv if a.startswith('--devices=')), 8)
os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '')
                           + f' --xla_force_host_platform_device_count={_DEVICES}')

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from common import plain_layers  # noqa: E402

# The list behind the public `jax.ad_checkpoint.print_saved_residuals` (jax is pinned).
from jax._src.ad_checkpoint import saved_residuals  # noqa: E402
from machine import description  # noqa: E402
from ml_collections import ConfigDict, config_flags  # noqa: E402

from gen_jax import experiment as experiment_lib  # noqa: E402
from gen_jax.models.unet import UNet  # noqa: E402
from gen_jax.nn import kernels  # noqa: E402
from gen_jax.parallel import BATCH  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/ddpm_cifar10.py', 'A DDPM config.',
                                          lock_config=True)
flags.DEFINE_integer('devices', 8, 'Fake CPU devices (read before jax starts).')
_BATCH = flags.DEFINE_integer('batch', 128, 'Global batch.')
CAPACITIES_GB = (80, 16)


def nbytes(tree) -> int:
  return sum(x.size * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def saved_activations(config: ConfigDict, batch: int) -> int:
  """Bytes the UNet's backward pass keeps for `batch` examples (residuals of its forward pass
  at train time, parameters excluded), in `config.model.dtype` and `remat`."""
  m, d = config.model, config.data
  model = UNet(m.ch, tuple(m.ch_mult), m.num_res_blocks, tuple(m.attn_resolutions), m.dropout,
               d.channels * (2 if config.diffusion.learn_variance else 1), m.remat)
  x = jnp.zeros((batch, d.image_size, d.image_size, d.channels))
  t, ids = jnp.zeros((batch,), jnp.int32), jnp.arange(batch)
  with kernels.use('xla', m.dtype):
    params = jax.eval_shape(model.init, jax.random.key(0), x[:1], t[:1])['params']

    def loss(params):
      out = model.apply({'params': params}, x, t, train=True, ids=ids,
                        rngs={'dropout': jax.random.key(1)})
      return jnp.mean(out ** 2)

    residuals = saved_residuals(loss, params)
  return sum(aval.size * aval.dtype.itemsize for aval, source in residuals
             if 'from the argument' not in source)


def compiled_step(config: ConfigDict, global_batch: int) -> dict[str, float]:
  """Per-device state bytes, XLA:CPU peak bytes, FLOPs and compile seconds of the train step
  at `global_batch`, compiled on abstract arrays."""
  config = plain_layers(config)
  config.data.batch_size = global_batch
  exp = experiment_lib.build(config)
  d = config.data
  sharding = jax.sharding.NamedSharding(exp.mesh, BATCH)
  batch = {'image': jax.ShapeDtypeStruct((global_batch, d.image_size, d.image_size, d.channels),
                                         np.uint8, sharding=sharding),
           'label': jax.ShapeDtypeStruct((global_batch,), np.int32, sharding=sharding),
           'id': jax.ShapeDtypeStruct((global_batch,), np.int32, sharding=sharding)}
  start = time.perf_counter()
  compiled = exp.train_step.lower(exp.abstract_state, batch).compile()
  seconds = time.perf_counter() - start
  memory = compiled.memory_analysis()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost or {}
  return {'state': nbytes(exp.abstract_state), 'params': nbytes(exp.abstract_state.params),
          'peak': (memory.argument_size_in_bytes + memory.output_size_in_bytes
                   + memory.temp_size_in_bytes - memory.alias_size_in_bytes),
          'flops': float(cost.get('flops', 0)), 'compile_s': seconds}


def main(_):
  base = _CONFIG.value
  devices = jax.device_count()
  per_device = _BATCH.value // devices
  print(description())
  print(f'config={base.family}/{base.data.name} global batch={_BATCH.value} '
        f'devices={devices} (fake CPU), per device {per_device}, kernels=xla')
  print('| dtype | remat | state GiB | activations MiB/example | XLA:CPU peak GiB | '
        'GFLOP/step | max batch/device 80 GB | 16 GB | compile s |')
  print('| --- | --- | --- | --- | --- | --- | --- | --- | --- |')
  for dtype in ('float32', 'bfloat16'):
    for remat in (False, True):
      config = ConfigDict(base.to_dict())
      config.model.dtype, config.model.remat = dtype, remat
      per_example = saved_activations(config, per_device) / per_device
      step = compiled_step(config, _BATCH.value)
      fixed = step['state'] + step['params']  # the state, and the gradients beside it
      fits = [int((gb * 1e9 - fixed) // per_example) for gb in CAPACITIES_GB]
      print(f'| {dtype} | {"on" if remat else "off"} | {step["state"] / 2**30:.2f} | '
            f'{per_example / 2**20:.2f} | {step["peak"] / 2**30:.2f} | '
            f'{step["flops"] / 1e9:,.0f} | {fits[0]} | {fits[1]} | {step["compile_s"]:.0f} |',
            flush=True)


if __name__ == '__main__':
  app.run(main)
