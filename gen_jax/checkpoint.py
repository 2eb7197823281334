"""Checkpoints through orbax: the train state, the data iterator's position and a signature.

Each checkpoint `checkpoints/STEP/` holds three items: `state` (the TrainState arrays),
`data` (the grain iterator state, JSON) and `meta` (the family, the config and the shape
signature of the state, JSON). Before anything is restored the signature is compared with
the state the current config builds, so a workdir of another model fails with one line.
Saves are asynchronous and atomic (orbax writes to a temporary folder and renames it).
"""

import hashlib
import json
import logging
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from ml_collections import ConfigDict

from gen_jax import layout
from gen_jax import state as state_lib
from gen_jax.config_lib import from_json, lookup
from gen_jax.errors import UserError
from gen_jax.families import Family, get_family

log = logging.getLogger(__name__)


class DamagedCheckpoint(UserError):
  """A finished checkpoint whose files cannot be read back (truncated, corrupted)."""


def _named_leaves(tree: Any) -> list[tuple[str, Any]]:
  """[('params/enc/kernel', leaf), ...] for every leaf of `tree`, in tree order."""
  return [(jax.tree_util.keystr(path, simple=True, separator='/'), leaf)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]


def signature(tree: Any) -> dict[str, str]:
  """Returns {'params/enc/kernel': 'float32[3,3,1,32]', ...} for every leaf of `tree`."""
  return {name: f'{np.dtype(leaf.dtype).name}{list(np.shape(leaf))}'
          for name, leaf in _named_leaves(tree)}


# Odd multipliers: each element's word is mixed with its index, so a changed, moved or
# swapped element changes the sum; integer sums wrap, so they do not depend on the order of
# the reduction or on how the array is sharded.
_INDEX_MIX, _WORD_MIX = 0x9E3779B9, 0x85EBCA6B


def checksum(x: Any, xp: Any = jnp) -> Any:
  """A uint32 checksum of the bytes of array `x`, computed by `xp` (jax.numpy on devices,
  numpy on the host: both give the same number). Any single changed element changes it."""
  if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  if x.dtype == bool:
    words = x.astype(xp.uint32)
  else:
    words = x.view({1: xp.uint8, 2: xp.uint16, 4: xp.uint32}[x.dtype.itemsize])
    words = words.astype(xp.uint32)
  index = xp.arange(words.size, dtype=xp.uint32) * xp.uint32(_INDEX_MIX)
  return ((words.reshape(-1) ^ index) * xp.uint32(_WORD_MIX)).sum(dtype=xp.uint32)


@jax.jit
def _fingerprint(leaves: list[jax.Array]) -> tuple[list[jax.Array], list[jax.Array]]:
  return ([checksum(x) for x in leaves],
          [jnp.all(jnp.isfinite(x)) if jnp.issubdtype(x.dtype, jnp.floating) else jnp.array(True)
           for x in leaves])


def fingerprint(tree: Any) -> tuple[dict[str, int], str]:
  """Returns ({path: checksum} of every leaf of `tree`, the path of the first floating-point
  leaf holding a NaN or an infinity or '' if none), computed where the arrays are and
  fetched in one device-to-host transfer."""
  names, leaves = zip(*_named_leaves(tree))
  sums, finite = jax.device_get(_fingerprint(list(leaves)))
  return ({name: int(s) for name, s in zip(names, sums)},
          next((name for name, ok in zip(names, finite) if not ok), ''))


def host_checksums(tree: Any) -> dict[str, int]:
  """{path: checksum} of a tree of host (numpy) arrays: what `fingerprint` gives on devices."""
  return {name: int(checksum(leaf, np)) for name, leaf in _named_leaves(tree)}


def data_checksum(data_state: dict) -> str:
  """The SHA-256 of the data iterator's state, as canonical JSON."""
  return hashlib.sha256(json.dumps(data_state, sort_keys=True).encode()).hexdigest()


def _first_mismatch(found: dict[str, int], expected: dict[str, int]) -> str:
  return next((name for name in expected if found.get(name) != expected[name]), '')


