"""The checkpoint integrity layer: the arrays' checksums against a brute-force reference, and
the rule that `max_to_keep` deletes nothing before the newest checkpoint is read back."""

import os

import jax.numpy as jnp
import ml_dtypes
import numpy as np
import orbax.checkpoint as ocp
import pytest
from ml_collections import ConfigDict

from gen_jax.checkpoint import Checkpointer, DamagedCheckpoint, checksum, fingerprint
from gen_jax.errors import UserError


def reference_checksum(x: np.ndarray) -> int:
  """The checksum element by element, in Python integers."""
  unsigned = {1: np.uint8, 2: np.uint16, 4: np.uint32}[x.dtype.itemsize]
  words = x.astype(np.uint32) if x.dtype == bool else x.view(unsigned)
  total = 0
  for i, word in enumerate(words.reshape(-1).tolist()):
    total += ((word ^ (i * 0x9E3779B9 % 2 ** 32)) * 0x85EBCA6B) % 2 ** 32
  return total % 2 ** 32


ARRAYS = {
    'float32': np.random.default_rng(0).normal(size=(3, 5, 7)).astype(np.float32),
    'bfloat16': np.random.default_rng(1).normal(size=(33,)).astype(ml_dtypes.bfloat16),
    'int32': np.arange(-50, 50, dtype=np.int32).reshape(10, 10),
    'uint8': np.arange(256, dtype=np.uint8),
    'bool': np.array([True, False, True, True]),
    'scalar': np.float32(3.5).reshape(()),
}


@pytest.mark.parametrize('name', sorted(ARRAYS))
def test_checksum_equals_the_reference_on_devices_and_on_the_host(name):
  x = ARRAYS[name]
  expected = reference_checksum(x)
  assert int(checksum(x, np)) == expected
  assert int(checksum(jnp.asarray(x))) == expected


def test_any_one_changed_or_swapped_element_changes_the_checksum():
  x = ARRAYS['float32'].reshape(-1)
  base = int(checksum(x, np))
  for i in range(x.size):
    flipped = x.copy()
    flipped.view(np.uint32)[i] ^= 1  # the lowest mantissa bit: the value barely moves
    assert int(checksum(flipped, np)) != base, i
  swapped = x.copy()
  swapped[[0, 1]] = swapped[[1, 0]]
  assert int(checksum(swapped, np)) != base


def test_fingerprint_names_the_first_non_finite_leaf():
  tree = {'a': jnp.ones(3), 'b': jnp.array([1.0, np.inf]), 'c': jnp.arange(3)}
  sums, bad = fingerprint(tree)
  assert bad == 'b'
  assert sums == {name: reference_checksum(np.asarray(leaf)) for name, leaf in tree.items()}
  assert fingerprint({'a': jnp.ones(3)})[1] == ''


def state_at(step: int) -> dict:
  w = np.random.default_rng(step).normal(size=(64, 64)).astype(np.float32)  # incompressible
  return {'step': jnp.int32(step), 'w': jnp.asarray(w)}


def save(checkpointer: Checkpointer, step: int) -> None:
  checkpointer.save(step, state_at(step), {'next_index': step}, 'vae', ConfigDict({'seed': 0}))


def move_data_position(directory, step: int) -> None:
  """Rewrites checkpoint `step`'s data position (a JSON file) as step + 1: valid, but not
  what was saved."""
  with open(os.path.join(directory, str(step), 'data', 'metadata'), 'w') as f:
    f.write(f'{{"next_index": {step + 1}}}')


def test_rotation_waits_for_the_new_checkpoint_to_read_back_intact(tmp_path):
  checkpointer = Checkpointer(tmp_path, max_to_keep=2)
  for step in (1, 2, 3):
    save(checkpointer, step)
  checkpointer.wait()
  assert checkpointer.all_steps() == [2, 3]
  save(checkpointer, 4)
  checkpointer._manager.wait_until_finished()  # written, not yet read back
  assert checkpointer.all_steps() == [2, 3, 4]
  move_data_position(tmp_path, 4)  # a storage that returns other bytes than it was given
  with pytest.raises(UserError, match=r'/4 does not match the checksum it was saved with '
                     r'\(the data position\).*right after writing.*checkpoints before it '
                     'are kept'):
    checkpointer.wait()
  assert checkpointer.all_steps() == [2, 3, 4]  # 3, the newest good one, was not rotated out
  checkpointer.close()

  reader = Checkpointer(tmp_path, read_only=True)
  abstract = state_at(0)
  with pytest.raises(DamagedCheckpoint, match='does not match the checksum'):
    reader.restore(4, abstract)
  state, data = reader.restore(3, abstract)
  np.testing.assert_array_equal(state['w'], state_at(3)['w'])
  assert data == {'next_index': 3}


def test_an_array_rewritten_with_other_valid_values_fails_its_checksum(tmp_path):
  """What a corruption that still decodes leaves: other values of the right shape and dtype,
  which orbax restores without complaint."""
  checkpointer = Checkpointer(tmp_path, max_to_keep=2)
  save(checkpointer, 1)
  checkpointer.wait()
  checkpointer.close()
  other = state_at(1)
  other['w'] = other['w'].at[7, 7].add(1e-6)
  saver = ocp.StandardCheckpointer()
  saver.save(tmp_path / '1' / 'state', other, force=True)
  saver.wait_until_finished()
  reader = Checkpointer(tmp_path, read_only=True)
  with pytest.raises(DamagedCheckpoint, match=r'/1 does not match the checksum it was saved '
                     r'with \(w\): its files are damaged'):
    reader.restore(1, state_at(0))
  reader.close()


def test_a_state_holding_nan_is_not_saved(tmp_path):
  checkpointer = Checkpointer(tmp_path, max_to_keep=2)
  save(checkpointer, 1)
  bad = {'step': jnp.int32(2), 'w': jnp.full((64, 64), np.nan, jnp.float32)}
  with pytest.raises(UserError, match=r'state of step 2 holds non-finite values \(w\); not '
                     r'saved, the newest checkpoint \(1\) is kept'):
    checkpointer.save(2, bad, {'next_index': 2}, 'vae', ConfigDict({'seed': 0}))
  assert checkpointer.all_steps() == [1]
  checkpointer.close()
