"""What the checkpoint checksums cost: seconds to save (until written) and to restore a config's
train state, through orbax alone and through gen_jax's Checkpointer, which adds the arrays'
checksums on the devices before a save, reads each save back on the host and checks it, and
checks the checksums after a restore.

  python benchmarks/checkpoint.py [--config=configs/ddpm_cifar10.py] [--repeats=3]
      [--dir=/tmp/gen_jax_checkpoint_bench]

The state has the config's shapes and random values (no init, no training). The two ways
alternate within each repeat; the table gives the median seconds and MB/s of the state's
size. Rows of one session only compare: the page cache serves most reads back.
"""

import shutil
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import app, flags, logging
from machine import description
from ml_collections import config_flags

from gen_jax import experiment
from gen_jax.checkpoint import Checkpointer

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/ddpm_cifar10.py', 'The config.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Alternating repeats of each way.')
_DIR = flags.DEFINE_string('dir', '/tmp/gen_jax_checkpoint_bench', 'Where checkpoints go.')


def random_state(abstract):
  """Random arrays of `abstract`'s shapes, dtypes and shardings."""
  keys = iter(jax.random.split(jax.random.key(0), len(jax.tree.leaves(abstract))))

  def fill(leaf):
    key = next(keys)
    if np.issubdtype(leaf.dtype, np.floating):
      value = jax.random.normal(key, leaf.shape, leaf.dtype)
    else:
      value = jax.random.randint(key, leaf.shape, 0, 1000, leaf.dtype)
    return jax.device_put(value, leaf.sharding)
  return jax.tree.map(fill, abstract)


def orbax_save(directory, step, state, data_state, exp):
  manager = ocp.CheckpointManager(directory)
  manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                             data=ocp.args.JsonSave(data_state)))
  manager.wait_until_finished()
  manager.close()


def gen_jax_save(directory, step, state, data_state, exp):
  checkpointer = Checkpointer(directory, max_to_keep=100)
  checkpointer.save(step, state, data_state, exp.family.name, exp.config)
  checkpointer.wait()  # written, read back and checked
  checkpointer.close()


def orbax_restore(directory, step, exp):
  manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(
      read_only=True))
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(exp.abstract_state), data=ocp.args.JsonRestore()))
  jax.block_until_ready(restored['state'])
  manager.close()


def gen_jax_restore(directory, step, exp):
  checkpointer = Checkpointer(directory, read_only=True)
  jax.block_until_ready(checkpointer.restore(step, exp.abstract_state)[0])
  checkpointer.close()


def main(argv):
  del argv
  logging.set_verbosity(logging.ERROR)
  exp = experiment.build(_CONFIG.value)
  state = random_state(exp.abstract_state)
  megabytes = sum(x.nbytes for x in jax.tree.leaves(state)) / 2 ** 20
  data_state = {'next_index': 12345}
  ways = {'orbax': (orbax_save, orbax_restore), 'gen_jax': (gen_jax_save, gen_jax_restore)}
  shutil.rmtree(_DIR.value, ignore_errors=True)
  gen_jax_save(f'{_DIR.value}/warmup', 1, state, data_state, exp)  # compiles the checksums
  gen_jax_restore(f'{_DIR.value}/warmup', 1, exp)
  times = {(way, op): [] for way in ways for op in ('save', 'restore')}
  for repeat in range(_REPEATS.value):
    for way, (save, restore) in ways.items():
      directory = f'{_DIR.value}/{way}'
      start = time.perf_counter()
      save(directory, repeat + 1, state, data_state, exp)
      times[way, 'save'].append(time.perf_counter() - start)
      start = time.perf_counter()
      restore(directory, repeat + 1, exp)
      times[way, 'restore'].append(time.perf_counter() - start)
  shutil.rmtree(_DIR.value, ignore_errors=True)
  print(description())
  print(f'{exp.family.name} state of {megabytes:.0f} MB '
        f'({sum(x.size for x in jax.tree.leaves(state)):,} values), median of '
        f'{_REPEATS.value}')
  print('| way | save s | save MB/s | restore s | restore MB/s |')
  print('| --- | --- | --- | --- | --- |')
  for way in ways:
    save, restore = (float(np.median(times[way, op])) for op in ('save', 'restore'))
    print(f'| {way} | {save:.2f} | {megabytes / save:.0f} | {restore:.2f} | '
          f'{megabytes / restore:.0f} |')


if __name__ == '__main__':
  app.run(main)
