"""The one training loop of every family: log, sample, evaluate and checkpoint on cadence.

Reads top to bottom: setup and checks, state (restored or new), the loop, the hooks.
"""

import contextlib
import functools
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from ml_collections import ConfigDict

from gen_jax import config_lib, evaluators, layout, parallel, stop
from gen_jax import experiment as experiment_lib
from gen_jax import labels as labels_lib
from gen_jax.checkpoint import Checkpointer, newest_compatible_step, restore_newest_intact
from gen_jax.data import pipeline
from gen_jax.errors import UserError
from gen_jax.evaluators.run import batches
from gen_jax.lock import hold_workdir
from gen_jax.metric_writer import MetricWriter

log = logging.getLogger(__name__)


def _format_seconds(seconds: float) -> str:
  minutes, seconds = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f'{hours}h{minutes:02d}m{seconds:02d}s' if hours else f'{minutes}m{seconds:02d}s'


def check_finite(pending: list[tuple[int, dict]], last_checkpoint: int | None) -> None:
  """Raises a UserError naming the first step in `pending` with a non-finite metric (the loss,
  or the norms of gradients and new parameters), so no non-finite state is ever saved."""
  for step, metrics in zip([s for s, _ in pending], parallel.host_values([m for _, m in pending])):
    bad = [name for name, value in metrics.items() if not np.isfinite(value)]
    if bad:
      kept = (f'the last good checkpoint (step {last_checkpoint}) is kept'
              if last_checkpoint is not None else 'no checkpoint was written')
      raise UserError(f'non-finite {bad[0]} ({float(metrics[bad[0]])}) at step {step}; '
                      f'training stopped and {kept}. Lower optim.learning_rate or set '
                      'optim.grad_clip')


def check_batch(batch: dict[str, np.ndarray], config: ConfigDict) -> None:
  expected = (config.data.image_size, config.data.image_size, config.data.channels)
  if batch['image'].shape[1:] != expected:
    raise UserError(f'dataset {config.data.name!r} gives images of shape '
                    f'{batch["image"].shape[1:]}, but the config expects {expected} '
                    '(data.image_size, data.image_size, data.channels)')
  labels_lib.check(batch['label'], config)


def train_and_evaluate(config: ConfigDict, workdir: str) -> Any:
  """Trains `config` in `workdir`, resuming from its latest checkpoint; returns the state."""
  # ---------------------------------------------------------------- setup and checks
  config_lib.validate(config)
  exp = experiment_lib.build(config)
  parallel.check_divisible(config.data.batch_size, exp.mesh, 'data.batch_size')
  per_device, micro = config.data.batch_size // exp.mesh.size, config.train.grad_accum_steps
  if per_device % micro:
    raise UserError(f'train.grad_accum_steps={micro} does not divide the per-device batch of '
                    f'{per_device} (data.batch_size={config.data.batch_size} over '
                    f'{exp.mesh.size} devices)')
  # Batches are read and placed on the devices ahead of the step that takes them.
  data_iter = pipeline.train_iterator(config.data, config.seed, jax.process_index(),
                                      jax.process_count(),
                                      transform=functools.partial(parallel.shard_batch,
                                                                  mesh=exp.mesh))
  evals = evaluators.build(config.evals, experiment_lib.eval_run(exp),
                           evaluators.in_training(config.evals))
  if config.sample.every_steps and exp.reconstruct is not None:
    pipeline.eval_source(config.data, config.data.eval_split, _pairs(config), 'sample.grid')
  checked = newest_compatible_step(layout.checkpoints(workdir), exp.abstract_state,
                                   exp.family.name, config)
  if checked is not None and checked > config.train.num_steps:
    raise UserError(f'workdir {workdir} holds a checkpoint of step {checked}, past '
                    f'train.num_steps={config.train.num_steps}: nothing to train (raise '
                    'train.num_steps to continue the run, or use another --workdir)')
  check_batch(data_iter.peek(), config)
  # Every check passed: only now is anything written to the workdir.
  layout.make_dirs(layout.path(workdir))
  with contextlib.ExitStack() as stack:
    refused, check_held = '', lambda: None
    if jax.process_index() == 0:
      try:
        check_held = stack.enter_context(hold_workdir(workdir))
      except UserError as e:
        refused = str(e)
    # Every process stops if process 0 could not take the workdir.
    if jax.process_count() > 1 and multihost_utils.broadcast_one_to_all(np.int32(bool(refused))):
      refused = refused or f'workdir {workdir} is in use by another training run'
    if refused:
      raise UserError(refused)
    signalled = stack.enter_context(stop.on_signals())
    return _train(exp, evals, data_iter, config, workdir, checked, check_held, signalled)


