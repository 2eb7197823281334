"""The modes besides training: eval, sample and summary of a config in a workdir, and
preparing its dataset."""

import json
import logging
import math
import os
import time

import jax
import numpy as np
from etils import epath
from ml_collections import ConfigDict

from gen_jax import config_lib, evaluators, images, labels, layout
from gen_jax import experiment as experiment_lib
from gen_jax import masks as masks_lib
from gen_jax.checkpoint import latest_step, restore_checkpoint
from gen_jax.data import image_builders, pipeline, sources
from gen_jax.diffusion import editing
from gen_jax.errors import ConfigError, UserError
from gen_jax.metric_writer import MetricWriter

log = logging.getLogger(__name__)


def _evaluate_step(exp: experiment_lib.Experiment, evals: list[evaluators.Evaluator],
                   workdir: str, step: int) -> dict[str, dict[str, float]]:
  """Runs `evals` on checkpoint `step`; each writes eval/NAME/step_N.json (its metrics and
  protocol) and a metrics line. Returns {name: metrics}."""
  state, _ = restore_checkpoint(layout.checkpoints(workdir), exp.abstract_state,
                                exp.family.name, step)
  primary = jax.process_index() == 0
  writer = MetricWriter(workdir, is_primary=primary)
  results = {}
  try:
    for evaluator in evals:
      path = layout.eval_file(workdir, evaluator.name, step)
      progress = layout.eval_progress_dir(workdir, evaluator.name, step)
      if primary:
        layout.make_dirs(path.parent)
      metrics, protocol = evaluators.record(evaluator, state, step, writer, progress)
      if primary:
        record = {'step': step, 'evaluator': evaluator.name,
                  'split': exp.config.data.eval_split, **metrics}
        path.write_text(json.dumps(record | ({'protocol': protocol} if protocol else {}),
                                   indent=2))
        progress.rmtree(missing_ok=True)
      results[evaluator.name] = metrics
  finally:
    writer.close()
  return results


def evaluate_checkpoint(config: ConfigDict, workdir: str) -> dict[str, dict[str, float]]:
  """Runs the evaluators of `eval.only` (default: all of config.evals) on checkpoint
  `eval.checkpoint_step` (0: the newest). With `eval.watch`, an evaluation job beside
  training: evaluates each new checkpoint (each evaluator that has no result for it yet)
  until train.num_steps.

  Returns {evaluator name: metrics} of the last checkpoint evaluated.
  """
  config_lib.validate(config)
  pinned = config.eval.checkpoint_step
  if pinned and config.eval.watch:
    raise UserError(f'eval.checkpoint_step={pinned} with eval.watch=True: expected one of '
                    'them (watch evaluates each new checkpoint)')
  exp = experiment_lib.build(config)
  evals = evaluators.build(config.evals, experiment_lib.eval_run(exp),
                           evaluators.selected(config.evals, config.eval.only))
  directory = layout.checkpoints(workdir)
  results, evaluated = {}, None
  while True:
    step = latest_step(directory)
    if step is None and not config.eval.watch:
      raise UserError(f'no checkpoint in {directory}: run --mode=train first')
    step = pinned or step
    if step is not None and step != evaluated:
      todo = [e for e in evals if not (config.eval.watch and
                                       layout.eval_file(workdir, e.name, step).exists())]
      if todo:
        results = _evaluate_step(exp, todo, workdir, step)
      evaluated = step
    if not config.eval.watch or (step is not None and step >= config.train.num_steps):
      return results
    time.sleep(config.eval.watch_interval)


def _write_arrays_and_grid(path: epath.Path, grid: np.ndarray, **arrays: np.ndarray) -> None:
  """Writes `arrays` to the .npz `path` and the uint8 `grid` beside it as .png."""
  layout.make_dirs(path.parent)
  with path.open('wb') as f:
    np.savez(f, **arrays)
  path.with_suffix('.png').write_bytes(images.png_bytes(grid))