def _first_difference(found: dict[str, str], expected: dict[str, str]) -> str:
  # Parameters first: they name the layer a user changed; optimizer and EMA trees follow.
  for key in sorted(set(found) | set(expected), key=lambda k: (not k.startswith('params/'), k)):
    if found.get(key) != expected.get(key):
      return (f'{key} is {found.get(key, "absent")} in the checkpoint but '
              f'{expected.get(key, "absent")} for this config')
  return ''


# Config values that a resumed run must share with its checkpoint to continue the same run.
RESUME_KEYS = ('seed', 'data.name', 'data.batch_size', 'data.image_size')


class Checkpointer:
  """Saves and restores runs in `directory`; keeps the newest `max_to_keep`.

  `read_only=True` (eval and sample beside a live training job) creates, deletes and
  cleans up nothing, so it never touches a save the trainer has in flight.
  """

  def __init__(self, directory: str | os.PathLike, max_to_keep: int | None = None,
               read_only: bool = False):
    directory = layout.path(directory)
    self.directory = directory if layout.is_object_store(directory) else directory.resolve()
    self._in_flight: int | None = None  # the step of the asynchronous save being written
    self._abstract: Any = None  # its state's shapes and dtypes, to read it back on the host
    self._max_to_keep = None if read_only else max_to_keep  # applied by `wait`, not by orbax
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            read_only=read_only,
            save_interval_steps=0 if read_only else 1,
            enable_async_checkpointing=not read_only, cleanup_tmp_directories=not read_only,
            create=not read_only))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def check_compatible(self, step: int, abstract_state: Any, family: str,
                       config: ConfigDict | None = None) -> None:
    """Raises a UserError naming the first leaf where checkpoint `step` differs from the state,
    or, given the `config` of a run that continues training, the first of RESUME_KEYS that
    differs (another seed or batch size would silently start another run)."""
    try:
      meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
      meta = meta['meta']
    except Exception as e:  # orbax raises many types for unreadable folders
      raise DamagedCheckpoint(f'checkpoint {self.directory}/{step} cannot be read '
                              f'({_describe(e)})') from None
    if not isinstance(meta, dict) or 'signature' not in meta:
      raise UserError(f'checkpoint {self.directory}/{step} has no gen_jax metadata: '
                      'not written by gen_jax, use another --workdir')
    if meta.get('family') != family:
      raise UserError(f'{self.directory} holds checkpoints of family {meta.get("family")!r}, '
                      f'not {family!r}: use another --workdir')
    difference = _first_difference(meta['signature'], signature(abstract_state))
    if difference:
      recorded = layout.config_file(self.directory.parent)
      advice = (f'to use that run, pass --config={recorded} (its config, overrides included); '
                'for a new model, use another --workdir' if recorded.exists()
                else 'use another --workdir')
      raise UserError(f'{self.directory} holds checkpoints of a different model: {difference}; '
                      f'{advice}')
    if config is not None:
      current = json.loads(config.to_json_best_effort())
      for key in RESUME_KEYS:
        old, new = lookup(meta['config'], key), lookup(current, key)
        if old != new:
          raise UserError(f'{self.directory} holds a run with {key}={old!r}, this config has '
                          f'{key}={new!r}: resuming would not continue that run; use another '
                          '--workdir')

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
    """Returns (state placed as `abstract_state`'s shardings say, data-iterator state), after
    checking them against the checksums the checkpoint was saved with (checkpoints written
    before gen_jax kept checksums: that their values are finite)."""
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore(),
          meta=ocp.args.JsonRestore()))
    except Exception as e:  # orbax and tensorstore raise many types for damaged files
      raise DamagedCheckpoint(f'checkpoint {self.directory}/{step} cannot be read '
                              f'({_describe(e)})') from None
    sums, bad = fingerprint(restored['state'])
    self._check(step, sums, restored['data'], restored['meta'])
    if bad:  # saves refuse non-finite states: its files changed since
      raise DamagedCheckpoint(f'checkpoint {self.directory}/{step} holds non-finite values '
                              f'({bad}): its files are damaged')
    return restored['state'], restored['data']

  def _check(self, step: int, sums: dict[str, int], data_state: Any, meta: dict) -> None:
    """Raises DamagedCheckpoint if the arrays' checksums `sums` or the data state differ from
    what checkpoint `step` was saved with (its `meta`; older checkpoints have no checksums)."""
    mismatch = _first_mismatch(sums, meta.get('checksums', {}))
    if not mismatch and 'data_checksum' in meta and (
        not isinstance(data_state, dict) or data_checksum(data_state) != meta['data_checksum']):
      mismatch = 'the data position'
    if mismatch:
      raise DamagedCheckpoint(f'checkpoint {self.directory}/{step} does not match the checksum '
                              f'it was saved with ({mismatch}): its files are damaged')

  def save(self, step: int, state: Any, data_state: dict, family: str,
           config: ConfigDict) -> None:
    """Starts an asynchronous save of checkpoint `step`, with the checksums of its arrays and
    data state, once the save before it is written and verified (`wait`).

    Raises a UserError, saving nothing, if `state` holds a NaN or an infinity.
    On CPU the state is copied first: there orbax's host copy can alias the device buffers,
    which the next (donating) train step overwrites while the save is still being written.
    On accelerators the host copy is a transfer, so nothing is copied twice.
    """
    self.wait()
    sums, bad = fingerprint(state)
    if bad:
      raise UserError(f'the state of step {step} holds non-finite values ({bad}); not saved, '
                      f'the newest checkpoint ({self._manager.latest_step()}) is kept. Lower '
                      'optim.learning_rate or set optim.grad_clip')
    if jax.default_backend() == 'cpu':
      state = jax.tree.map(jnp.copy, state)
    meta = {'family': family, 'signature': signature(state),
            'config': json.loads(config.to_json_best_effort()),
            'checksums': sums, 'data_checksum': data_checksum(data_state)}
    try:
      self._manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state),
          meta=ocp.args.JsonSave(meta)), force=True)
    except Exception as e:
      raise self._write_error(e, step) from None
    self._in_flight = step
    self._abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)

  def check(self) -> None:
    """Raises a UserError if the save in flight has failed already."""
    try:
      self._manager.check_for_errors()
    except Exception as e:
      step, self._in_flight = self._in_flight, None
      raise self._write_error(e, step) from None

  def wait(self) -> None:
    """Blocks until the pending save is on disk, reads it back and checks it against its
    checksums; only then are checkpoints beyond `max_to_keep` deleted, oldest first, so the
    newest verified checkpoint is never deleted before a newer one is verified."""
    if self._in_flight is None:
      return
    step, self._in_flight = self._in_flight, None
    try:
      self._manager.wait_until_finished()
    except Exception as e:
      raise self._write_error(e, step) from None
    error = ''
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(jax.tree.map(  # numpy templates: read to the host
              lambda x: np.empty(x.shape, x.dtype), self._abstract)),
          data=ocp.args.JsonRestore(),
          meta=ocp.args.JsonRestore()))
      self._check(step, host_checksums(restored['state']), restored['data'], restored['meta'])
    except Exception as e:  # orbax raises many types for unreadable files
      error = str(e) if isinstance(e, DamagedCheckpoint) else (
          f'checkpoint {self.directory}/{step} cannot be read ({_describe(e)})')
    if jax.process_count() > 1:  # every process deletes, or none does
      failed = multihost_utils.process_allgather(np.int32(bool(error)))
      error = error or ('another process failed to read it back' if failed.any() else '')
    if error:
      raise UserError(f'{error}, right after writing: the storage does not return what was '
                      'written; the checkpoints before it are kept')
    if self._max_to_keep:
      for old in self.all_steps()[:-self._max_to_keep]:
        self._manager.delete(old)

  def _write_error(self, e: Exception, step: int) -> UserError:
    # The manager lists the failed step from the moment its save began: leave it out.
    kept = max((s for s in self._manager.all_steps() if s != step), default=None)
    return UserError(f'writing checkpoint {step} to {self.directory} failed ({_describe(e)}); '
                     f'disk full or not writable? The finished checkpoints are intact (newest: '
                     f'{kept})')

  def close(self) -> None:
    self._manager.close()