def _train(exp: experiment_lib.Experiment, evals: list[evaluators.Evaluator], data_iter: Any,
           config: ConfigDict, workdir: str, checked: int | None,
           check_held: Callable[[], None], signalled: Callable[[], int]) -> Any:
  """The run itself, from a checked config and a workdir this process holds; `checked`: the
  checkpoint whose metadata matched the config before the workdir was taken; `check_held`
  raises a UserError if the workdir's lock was lost (it is called before each save);
  `signalled` returns the stop signal received (0: none): the run then saves the step it is
  at and raises stop.Stopped."""
  directory = layout.checkpoints(workdir)
  # -------------------------------------------------------------- state
  restored = restore_newest_intact(directory, exp.abstract_state, exp.family.name, config,
                                   checked)
  latest = None
  if restored is None:
    state = exp.init()
  else:
    state, data_state, latest = restored
    data_iter.set_state(data_state)
    log.info('Resumed from %s/%d.', directory, latest)
  if jax.process_index() == 0:
    layout.config_file(workdir).write_text(config_lib.to_json(config))
  checkpointer = Checkpointer(directory, config.checkpoint.max_to_keep)
  writer = save_error = None
  try:
    start = int(parallel.host_values(state.step))
    writer = MetricWriter(workdir, jax.process_index() == 0, resume_step=start)
    num_steps = config.train.num_steps
    log.info('Training %s on %d devices (%d processes) from step %d to %d.',
             exp.family.name, exp.mesh.size, jax.process_count(), start, num_steps)

    # -------------------------------------------------------------- loop
    pending: list[tuple[int, dict]] = []  # metrics not yet checked for NaN
    last_checkpoint = latest
    loop_start = window_start = time.perf_counter()
    window_steps, window_wait = 0, data_iter.wait_seconds
    # The ETA's rate: steps after the first (which compiles), over their time less the hooks'.
    rate_start, hook_seconds, losses = loop_start, 0.0, ''
    # Profile `train.profile_steps` steps from the 5th of this run, once compilation is over.
    profile = range(start + 5, start + 5 + config.train.profile_steps)
    for step in range(start + 1, num_steps + 1):
      if profile and step == profile.start:
        jax.profiler.start_trace(str(layout.profile_dir(workdir)))
      batch = next(data_iter)
      state, metrics = exp.train_step(state, batch)
      pending.append((step, metrics))
      window_steps += 1
      if step == start + 1:
        jax.block_until_ready(metrics)
        rate_start = time.perf_counter()
        log.info('First step (compilation included) took %.1f s.', rate_start - loop_start)
        if not due(step, config.train.log_every, step == num_steps):  # keep it out of steps/s
          window_start, window_steps, window_wait = rate_start, 0, data_iter.wait_seconds
      if profile and step == min(profile[-1], num_steps) and step >= profile.start:
        jax.block_until_ready(metrics)
        jax.profiler.stop_trace()
        log.info('Profile of steps %d-%d written to %s/profile (TensorBoard or Perfetto).',
                 profile.start, step, workdir)

      is_last = step == num_steps
      log_now = due(step, config.train.log_every, is_last)
      stopping = not is_last and stop.agreed(signalled(), jax.process_count(), log_now)
      save_now = is_last or bool(stopping) or due(step, config.checkpoint.every_steps, False)
      # A stopping run (a preemption notice gives seconds) saves without its sample and evals.
      sample_now = (exp.sample is not None and not stopping
                    and due(step, config.sample.every_steps, is_last))
      eval_now = [e for e in evals if not stopping and due(step, e.every_steps, is_last)]
      if log_now or save_now or sample_now or eval_now:
        check_finite(pending, last_checkpoint)
        pending = []
      if log_now:
        checkpointer.check()  # a failed asynchronous save stops the run here
        now = time.perf_counter()
        steps_per_sec = window_steps / max(now - window_start, 1e-9)
        # the share of the window's training time spent waiting for input
        data_wait = (data_iter.wait_seconds - window_wait) / max(now - window_start, 1e-9)
        scalars = {k: float(v) for k, v in parallel.host_values(metrics).items()}
        writer.write_scalars(step, 'train',
                             scalars | {'steps_per_sec': steps_per_sec, 'data_wait': data_wait})
        timed = step - start - 1
        per_step = (now - rate_start - hook_seconds) / timed if timed else now - loop_start
        eta = (num_steps - step) * per_step
        losses = ' '.join(f'{k} {v:.4f}' for k, v in scalars.items()
                          if k == 'loss' or k.endswith('_loss'))
        log.info('step %d/%d | %s | %.2f steps/s | data wait %.0f%% | ETA %s', step, num_steps,
                 losses, steps_per_sec, 100 * data_wait, _format_seconds(eta))
        window_start, window_steps, window_wait = now, 0, data_iter.wait_seconds
      # Hooks run before the save, so a run killed after it has written everything of the step.
      hooks_start = time.perf_counter()
      if sample_now:
        write_samples(exp, state, writer, step)
      for evaluator in eval_now:
        evaluators.record(evaluator, state, step, writer)
      hooks_took = time.perf_counter() - hooks_start
      window_start += hooks_took  # steps/s: training steps only
      hook_seconds += hooks_took
      if save_now:
        check_held()
        checkpointer.save(step, state, data_iter.get_state(), exp.family.name, config)
        last_checkpoint = step
      if stopping:
        checkpointer.wait()
        raise stop.Stopped(step, stopping, str(directory / str(step)))
    checkpointer.wait()
    if num_steps > start:
      rate = (num_steps - start - 1) / max(time.perf_counter() - rate_start - hook_seconds, 1e-9)
      log.info('Finished steps %d-%d in %s (%.2f steps/s after the first step, hooks left '
               'out)%s; checkpoints in %s, samples in %s.', start + 1, num_steps,
               _format_seconds(time.perf_counter() - loop_start), rate,
               f' | {losses}' if losses else '', directory, layout.samples_dir(workdir))
  finally:
    unwinding = sys.exception()
    try:
      checkpointer.wait()  # after an error: let the save in flight finish
    except UserError as e:
      # On a full disk the save's error, naming the steps, is the one to report.
      if isinstance(unwinding, OSError):
        save_error = e
      else:
        log.error('%s', e)
    # A full disk fails the closing writes too: the first error is the one to report.
    quiet = (contextlib.suppress(OSError) if unwinding or save_error
             else contextlib.nullcontext())
    with quiet:
      checkpointer.close()
    data_iter.close()
    if writer is not None:
      with quiet:
        writer.close()
    if save_error:
      raise save_error from None
  return state


