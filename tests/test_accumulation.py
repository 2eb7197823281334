"""train.grad_accum_steps: k micro-batches of B/k give the update of one batch of B."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax import state as state_lib
from gen_jax.errors import UserError
from gen_jax.families import get_family
from tests.conftest import digits_args, flat_params, restore_run, run_cli, run_experiment
from tests.families.test_gan import digits_gan
from tests.test_faults import last_line


def test_loss_and_grads_of_micro_batches_is_the_batch_mean():
  """A least-squares loss, mean over 12 examples: its gradient is X^T (X w - y) / 12."""
  x = jax.random.normal(jax.random.key(0), (12, 3))
  y = jax.random.normal(jax.random.key(1), (12,))
  w = jnp.array([0.5, -1.0, 2.0])

  def loss_fn(w, batch):
    residual = batch['x'] @ w - batch['y']
    return 0.5 * jnp.mean(residual ** 2), {'max': jnp.max(jnp.abs(residual))}

  exact_grad = x.T @ (x @ w - y) / 12
  for k in (1, 2, 3, 4, 6, 12):
    (loss, aux), grads = jax.jit(lambda w, b, k=k: state_lib.loss_and_grads(
        loss_fn, w, b, k))(w, {'x': x, 'y': y})
    np.testing.assert_allclose(grads, exact_grad, rtol=1e-5)
    assert float(loss) == pytest.approx(0.5 * float(jnp.mean((x @ w - y) ** 2)), rel=1e-5)
    assert set(aux) == {'max'}  # averaged over the micro-batches like the loss


def assert_accumulation_changes_nothing(tmp_path, args, micro, num_steps=20, devices=1):
  """Trains args(workdir) without and with `micro` micro-batches; compares the parameters."""
  params = {}
  for k in (1, micro):
    workdir = str(tmp_path / f'accum{k}')
    run_cli(*args(workdir), f'--config.train.grad_accum_steps={k}',
            f'--config.train.num_steps={num_steps}', devices=devices)
    state, _ = restore_run(workdir)
    params[k] = flat_params(state)
  relative = np.linalg.norm(params[1] - params[micro]) / np.linalg.norm(params[1])
  assert relative <= 1e-5, f'{micro} micro-batches differ by {relative:.2e}'
  moved = np.linalg.norm(params[1] - flat_params(run_experiment(workdir).init()))
  assert moved > 100 * np.linalg.norm(params[1] - params[micro])


@pytest.mark.slow
@pytest.mark.parametrize('optimizer,lr', [('sgd', '0.05'), ('adam', '0.001')])
def test_vae_with_4_micro_batches_trains_like_one_batch(tmp_path, tfds_dir, optimizer, lr):
  """Batch 64, binarization and flips by example id: 20 steps with 4 micro-batches of 16."""
  assert_accumulation_changes_nothing(tmp_path, lambda workdir: digits_args(
      workdir, tfds_dir, f'--config.optim.name={optimizer}', f'--config.optim.learning_rate={lr}',
      '--config.data.batch_size=64', '--config.sample.every_steps=0',
      '--config.evals.likelihood.every_steps=0', '--config.data.random_flip=True'), micro=4)


@pytest.mark.slow
def test_ddpm_with_dropout_and_2_micro_batches_on_8_devices_trains_like_one_batch(
    tmp_path, tfds_dir):
  """Timesteps, noise and dropout masks by example id; each device's 8 examples in 2 halves."""
  assert_accumulation_changes_nothing(tmp_path, lambda workdir: [
      '--config=configs/ddpm_digits.py', f'--workdir={workdir}',
      f'--config.data.data_dir={tfds_dir}', '--config.data.batch_size=64',
      '--config.model.dropout=0.1', '--config.sample.every_steps=0',
      '--config.evals.likelihood.every_steps=0'], micro=2, num_steps=10, devices=8)


def test_micro_batches_that_do_not_divide_the_device_batch_are_one_clear_line(tmp_path,
                                                                              tfds_dir):
  result = run_cli(*digits_args(str(tmp_path / 'run'), tfds_dir, '--config.data.batch_size=16',
                                '--config.train.grad_accum_steps=3'), check=False)
  assert result.returncode != 0
  assert last_line(result.stderr) == (
      'gen_jax: error: train.grad_accum_steps=3 does not divide the per-device batch of 16 '
      '(data.batch_size=16 over 1 devices)')


def test_the_gan_refuses_micro_batches(tfds_dir):
  config = digits_gan(tfds_dir)
  config.train.grad_accum_steps = 2
  with pytest.raises(UserError, match='train.grad_accum_steps=2: the GAN takes 1'):
    get_family(config)