def _describe(e: Exception) -> str:
  first = (str(e).strip().splitlines() or [''])[0]
  first = first.split(' See full TensorStore details')[0]  # a repr of the whole spec follows
  return f'{type(e).__name__}: {first[:200]}'


def newest_compatible_step(directory: str | os.PathLike, abstract_state: Any, family: str,
                           config: ConfigDict) -> int | None:
  """The newest checkpoint whose metadata reads back, after checking that it belongs to this
  run (UserError otherwise); None if there is none. Reads only the metadata."""
  if not layout.path(directory).is_dir():
    return None
  checkpointer = Checkpointer(directory, read_only=True)
  try:
    for step in reversed(checkpointer.all_steps()):
      try:
        checkpointer.check_compatible(step, abstract_state, family, config)
        return step
      except DamagedCheckpoint:
        continue
    return None
  finally:
    checkpointer.close()


def restore_newest_intact(directory: str | os.PathLike, abstract_state: Any, family: str,
                          config: ConfigDict, checked: int | None = None
                          ) -> tuple[Any, dict, int] | None:
  """Returns (state, data-iterator state, step) of the newest checkpoint that restores, or
  None if there is no checkpoint. Damaged newer ones are moved to `directory`.damaged/STEP
  (never deleted), each with one warning line, once an older one has restored; if none
  restores, nothing is moved and a UserError says so (the fault may not be in the files).
  Every process must reach the same step: a UserError otherwise. `checked`: a step that
  `newest_compatible_step` has checked already, restored without reading its metadata again."""
  directory = layout.path(directory)
  if not directory.is_dir():
    return None
  checkpointer = Checkpointer(directory, read_only=True)
  damaged: list[tuple[int, DamagedCheckpoint]] = []
  restored = None
  for step in reversed(checkpointer.all_steps()):
    try:
      if step != checked:
        checkpointer.check_compatible(step, abstract_state, family, config)
      restored = (*checkpointer.restore(step, abstract_state), step)
      break
    except DamagedCheckpoint as e:
      damaged.append((step, e))
  checkpointer.close()
  if restored is None and damaged:
    raise UserError(f'no checkpoint in {directory} can be read; the newest: {damaged[0][1]}')
  if restored is None:
    return None
  steps = multihost_utils.process_allgather(np.int64(restored[2]))
  if np.any(steps != restored[2]):
    raise UserError(f'processes restored different checkpoints {sorted(set(steps.tolist()))} '
                    f'of {directory}: is the file system the same on every host?')
  for step, error in damaged:
    target = directory.with_name(f'{directory.name}.damaged') / str(step)
    if jax.process_index() == 0:
      if target.exists():  # damaged again at the same step: keep both
        target = target.with_name(f'{target.name}-{time.strftime("%Y%m%d-%H%M%S")}')
      layout.make_dirs(target.parent)
      (directory / str(step)).rename(target)
    log.warning('%s; moved it to %s and resuming from checkpoint %d', error, target,
                restored[2])
  return restored


