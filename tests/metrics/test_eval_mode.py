"""--mode=eval with sample-quality metrics: protocol, cached reference statistics, and an
evaluation killed half-way that resumes to the same numbers."""

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from tests.conftest import REPO, digits_args, read_json, read_metrics, run_cli
from tests.metrics.test_inception import (  # noqa: F401  (torch_stand_ins is a fixture)
  random_fid_variables,
  to_torchvision_names,
  torch_stand_ins,
  write_state_dict,
)


@pytest.fixture(scope='module')
def runs(tmp_path_factory, tfds_dir):
  """A digits classifier (the feature network) and a short digits VAE run."""
  root = tmp_path_factory.mktemp('runs')
  classifier, vae = str(root / 'classifier'), str(root / 'vae')
  run_cli('--config=configs/classifier_mnist.py', f'--workdir={classifier}',
          f'--config.data.data_dir={tfds_dir}', '--config.data.name=digits',
          '--config.data.image_size=8', '--config.data.batch_size=32',
          '--config.model.channels=(16,)', '--config.model.features=32',
          '--config.train.num_steps=100', '--config.eval.num_examples=297',
          '--config.eval.batch_size=99', '--config.eval.every_steps=100',
          '--config.optim.warmup_steps=0', '--config.optim.ema_decay=0.0',
          '--config.optim.learning_rate=0.003')
  assert read_metrics(classifier, 'eval')[-1]['accuracy'] > 0.8
  run_cli(*digits_args(vae, tfds_dir, '--config.train.num_steps=40',
                       '--config.sample.every_steps=0', '--config.eval.every_steps=0'))
  return root, classifier, vae


def eval_args(workdir, tfds_dir, classifier, reference_dir):
  return digits_args(workdir, tfds_dir, '--mode=eval', '--config.train.num_steps=40',
                     '--config.eval.num_examples=0', '--config.eval.batch_size=20',
                     '--config.eval.num_samples=1000', '--config.eval.reference_num=297',
                     "--config.eval.metrics=('fid','kid','precision_recall','inception_score')",
                     f'--config.eval.features=classifier:{classifier}',
                     f'--config.eval.reference_dir={reference_dir}')


def test_eval_records_metrics_with_their_protocol_and_caches_the_reference(runs, tfds_dir):
  root, classifier, vae = runs
  reference_dir = str(root / 'reference')
  run_cli(*eval_args(vae, tfds_dir, classifier, reference_dir))
  result = read_json(os.path.join(vae, 'eval', 'step_0000040.json'))
  for key in ('fid', 'kid', 'precision', 'recall', 'inception_score'):
    assert np.isfinite(result[key]), key
  assert result['fid'] > 0 and 0 <= result['precision'] <= 1
  assert 1 <= result['inception_score'] <= 10
  protocol = result['protocol']
  assert protocol['num_samples'] == 1000 and protocol['feature_dim'] == 32
  assert protocol['reference'] == {
      'dataset': 'digits', 'split': 'test', 'num_examples': 297, 'image_size': 8,
      'features': f'classifier:{classifier}', 'weights_sha256': protocol['weights_sha256']}
  (cached,) = os.listdir(reference_dir)
  assert cached.startswith('digits-test-n297-s8-classifier-')
  before = os.stat(os.path.join(reference_dir, cached)).st_mtime_ns
  run_cli(*eval_args(vae, tfds_dir, classifier, reference_dir))
  assert os.stat(os.path.join(reference_dir, cached)).st_mtime_ns == before
  again = read_json(os.path.join(vae, 'eval', 'step_0000040.json'))
  assert again == result
  assert [r['fid'] for r in read_metrics(vae, 'eval')] == [result['fid']] * 2


