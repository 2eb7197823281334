"""A trained run reloaded from its workdir, in a notebook or a script:

  import gen_jax
  run = gen_jax.load('runs/vae_digits')   # its config.json and newest checkpoint
  images = run.sample(16)                  # uint8 [16, H, W, C], EMA parameters
  metrics = run.evaluate()                 # {evaluator: {metric: value}}

The model is rebuilt from the config the run recorded (its overrides included), so no
config file is needed; `overrides` changes keys that differ on this machine (data.data_dir).
Nothing is written to the workdir.
"""

from typing import Any, NamedTuple

import numpy as np
from ml_collections import ConfigDict

from gen_jax import config_lib, evaluators, layout
from gen_jax import experiment as experiment_lib
from gen_jax.checkpoint import restore_checkpoint
from gen_jax.errors import UserError


class LoadedRun(NamedTuple):
  """A run's config, its experiment (networks, mesh, keys) and a checkpoint's state."""
  config: ConfigDict
  experiment: experiment_lib.Experiment
  state: Any
  step: int

  def sample(self, num: int) -> np.ndarray:
    """Returns `num` samples of the EMA parameters, uint8 [num, H, W, C]: the same images
    as `--mode=sample` with sample.num >= num."""
    if self.experiment.sample is None:
      raise UserError(f'family {self.config.family!r} does not generate samples')
    return experiment_lib.sample_images(self.experiment, self.state.ema_params, num)

  def evaluate(self, names: tuple[str, ...] = ()) -> dict[str, dict[str, float]]:
    """Runs the config's evaluators `names` (default: all of config.evals) on the state;
    returns {name: metrics}, the numbers `--mode=eval` writes."""
    run = experiment_lib.eval_run(self.experiment)
    chosen = evaluators.selected(self.config.evals, ','.join(names))
    return {e.name: e.evaluate(self.state, None)[0]
            for e in evaluators.build(self.config.evals, run, chosen)}


def load(workdir: str, step: int | None = None,
         overrides: dict[str, Any] | None = None) -> LoadedRun:
  """Rebuilds the run in `workdir` from its config.json and restores checkpoint `step` (None:
  the newest); `overrides`: {'data.data_dir': ..., ...} applied to the recorded config."""
  path = layout.config_file(workdir)
  if not path.exists():
    raise UserError(f'no config.json in {workdir}: train a run there first')
  config = config_lib.from_json(path.read_text())
  config.update_from_flattened_dict(overrides or {})
  config_lib.validate(config)
  exp = experiment_lib.build(config)
  state, step = restore_checkpoint(layout.checkpoints(workdir), exp.abstract_state,
                                   exp.family.name, step)
  return LoadedRun(config, exp, state, step)