def sample(config: ConfigDict, workdir: str) -> np.ndarray:
  """Writes `sample.num` samples (EMA params) of checkpoint `sample.checkpoint_step` (0: the
  newest) to `sample.output` (default: `layout.samples_file`), key 'images' (and, for a
  class-conditional model, 'labels': the class each was asked for), and their grid beside
  it (.png; one row per class of a class-conditional model).

  Returns: uint8 [sample.num, H, W, C].
  """
  config_lib.validate(config)
  exp = experiment_lib.build(config)
  if exp.sample is None:
    raise UserError(f'family {config.family!r} does not generate samples')
  state, step = restore_checkpoint(layout.checkpoints(workdir), exp.abstract_state,
                                   exp.family.name, config.sample.checkpoint_step or None)
  result = experiment_lib.sample_images(exp, state.ema_params, config.sample.num)
  path = (layout.path(config.sample.output) if config.sample.output
          else layout.samples_file(workdir, step))
  conditional = {}
  if labels.num_classes(config):
    conditional['labels'] = labels.for_ids(config, np.arange(len(result)))
  _, order, columns = labels.grid_layout(config, len(result))  # one row per class
  if jax.process_index() == 0:
    _write_arrays_and_grid(path, images.make_grid(result[order], columns), images=result,
                           **conditional)
  log.info('Wrote %d samples of step %d to %s (grid: %s).', len(result), step, path,
           path.with_suffix('.png'))
  return result


def _check_edit(config: ConfigDict) -> None:
  e = config.edit
  for key, ok, expected in (
      ('num', e.num > 0, 'a positive integer'),
      ('strength', 0.0 < e.strength <= 1.0, 'a value in (0, 1]'),
      ('jump', e.jump > 0, 'a positive integer'),
      ('resample', e.resample > 0, 'a positive integer'),
      ('fraction', 0.0 <= e.fraction <= 1.0, 'a value in [0, 1]'),
      ('mask', e.mask in masks_lib.SHAPES or layout.path(e.mask).is_file(),
       f'one of {masks_lib.SHAPES} or the path of a mask image')):
    if not ok:
      raise ConfigError(f'edit.{key}={e[key]!r}: expected {expected}')
  taken = config.sample.steps - editing.start_level(config.sample.steps, e.strength)
  if e.resample > 1 and e.jump >= taken:
    raise ConfigError(f'edit.jump={e.jump} with edit.resample={e.resample}: expected a jump '
                      f'below {taken}, the steps this edit takes (sample.steps='
                      f'{config.sample.steps} at edit.strength={e.strength})')


def edit_sources(config: ConfigDict) -> tuple[np.ndarray, np.ndarray]:
  """The first edit.num images of edit.source (a folder, its classes in sorted order if it
  has class folders; '': data.eval_split) as uint8 [n, H, W, C] at the config's size, and
  their labels int32 [n] (-1: none)."""
  data, e = config.data, config.edit
  if not e.source:
    batch = next(pipeline.eval_batches(data, data.eval_split, e.num, e.num, 0, 1, 'edit.num'))
    return batch['image'], batch['label'].astype(np.int32)
  try:
    classes = image_builders.list_image_folder(e.source)
  except (OSError, ValueError) as err:
    raise UserError(f'edit.source={e.source!r}: {err}') from None
  files = [(label if name else -1, path) for label, (name, paths) in enumerate(classes.items())
           for path in paths][:e.num]
  if labels.num_classes(config) and max(label for label, _ in files) >= labels.num_classes(
      config):
    raise UserError(f'edit.source={e.source!r} has {len(classes)} class folders but '
                    f'model.num_classes={labels.num_classes(config)}')
  if len(files) < e.num:
    raise UserError(f'edit.num={e.num} but edit.source={e.source!r} holds only {len(files)} '
                    'images')
  mode = 'L' if data.channels == 1 else 'RGB'
  try:
    given = np.stack([image_builders.load_image(os.path.join(e.source, path), path, mode,
                                                data.crop_size, data.image_size)
                      for _, path in files])
  except ValueError as err:
    raise UserError(str(err)) from None
  return given, np.asarray([label for label, _ in files], np.int32)