def test_eval_killed_half_way_resumes_to_the_same_numbers(runs, tfds_dir):
  root, classifier, vae = runs
  reference_dir = str(root / 'reference')
  run_cli(*eval_args(vae, tfds_dir, classifier, reference_dir))
  expected = read_json(os.path.join(vae, 'eval', 'step_0000040.json'))

  killed = str(root / 'killed')
  shutil.copytree(vae, killed, ignore=shutil.ignore_patterns('eval', 'metrics.jsonl'))
  env = dict(os.environ, PYTHONPATH=REPO, XLA_FLAGS='--xla_force_host_platform_device_count=1')
  process = subprocess.Popen(
      [sys.executable, '-m', 'gen_jax.main', *eval_args(killed, tfds_dir, classifier,
                                                        reference_dir)],
      cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  progress = os.path.join(killed, 'eval', 'step_0000040.progress')

  def done():  # samples in finished batch files (20 each); .tmp.npz files are unfinished
    names = os.listdir(progress) if os.path.isdir(progress) else []
    return 20 * sum(not n.endswith('.tmp.npz') for n in names)

  deadline = time.time() + 300
  while done() < 200:
    assert process.poll() is None and time.time() < deadline, 'eval ended before the kill'
    time.sleep(0.01)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert 200 <= done() < 1000, 'the kill did not come half-way'
  run_cli(*eval_args(killed, tfds_dir, classifier, reference_dir))
  got = read_json(os.path.join(killed, 'eval', 'step_0000040.json'))
  assert got == expected
  assert not os.path.exists(progress)


def test_feature_network_errors_are_clear(tmp_path):
  from gen_jax.errors import UserError
  from gen_jax.metrics.features import load_feature_net
  with pytest.raises(UserError, match='expected inception_v3_fid or classifier:WORKDIR'):
    load_feature_net('vgg16')
  with pytest.raises(UserError, match='eval.inception_weights=None'):
    load_feature_net('inception_v3_fid', None)
  with pytest.raises(UserError, match='no config.json there'):
    load_feature_net(f'classifier:{tmp_path}')


def test_watch_evaluates_checkpoints_as_training_writes_them(tmp_path, tfds_dir):
  """An eval job started before training waits, evaluates new checkpoints, stops at the end."""
  workdir = str(tmp_path / 'run')
  common = digits_args(workdir, tfds_dir, '--config.train.num_steps=40',
                       '--config.checkpoint.every_steps=20', '--config.sample.every_steps=0',
                       '--config.eval.every_steps=0')
  env = dict(os.environ, PYTHONPATH=REPO, XLA_FLAGS='--xla_force_host_platform_device_count=1')
  watcher = subprocess.Popen([sys.executable, '-m', 'gen_jax.main', *common, '--mode=eval',
                              '--config.eval.watch=True', '--config.eval.watch_interval=1'],
                             cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
  time.sleep(2)
  assert watcher.poll() is None, 'the eval job did not wait for a checkpoint'
  run_cli(*common)
  _, stderr = watcher.communicate(timeout=300)
  assert watcher.returncode == 0, stderr[-2000:]
  assert os.path.exists(os.path.join(workdir, 'eval', 'step_0000040.json'))
  steps = [r['step'] for r in read_metrics(workdir, 'eval')]
  assert steps[-1] == 40 and steps == sorted(set(steps))


def scaled_fid_variables():
  """Random FID-Inception variables whose activations stay finite: He-scaled kernels,
  BatchNorm as the identity."""
  def leaf(path, x):
    name = path[-1].key
    if name == 'kernel':
      return (x * np.sqrt(2.0 / np.prod(x.shape[:-1]))).astype(np.float32)
    return np.full_like(x, 1.0 if name in ('var', 'scale') else 0.0)
  return jax.tree_util.tree_map_with_path(leaf, random_fid_variables())


@pytest.mark.usefixtures('torch_stand_ins')
def test_eval_with_the_fid_inception_from_a_weights_file(runs, tfds_dir, tmp_path):
  """inception_v3_fid end to end: a (random) weights file in pytorch-fid's format, 8x8
  digits resized to 299, the file's hash and the resizing in the protocol."""
  root, classifier, vae = runs
  weights = str(tmp_path / 'pt_inception.pth')
  write_state_dict(weights, to_torchvision_names(scaled_fid_variables()))
  workdir = str(tmp_path / 'vae')
  shutil.copytree(vae, workdir, ignore=shutil.ignore_patterns('eval'))
  run_cli(*digits_args(workdir, tfds_dir, '--mode=eval', '--config.train.num_steps=40',
                       '--config.eval.num_examples=0', '--config.eval.batch_size=10',
                       '--config.eval.num_samples=20', '--config.eval.reference_num=20',
                       "--config.eval.metrics=('fid','inception_score')",
                       '--config.eval.features=inception_v3_fid',
                       f'--config.eval.inception_weights={weights}',
                       f'--config.eval.reference_dir={tmp_path / "reference"}'))
  result = read_json(os.path.join(workdir, 'eval', 'step_0000040.json'))
  assert np.isfinite(result['fid']) and result['fid'] > 0
  assert result['inception_score'] >= 1.0
  protocol = result['protocol']
  assert protocol['feature_dim'] == 2048 and protocol['feature_image_size'] == 299
  assert protocol['resize'].startswith('8 -> 299: bilinear, half-pixel, no antialiasing')
  with open(weights, 'rb') as f:
    assert protocol['weights_sha256'] == hashlib.sha256(f.read()).hexdigest()
