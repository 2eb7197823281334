"""1 device and 8 devices train to the same parameters, with SGD (no normalisation that could
hide a wrong gradient scale) and with Adam, with binarization, flips, diffusion timesteps and
dropout masks drawn per example, and a GAN whose BatchNorm statistics are global; a shipped
config whose eval batch divides by no device count evaluates to the same numbers on 8 and 32."""

import os

import numpy as np
import pytest

from tests.conftest import (
  digits_args,
  flat_params,
  gan_digits_args,
  read_metrics,
  restore_run,
  run_cli,
  run_experiment,
)


def assert_same_training_on_1_and_8_devices(tmp_path, make_args, num_steps, tolerance=1e-5):
  """Runs the CLI with make_args(workdir) on 1 and on 8 devices and compares the parameters
  (relative l2 difference at most `tolerance`)."""
  params = {}
  for devices in (1, 8):
    workdir = str(tmp_path / f'devices{devices}')
    run_cli(*make_args(workdir), f'--config.train.num_steps={num_steps}', devices=devices)
    state, step = restore_run(workdir)
    assert step == num_steps
    params[devices] = flat_params(state)
  relative = np.linalg.norm(params[1] - params[8]) / np.linalg.norm(params[1])
  assert relative <= tolerance, f'1 vs 8 devices differ by {relative:.2e} (relative l2)'
  # Training moved the parameters far more than the runs differ: the check is not vacuous.
  initial = flat_params(run_experiment(workdir).init())
  assert np.linalg.norm(params[1] - initial) > 100 * np.linalg.norm(params[1] - params[8])


@pytest.mark.parametrize('optimizer,lr', [
    ('sgd', '0.05'), pytest.param('adam', '0.001', marks=pytest.mark.slow)])
def test_vae_agrees_on_one_and_eight_devices(tmp_path, tfds_dir, optimizer, lr):
  assert_same_training_on_1_and_8_devices(tmp_path, lambda workdir: digits_args(
      workdir, tfds_dir, f'--config.optim.name={optimizer}', f'--config.optim.learning_rate={lr}',
      '--config.data.batch_size=32', '--config.sample.every_steps=0',
      '--config.evals.likelihood.every_steps=0', '--config.data.random_flip=True',
      '--config.data.binarize=True', '--config.model.likelihood=bernoulli'), num_steps=20)


CONDITIONAL = ('--config.model.num_classes=10', '--config.diffusion.label_dropout=0.3',
               '--config.sample.guidance=1.5')


# EDM's formulation, sampled by its stochastic sampler (fresh noise at every step).
EDM = ('--config.diffusion.formulation=edm', '--config.sample.sampler=heun',
       '--config.sample.spacing=karras', '--config.sample.steps=6', '--config.sample.churn=5')


# Both, guided at some of the noise levels only (a lax.cond per level).
EDM_GUIDED = (*EDM, *CONDITIONAL, '--config.sample.guidance_sigma_min=0.5',
              '--config.sample.guidance_sigma_max=10')


@pytest.mark.slow
@pytest.mark.parametrize('overrides', [(), CONDITIONAL, EDM, EDM_GUIDED],
                         ids=['unconditional', 'conditional', 'edm', 'edm_guided_interval'])
def test_ddpm_with_dropout_agrees_on_one_and_eight_devices(tmp_path, tfds_dir, overrides):
  def args(workdir):
    return ['--config=configs/ddpm_digits.py', f'--workdir={workdir}',
            f'--config.data.data_dir={tfds_dir}', '--config.data.batch_size=32',
            '--config.model.dropout=0.1', '--config.sample.every_steps=0',
            '--config.data.random_flip=True', '--config.eval.batch_size=96', *overrides]

  assert_same_training_on_1_and_8_devices(tmp_path, args, num_steps=10)
  if overrides:  # guided or stochastic samples of one checkpoint on 1 and 8 devices
    samples = {}
    for devices in (1, 8):
      output = str(tmp_path / f'samples{devices}.npz')
      run_cli(*args(str(tmp_path / 'devices1')), '--mode=sample', '--config.sample.num=20',
              f'--config.sample.output={output}', devices=devices)
      samples[devices] = np.load(output)
    if overrides == CONDITIONAL:  # and the classes asked
      np.testing.assert_array_equal(samples[1]['labels'], np.arange(20) % 10)
      np.testing.assert_array_equal(samples[8]['labels'], samples[1]['labels'])
    difference = np.abs(samples[1]['images'].astype(int) - samples[8]['images'].astype(int))
    assert difference.max() <= 1  # float rounding may move a pixel by one level


