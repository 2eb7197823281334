"""The evaluator registry and its configs: every type has config defaults, bad evaluator
configs fail with one clear message, and the reconstruction evaluator's errors and their
masking equal a brute-force numpy computation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict

from gen_jax import config_lib, evaluators
from gen_jax.data import pipeline
from gen_jax.errors import UserError
from gen_jax.evaluators import Run
from gen_jax.parallel import make_mesh
from tests.families.test_vae import load_config


def test_every_registered_type_has_config_defaults():
  assert set(evaluators.TYPES) == set(config_lib.EVALUATORS)
  for kind, defaults in config_lib.EVALUATORS.items():
    spec = config_lib.evaluator(kind)
    assert spec.type == kind and spec.every_steps == 0 and set(spec) == {'type', *defaults}
  with pytest.raises(UserError, match="evaluator type 'bleu'"):
    config_lib.evaluator('bleu')
  with pytest.raises(UserError, match=r"evaluator 'likelihood' has no keys \['metrics'\]"):
    config_lib.evaluator('likelihood', metrics=('fid',))


def test_bad_evaluator_configs_name_their_key(tfds_dir):
  config = load_config('ddpm_digits')
  config.data.data_dir = tfds_dir
  config.evals.likelihood.every_steps = -1
  with pytest.raises(UserError, match='evals.likelihood.every_steps=-1'):
    config_lib.validate(config)
  run = Run(data=config.data, batch_size=10, seed=0, key=jax.random.key(0), mesh=make_mesh(),
            eval_step=None, sample=None, reconstruct=None)
  cases = [
      (config_lib.evaluator('likelihood', num_examples=298),
       "evals.e.num_examples=298 but split 'test' of 'digits' holds only 297 examples"),
      (config_lib.evaluator('reconstruction'), 'this family does not reconstruct'),
      (config_lib.evaluator('sample_quality', metrics=('fid', 'lpips')),
       r"evals.e.metrics=\('fid', 'lpips'\): expected some of"),
      (config_lib.evaluator('sample_quality'), 'evals.e needs samples'),
  ]
  for spec, message in cases:
    with pytest.raises(UserError, match=message):
      evaluators.build(ConfigDict({'e': spec}), run, ['e'])
  with pytest.raises(UserError, match="eval.only='e,f'"):
    evaluators.selected(ConfigDict({'e': cases[0][0]}), 'e,f')
  assert evaluators.selected(ConfigDict({'e': cases[0][0]}), '') == ['e']


def test_reconstruction_errors_equal_a_brute_force_computation(tfds_dir):
  """40 test digits in batches of 16 (the last padded): a 'reconstruction' that scales each
  image by the parameter, so every image has its own error."""
  config = load_config('vae_digits')
  config.data.data_dir = tfds_dir

  def reconstruct(scale, batch):
    images = batch['image'].astype(jnp.float32) / 127.5 - 1.0
    return images, images * scale

  run = Run(data=config.data, batch_size=16, seed=0, key=jax.random.key(0), mesh=make_mesh(),
            eval_step=None, sample=None, reconstruct=jax.jit(reconstruct))
  (evaluator,) = evaluators.build(
      ConfigDict({'r': config_lib.evaluator('reconstruction', num_examples=40)}), run, ['r'])
  metrics, protocol = evaluator.evaluate(ConfigDict({'ema_params': 0.5}), None)

  (batch,) = pipeline.eval_batches(config.data, 'test', 40, 40, 0, 1)
  x = batch['image'].astype(np.float64) / 255.0  # [0, 1]
  # x in [-1, 1] is 2x - 1; half of it, back on [0, 1], is x / 2 + 1 / 4.
  mse = np.mean((x / 2 + 0.25 - x) ** 2, axis=(1, 2, 3))
  assert metrics['num_examples'] == 40 and protocol == {}
  assert metrics['mse'] == pytest.approx(mse.mean(), rel=1e-5)
  assert metrics['psnr'] == pytest.approx(np.mean(-10 * np.log10(mse)), rel=1e-5)