def latest_step(directory: str | os.PathLike) -> int | None:
  """The newest finished checkpoint in `directory` (read-only; None if none or no folder)."""
  if not layout.path(directory).is_dir():
    return None
  return Checkpointer(directory, read_only=True).latest_step()


def restore_checkpoint(directory: str | os.PathLike, abstract_state: Any, family: str,
                       step: int | None = None) -> tuple[Any, int]:
  """Returns (state, step) of checkpoint `step` (None: the newest) in `directory`, opened
  read-only; a UserError if there is none or it belongs to another model."""
  step = latest_step(directory) if step is None else step
  if step is None:
    raise UserError(f'no checkpoint in {directory}: run --mode=train first')
  checkpointer = Checkpointer(directory, read_only=True)
  if step not in checkpointer.all_steps():
    raise UserError(f'no checkpoint of step {step} in {directory}; it holds steps '
                    f'{checkpointer.all_steps()}')
  checkpointer.check_compatible(step, abstract_state, family)
  state, _ = checkpointer.restore(step, abstract_state)
  checkpointer.close()
  return state, step


def restore_run(workdir: str, mesh: Mesh) -> tuple[ConfigDict, Family, Any]:
  """Returns (config, family, state) of the run in `workdir`: its config.json, the family it
  builds, and its newest checkpoint's state replicated on `mesh`."""
  path = layout.config_file(workdir)
  if not path.exists():
    raise UserError(f'no config.json there: train a run into {workdir} first')
  config = from_json(path.read_text())
  family = get_family(config)
  abstract_state = jax.eval_shape(state_lib.initializer(family, config, mesh))
  state, _ = restore_checkpoint(layout.checkpoints(workdir), abstract_state, family.name)
  return config, family, state