def edit(config: ConfigDict, workdir: str) -> np.ndarray:
  """Edits the images of `edit_sources` with the EMA params of checkpoint
  `sample.checkpoint_step` (0: the newest): regenerates them where the edit.mask is 0, from
  noise (edit.strength 1: inpainting) or from the image noised part of the way (SDEdit). A
  class-conditional model is asked for each image's label (from the split or the class
  folders), or, where there is none, for `sample.labels` in turn. Writes `edit.output`
  (default: `layout.edits_file`) with 'given', 'edited' (uint8 [n, H, W, C]) and 'masks'
  (float32 [n, H, W, 1]), and beside it a grid (.png) with one column per image: given,
  given with the regenerated pixels grey, edited.

  Returns: the edited images, uint8 [n, H, W, C].
  """
  config_lib.validate(config)
  exp = experiment_lib.build(config)
  if exp.edit is None:
    raise UserError(f'family {config.family!r} does not edit images: --mode=edit is the '
                    "diffusion family's (ddpm)")
  _check_edit(config)
  e = config.edit
  given, classes = edit_sources(config)
  ids = np.arange(len(given))
  classes = np.where(classes >= 0, classes, labels.for_ids(config, ids))
  try:
    shown = masks_lib.masks(e.mask, config.data.image_size, ids, e.fraction, config.seed,
                            config.data.crop_size)
  except (OSError, ValueError) as err:
    raise ConfigError(f'edit.mask={e.mask!r}: {err}') from None
  state, step = restore_checkpoint(layout.checkpoints(workdir), exp.abstract_state,
                                   exp.family.name, config.sample.checkpoint_step or None)
  result = experiment_lib.edit_images(exp, state.ema_params, given, shown, classes)
  path = layout.path(e.output) if e.output else layout.edits_file(workdir, step)
  if jax.process_index() == 0:
    masked = np.where(shown > 0, given, 128).astype(np.uint8)
    grid = images.make_grid(np.concatenate([given, masked, result]), columns=len(given))
    _write_arrays_and_grid(path, grid, given=given, edited=result, masks=shown)
  log.info('Edited %d images with step %d (%s mask, strength %s, %d network evaluations '
           'each): %s (grid: %s).', len(result), step, e.mask, e.strength,
           editing.network_evaluations(config.sample.steps, e.strength, e.jump, e.resample),
           path, path.with_suffix('.png'))
  return result


def summary(config: ConfigDict, workdir: str) -> dict:
  """Prints the parameter shapes (from `jax.eval_shape`, nothing computed) and writes
  summary.json: {"num_params": total, "networks": {top-level name: count}}."""
  config_lib.validate(config)
  exp = experiment_lib.build(config)
  params = exp.abstract_state.params
  rows = [(jax.tree_util.keystr(path, simple=True, separator='/'), leaf.shape)
          for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]]
  count = lambda tree: sum(math.prod(x.shape) for x in jax.tree.leaves(tree))  # noqa: E731
  networks = ({name: count(params[name]) for name in exp.family.networks}
              or {'model': count(params)})
  result = {'num_params': sum(networks.values()), 'networks': networks}
  width = max(len(name) for name, _ in rows)
  lines = [f'{name:<{width}}  {str(shape):<20} {math.prod(shape):>12,}' for name, shape in rows]
  lines += [f'{"total":<{width}}  {"":<20} {result["num_params"]:>12,}']
  if jax.process_index() == 0:
    print('\n'.join(lines))
    layout.make_dirs(layout.path(workdir))
    layout.summary_file(workdir).write_text(json.dumps(result, indent=2))
  return result


def prepare(config: ConfigDict, workdir: str | None = None) -> dict[str, int]:
  """Prepares the config's dataset in data.data_dir (once, on one host, before a multi-host
  launch: training then only reads it); prints and returns {split: number of examples}."""
  del workdir  # preparing writes only under data.data_dir
  config_lib.validate(config)
  splits = sources.prepare(config.data)
  print(f'{config.data.name}: ' + ', '.join(f'{split} {n:,}' for split, n in splits.items()))
  return splits