@pytest.mark.parametrize('overrides', [
    pytest.param((), marks=pytest.mark.slow),
    pytest.param(('--config.model.d_norm=layer', '--config.model.spectral_norm=True',
                  '--config.gan.loss=wasserstein', '--config.gan.gp_weight=10.0'),
                 marks=pytest.mark.slow),
    pytest.param(('--config.model.arch=resnet', '--config.model.d_channels=(16,16,16)',
                  '--config.model.d_norm=none', '--config.model.spectral_norm=True',
                  '--config.gan.loss=hinge'), marks=pytest.mark.slow),  # 47 s on 2 cores
    pytest.param(('--config.model.arch=resnet', '--config.model.d_channels=(16,16,16)',
                  '--config.model.d_norm=none', '--config.model.spectral_norm=True',
                  '--config.gan.loss=hinge', '--config.model.num_classes=10'),
                 marks=pytest.mark.slow),
], ids=['batchnorm', 'layernorm-sn-gp', 'resnet-sn-hinge', 'resnet-projection'])
def test_gan_agrees_on_one_and_eight_devices(tmp_path, tfds_dir, overrides):
  """Plain SGD (a wrong gradient scale would show), two D updates per step (each on its own
  examples), global BatchNorm or spectral norm with the gradient penalty. At learning rate
  0.05 the two-player dynamics amplify float-rounding differences ~1e4-fold within 5 steps
  (seen: 1e-7 to 4e-3 in d_loss), so the comparison uses 0.01 (1e-8 relative here)."""
  assert_same_training_on_1_and_8_devices(tmp_path, lambda workdir: gan_digits_args(
      workdir, tfds_dir, '--config.sample.every_steps=0', '--config.data.random_flip=True',
      '--config.optim.name=sgd', '--config.optim.learning_rate=0.01',
      '--config.optim_d.learning_rate=0.01', '--config.gan.n_critic=2',
      *overrides), num_steps=10)


@pytest.mark.slow
@pytest.mark.parametrize('devices', [8, 32])
def test_vae_digits_as_shipped_trains_and_evaluates_on_many_devices(tmp_path, tfds_dir, devices):
  """eval.batch_size 99 and sample.grid 64 divide by neither 8 nor 32: the batches are padded,
  and every evaluator's numbers are those of 1 device."""
  lines = {}
  for count in (1, devices):
    workdir = str(tmp_path / f'devices{count}')
    run_cli('--config=configs/vae_digits.py', f'--workdir={workdir}',
            f'--config.data.data_dir={tfds_dir}', '--config.train.num_steps=10',
            '--config.evals.likelihood.every_steps=10',
            '--config.evals.reconstruction.every_steps=10', devices=count)
    lines[count] = read_metrics(workdir, 'eval')
    assert os.path.exists(os.path.join(workdir, 'samples', 'step_0000010.png'))
  assert [r['evaluator'] for r in lines[1]] == ['likelihood', 'reconstruction']
  for one, many in zip(lines[1], lines[devices], strict=True):
    assert one.keys() == many.keys() and one['num_examples'] == many['num_examples'] == 297
    for key in set(one) - {'step', 'split', 'evaluator'}:
      assert many[key] == pytest.approx(one[key], rel=1e-4), key


def test_a_training_batch_that_does_not_divide_is_one_clear_line(tmp_path, tfds_dir):
  workdir = str(tmp_path / 'run')
  result = run_cli(*digits_args(workdir, tfds_dir, '--config.data.batch_size=12'), devices=8,
                   check=False)
  assert result.returncode == 1 and not os.path.exists(workdir)
  assert result.stderr.strip().splitlines()[-1] == (
      'gen_jax: error: data.batch_size=12 does not divide by the device count 8; use a '
      'multiple of 8')
