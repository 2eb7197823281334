"""metrics.jsonl, TensorBoard scalars and images (tensorboardX, no TensorFlow), PNG grids.

Only process 0 writes; the other processes' writers do nothing. In a local workdir each
line is appended to metrics.jsonl. Objects cannot be appended to: in a gs:// workdir each
line rewrites the object (read, add the line, write; at the logging cadence, so a killed
run loses nothing it logged). A line that an evaluation job beside training writes between
the trainer's read and write of the same object is lost from metrics.jsonl (its
eval/NAME/step_STEP.json is kept); one writer per gs:// metrics.jsonl avoids that.
"""

import json

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
          str(layout.tensorboard_dir(workdir)),
          purge_step=None if resume_step is None else resume_step + 1)

  def _drop_lines_after(self, step: int) -> None:
    """A resumed run recomputes the steps after its checkpoint: drop their old lines."""
    if not self.jsonl_path.exists():
      return
    lines = self.jsonl_path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if _step_of(line) is not None and _step_of(line) <= step]
    if len(kept) == len(lines):
      return
    if layout.is_object_store(self.jsonl_path):  # an object is replaced whole
      self.jsonl_path.write_text(''.join(kept))
    else:
      tmp = self.jsonl_path.with_name(self.jsonl_path.name + '.tmp')
      tmp.write_text(''.join(kept))
      tmp.replace(self.jsonl_path)

  def write_scalars(self, step: int, split: str, scalars: dict[str, float],
                    evaluator: str | None = None) -> None:
    """One line {"step", "split"[, "evaluator"], NAME: value, ...}; TensorBoard tags
    SPLIT/NAME, or SPLIT/EVALUATOR/NAME for an evaluator's metrics."""
    if not self.is_primary:
      return
    source = {'evaluator': evaluator} if evaluator else {}
    record = {'step': int(step), 'split': split, **source,
              **{k: float(v) for k, v in scalars.items()}}
    line = json.dumps(record) + '\n'
    if layout.is_object_store(self.jsonl_path):
      old = self.jsonl_path.read_text() if self.jsonl_path.exists() else ''
      self.jsonl_path.write_text(old + line)
    else:
      with self.jsonl_path.open('a') as f:
        f.write(line)
    prefix = f'{split}/{evaluator}' if evaluator else split
    for name, value in scalars.items():
      self._tb.add_scalar(f'{prefix}/{name}', float(value), int(step))
    self._tb.flush()

  def write_grid(self, step: int, name: str, images: np.ndarray,
                 columns: int | None = None) -> None:
    """Saves images [N, H, W, C] in [-1, 1] as `layout.grid_file`, `columns` wide (None: a
    square grid)."""
    if not self.is_primary:
      return
    grid = images_lib.make_grid(images_lib.to_uint8(images), columns)
    path = layout.grid_file(self.workdir, name, step)
    layout.make_dirs(path.parent)
    path.write_bytes(images_lib.png_bytes(grid))
    self._tb.add_image(name, grid, int(step), dataformats='HWC')
    self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
