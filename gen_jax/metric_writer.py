"""metrics.jsonl, TensorBoard scalars and images (tensorboardX, no TensorFlow), PNG grids.

Only process 0 writes; the other processes' writers do nothing.
"""

import json
import os

import numpy as np
import tensorboardX

from gen_jax import images as images_lib
from gen_jax import layout


def _step_of(line: str) -> int | None:
  """The step of a metrics line; None for a line cut short by a killed process."""
  try:
    return int(json.loads(line)['step'])
  except (ValueError, KeyError, TypeError):
    return None


class MetricWriter:
  """Writes `{"step", "split", ...}` lines to workdir/metrics.jsonl and mirrors them to TB."""

  def __init__(self, workdir: str, is_primary: bool, resume_step: int | None = None):
    """`resume_step`: a training run starting after this step; the lines and TensorBoard
    events of later steps, left by an interrupted run, are dropped. None: append only."""
    self.workdir = workdir
    self.is_primary = is_primary
    self.jsonl_path = layout.metrics_file(workdir)
    self._tb = None
    if is_primary:
      if resume_step is not None:
        self._drop_lines_after(resume_step)
      self._tb = tensorboardX.SummaryWriter(
          layout.tensorboard_dir(workdir),
          purge_step=None if resume_step is None else resume_step + 1)

  def _drop_lines_after(self, step: int) -> None:
    """A resumed run recomputes the steps after its checkpoint: drop their old lines."""
    if not os.path.exists(self.jsonl_path):
      return
    with open(self.jsonl_path) as f:
      lines = f.readlines()
    kept = [line for line in lines if _step_of(line) is not None and _step_of(line) <= step]
    if len(kept) != len(lines):
      tmp = self.jsonl_path + '.tmp'
      with open(tmp, 'w') as f:
        f.writelines(kept)
      os.replace(tmp, self.jsonl_path)

  def write_scalars(self, step: int, split: str, scalars: dict[str, float],
                    evaluator: str | None = None) -> None:
    """One line {"step", "split"[, "evaluator"], NAME: value, ...}; TensorBoard tags
    SPLIT/NAME, or SPLIT/EVALUATOR/NAME for an evaluator's metrics."""
    if not self.is_primary:
      return
    source = {'evaluator': evaluator} if evaluator else {}
    record = {'step': int(step), 'split': split, **source,
              **{k: float(v) for k, v in scalars.items()}}
    with open(self.jsonl_path, 'a') as f:
      f.write(json.dumps(record) + '\n')
    prefix = f'{split}/{evaluator}' if evaluator else split
    for name, value in scalars.items():
      self._tb.add_scalar(f'{prefix}/{name}', float(value), int(step))
    self._tb.flush()

  def write_grid(self, step: int, name: str, images: np.ndarray) -> None:
    """Saves images [N, H, W, C] in [-1, 1] as `layout.grid_file`."""
    if not self.is_primary:
      return
    grid = images_lib.make_grid(images_lib.to_uint8(images))
    path = layout.grid_file(self.workdir, name, step)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
      f.write(images_lib.png_bytes(grid))
    self._tb.add_image(name, grid, int(step), dataformats='HWC')
    self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