def due(step: int, every: int, is_last: bool) -> bool:
  """Whether a hook with cadence `every` (0: never) runs at `step`; enabled hooks also run
  at the last step."""
  return bool(every) and (step % every == 0 or is_last)


def write_samples(exp: experiment_lib.Experiment, state: Any, writer: MetricWriter,
                  step: int) -> None:
  """Writes a grid of samples (EMA params, fixed keys; one row per class of a
  class-conditional model) and, if the family has one, of test images beside their
  reconstructions."""
  num, order, columns = labels_lib.grid_layout(exp.config, exp.config.sample.grid)
  images = experiment_lib.generate(exp, state.ema_params, exp.keys.sample, num)
  writer.write_grid(step, 'samples', images[order], columns)
  if exp.reconstruct is not None:
    num = _pairs(exp.config)
    batch = next(batches(experiment_lib.eval_run(exp), exp.config.data.eval_split, num))
    originals, recon = (np.asarray(multihost_utils.process_allgather(x, tiled=True))
                        for x in exp.reconstruct(state.ema_params, batch))
    pairs = np.stack([originals, recon], axis=1).reshape(-1, *recon.shape[1:])
    writer.write_grid(step, 'reconstructions', pairs[:2 * num])


def _pairs(config: ConfigDict) -> int:
  """Test images shown beside their reconstructions in a grid of `sample.grid` images."""
  return max(1, min(config.sample.grid // 2, config.eval.batch_size))

