"""A/B timing of two variants of a config's train step in one process, alternating rounds.

This machine's speed drifts by 10-20% over minutes, more than most single changes gain, so
separate benchmark runs cannot tell a 5% change from noise. This builds the step twice, the
second time after `patch()` from `--variant` (a Python file) has replaced whatever it
changes, e.g. `gen_jax.state.ema_update`, and then times `--rounds` alternating rounds (ABBA
order) of about `--round_seconds` each on one fixed batch.

  python benchmarks/ab_step.py --variant=my_patch.py --config=configs/vae_mnist.py [--rounds=7]
      [--config.KEY=VALUE ...]

Prints each variant's per-round ms per step, their medians and the ratio B/A.
"""

import runpy
import time

import jax
import numpy as np
from absl import app, flags
from common import synthetic_batch
from ml_collections import config_flags

from gen_jax import cpu_runtime, parallel
from gen_jax import experiment as experiment_lib

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
_VARIANT = flags.DEFINE_string('variant', None, 'Python file whose patch() makes variant B.',
                               required=True)
_ROUNDS = flags.DEFINE_integer('rounds', 7, 'Timed rounds per variant.')
_ROUND_SECONDS = flags.DEFINE_float('round_seconds', 2.0, 'About how long one round runs.')


def _build(config, batch):
  """Returns [train_step, state, device batch], compiled and warmed up."""
  exp = experiment_lib.build(config)
  state, device_batch = exp.init(), parallel.shard_batch(batch, exp.mesh)
  for _ in range(3):
    state, metrics = exp.train_step(state, device_batch)
  jax.block_until_ready(metrics)
  return [exp.train_step, state, device_batch]


def _seconds_per_step(run: list, steps: int) -> float:
  train_step, state, batch = run
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = train_step(state, batch)
  jax.block_until_ready(metrics)
  run[1] = state
  return (time.perf_counter() - start) / steps


def main(_):
  config = _CONFIG.value
  d = config.data
  batch = synthetic_batch(d, d.batch_size)
  runs = {'A': _build(config, batch)}
  runpy.run_path(_VARIANT.value)['patch']()
  runs['B'] = _build(config, batch)
  steps = max(3, int(_ROUND_SECONDS.value / _seconds_per_step(runs['A'], 1)))
  times = {'A': [], 'B': []}
  for r in range(_ROUNDS.value):
    for name in ('AB' if r % 2 == 0 else 'BA'):
      times[name].append(_seconds_per_step(runs[name], steps))
  for name, values in times.items():
    print(f'{name}: median {1e3 * np.median(values):.2f} ms/step  rounds '
          + ' '.join(f'{1e3 * v:.1f}' for v in values))
  print(f'B/A {np.median(times["B"]) / np.median(times["A"]):.3f}  ({steps} steps per round)')


if __name__ == '__main__':
  cpu_runtime.tune()  # as gen_jax.main does
  app.run(main)
