"""The CLI contract: the modes' outputs, and one clear line for each kind of bad input."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from gen_jax import images
from tests.conftest import (
  digits_args,
  read_json,
  read_metrics,
  restore_run,
  run_cli,
  snapshot,
)


@pytest.fixture(scope='module')
def trained(tmp_path_factory, tfds_dir):
  """A short digits run: 40 steps, checkpoints at 20 and 40, grids and eval at 40."""
  workdir = str(tmp_path_factory.mktemp('trained'))
  args = digits_args(workdir, tfds_dir, '--config.train.num_steps=40',
                     '--config.train.log_every=10', '--config.checkpoint.every_steps=20',
                     '--config.sample.every_steps=40', '--config.evals.likelihood.every_steps=40')
  run_cli(*args)
  return workdir, args


def assert_one_line_error(result, *fragments):
  assert result.returncode != 0
  lines = result.stderr.strip().splitlines()
  assert 'Traceback' not in result.stderr, result.stderr
  assert lines[-1].startswith('gen_jax: error: '), result.stderr
  for fragment in fragments:
    assert fragment in lines[-1], lines[-1]


def test_a_run_ends_with_its_summary_line(tmp_path, tfds_dir):
  result = run_cli(*digits_args(str(tmp_path / 'run'), tfds_dir, '--config.train.num_steps=3',
                                '--config.sample.every_steps=0',
                                '--config.evals.likelihood.every_steps=0'))
  last = result.stderr.strip().splitlines()[-1]
  assert 'Finished steps 1-3 in ' in last and '| loss ' in last, result.stderr[-2000:]
  assert f'checkpoints in {tmp_path / "run" / "checkpoints"}' in last


def test_train_writes_the_workdir_contract(trained):
  workdir, _ = trained
  config = read_json(os.path.join(workdir, 'config.json'))
  assert config['train']['num_steps'] == 40 and config['data']['image_size'] == 8
  train = read_metrics(workdir)
  assert [r['step'] for r in train] == [10, 20, 30, 40]
  assert {'loss', 'elbo', 'kl', 'recon', 'bpd', 'grad_norm', 'steps_per_sec',
          'data_wait'} <= set(train[0])
  (evaluation,) = read_metrics(workdir, 'eval')
  assert evaluation['step'] == 40 and evaluation['num_examples'] == 32
  assert all(np.isfinite(evaluation[k]) for k in ('elbo', 'nll_iw', 'kl', 'bpd', 'nll_bpd'))
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['20', '40']
  samples = os.listdir(os.path.join(workdir, 'samples'))
  assert 'step_0000040.png' in samples and 'reconstructions_step_0000040.png' in samples
  assert any(name.startswith('events.out.tfevents')
             for name in os.listdir(os.path.join(workdir, 'tensorboard')))


def test_summary_counts_parameters_from_shapes(trained, tmp_path, tfds_dir):
  workdir, args = trained
  out = str(tmp_path / 'summary')
  result = run_cli(*[a if not a.startswith('--workdir') else f'--workdir={out}' for a in args],
                   '--mode=summary')
  summary = read_json(os.path.join(out, 'summary.json'))
  state, _ = restore_run(workdir)
  sizes = {name: sum(np.size(x) for x in jax.tree.leaves(sub))
           for name, sub in state.params.items()}
  assert summary == {'num_params': sum(sizes.values()), 'networks': sizes}
  assert f'{summary["num_params"]:,}' in result.stdout


def test_sample_mode_writes_uint8_images(trained):
  workdir, args = trained
  run_cli(*args, '--mode=sample', '--config.sample.num=37')
  images = np.load(os.path.join(workdir, 'samples', 'samples_step_0000040.npz'))['images']
  assert images.shape == (37, 8, 8, 1) and images.dtype == np.uint8
  assert images.std() > 0


def test_sample_mode_of_a_conditional_model_writes_labels_and_a_row_per_class(tmp_path,
                                                                            tfds_dir):
  args = digits_args(str(tmp_path), tfds_dir, '--config.model.num_classes=10',
                     '--config.train.num_steps=2', '--config.sample.every_steps=0',
                     '--config.evals.likelihood.every_steps=0')
  run_cli(*args)
  run_cli(*args, '--mode=sample', '--config.sample.num=21')
  path = os.path.join(tmp_path, 'samples', 'samples_step_0000002')
  saved = np.load(path + '.npz')
  np.testing.assert_array_equal(saved['labels'], np.arange(21) % 10)
  # rows: class 0 (samples 0 and 10), class 1 (1 and 11), ...; sample 20 left out
  order = np.arange(20).reshape(2, 10).T.ravel()
  grid = np.asarray(Image.open(path + '.png'))
  np.testing.assert_array_equal(grid, images.make_grid(saved['images'][order], 2)[:, :, 0])


def test_eval_mode_matches_the_in_training_eval(trained):
  workdir, args = trained
  run_cli(*args, '--mode=eval')
  result = read_json(os.path.join(workdir, 'eval', 'likelihood', 'step_0000040.json'))
  in_training = read_metrics(workdir, 'eval')[0]
  for key in ('elbo', 'nll_iw', 'kl', 'bpd', 'nll_bpd'):
    assert result[key] == pytest.approx(in_training[key], rel=1e-6)


def test_eval_mode_evaluates_the_checkpoint_asked(trained):
  workdir, args = trained
  run_cli(*args, '--mode=eval', '--config.eval.checkpoint_step=20')
  older = read_json(os.path.join(workdir, 'eval', 'likelihood', 'step_0000020.json'))
  assert older['step'] == 20
  assert older['elbo'] != pytest.approx(read_metrics(workdir, 'eval')[0]['elbo'], rel=1e-6)
  result = run_cli(*args, '--mode=eval', '--config.eval.checkpoint_step=30', check=False)
  assert_one_line_error(result, 'no checkpoint of step 30', '[20, 40]')
  result = run_cli(*args, '--mode=eval', '--config.eval.checkpoint_step=20',
                   '--config.eval.watch=True', check=False)
  assert_one_line_error(result, 'eval.checkpoint_step=20 with eval.watch=True')


@pytest.mark.parametrize('override,fragments,status', [
    ('--config.train.num_stepz=5', ['num_stepz'], 2),
    ('--config.train.num_steps=many', ['num_steps', 'many'], 2),
    ('--config.data.name=no_such_data', ["unknown dataset data.name='no_such_data'"], 1),
    ('--config.data.batch_size=0', ['data.batch_size=0'], 2),
    ('--mode=fly', ['fly'], 2),
    ('--coordinator_address=127.0.0.1:1234',
     ['--coordinator_address needs --num_processes and --process_id'], 2),
])
def test_bad_flags_and_values(tmp_path, tfds_dir, override, fragments, status):
  workdir = str(tmp_path / 'run')
  result = run_cli(*digits_args(workdir, tfds_dir, override), check=False)
  assert_one_line_error(result, *fragments)
  assert result.returncode == status
  assert not os.path.exists(os.path.join(workdir, 'checkpoints'))


def test_batch_size_must_divide_the_devices(tmp_path, tfds_dir):
  result = run_cli(*digits_args(str(tmp_path / 'run'), tfds_dir, '--config.data.batch_size=12'),
                   devices=8, check=False)
  assert_one_line_error(result, 'data.batch_size=12', 'device count 8')


def test_missing_manual_dir(tmp_path, tfds_dir):
  base = ['--config=configs/vae_mnist.py', f'--workdir={tmp_path / "run"}',
          f'--config.data.data_dir={tmp_path / "tfds"}']
  assert_one_line_error(run_cli(*base, check=False), 'needs data.manual_dir')
  result = run_cli(*base, f'--config.data.manual_dir={tmp_path / "nowhere"}', check=False)
  assert_one_line_error(result, 'is not a directory')


def test_workdir_of_another_model_is_refused_and_kept(trained):
  workdir, args = trained
  before = snapshot(workdir)
  result = run_cli(*args, '--config.model.latent_dim=4', check=False)
  assert_one_line_error(result, 'different model', 'params/decoder/Dense_0/kernel',
                        'use another --workdir')
  assert snapshot(workdir) == before


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, tfds_dir):
  workdir = str(tmp_path / 'run')
  common = ['--config.checkpoint.every_steps=10', '--config.train.log_every=5',
            '--config.sample.every_steps=0', '--config.evals.likelihood.every_steps=0']
  run_cli(*digits_args(workdir, tfds_dir, '--config.train.num_steps=20', *common))
  result = run_cli(*digits_args(workdir, tfds_dir, '--config.train.num_steps=60',
                                '--config.optim.learning_rate=1e30', *common), check=False)
  assert_one_line_error(result, 'non-finite ', 'last good checkpoint (step 20)')
  bad_step = int(result.stderr.split(' at step ')[1].split(';')[0])
  assert 20 < bad_step <= 30
  state, step = restore_run(workdir)
  assert step == 20
  assert np.all(np.isfinite(np.concatenate([np.ravel(x) for x in jax.tree.leaves(state)])))


def test_profile_steps_write_a_trace(tmp_path, tfds_dir):
  workdir = str(tmp_path / 'run')
  run_cli(*digits_args(workdir, tfds_dir, '--config.train.num_steps=12',
                       '--config.train.profile_steps=3', '--config.sample.every_steps=0',
                       '--config.evals.likelihood.every_steps=0'))
  traces = [f for _, _, files in os.walk(os.path.join(workdir, 'profile')) for f in files
            if f.endswith('.xplane.pb')]
  assert len(traces) == 1


def test_the_error_line_stays_last_when_coroutines_are_left_unawaited():
  """A failed asynchronous checkpoint write leaves coroutines that Python warns about at exit,
  after `fail`'s line (a race that once failed CI's full-disk test); the line must stay last."""
  script = ('from gen_jax import main\n'
            'async def write(): pass\n'
            'pending = [write()]\n'
            'main.fail("writing a checkpoint failed")\n')
  result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                          check=False)
  assert_one_line_error(result, 'writing a checkpoint failed')
