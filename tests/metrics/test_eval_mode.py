"""The evaluator registry end to end: two evaluators on their own cadences during training,
--mode=eval giving the same numbers, sample-quality metrics with their protocol, cached
reference statistics, and an evaluation killed half-way that resumes to the same numbers."""

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

from tests.conftest import (
  REPO,
  digits_args,
  read_json,
  read_metrics,
  read_scalar_tags,
  run_cli,
)
from tests.metrics.test_inception import (  # noqa: F401  (torch_stand_ins is a fixture)
  random_fid_variables,
  to_torchvision_names,
  torch_stand_ins,
  write_state_dict,
)


def ddpm_args(workdir, tfds_dir, classifier, reference_dir, *overrides):
  """A one-level DDPM on digits with its two evaluators: bits/dim on 40 test digits and
  classifier-space FID / KID / precision-recall / IS of 100 samples (DDIM, 5 steps)."""
  return ['--config=configs/ddpm_digits.py', f'--workdir={workdir}',
          f'--config.data.data_dir={tfds_dir}', '--config.data.batch_size=16',
          '--config.model.ch_mult=(1,)', '--config.model.attn_resolutions=()',
          '--config.diffusion.num_steps=20', '--config.sample.steps=5',
          '--config.train.num_steps=20', '--config.checkpoint.every_steps=10',
          '--config.train.log_every=5', '--config.sample.every_steps=0',
          '--config.eval.batch_size=20', '--config.evals.likelihood.num_examples=40',
          f'--config.evals.fid.features=classifier:{classifier}',
          f'--config.evals.fid.reference_dir={reference_dir}',
          '--config.evals.fid.num_samples=100', '--config.evals.fid.reference_num=297',
          *overrides]


@pytest.fixture(scope='module')
def runs(tmp_path_factory, tfds_dir):
  """A digits classifier (the feature network) and a short DDPM run that evaluated bits/dim
  every 5 steps and FID every 10; returns (root, classifier, ddpm workdir, its stderr)."""
  root = tmp_path_factory.mktemp('runs')
  classifier, ddpm = str(root / 'classifier'), str(root / 'ddpm')
  run_cli('--config=configs/classifier_digits.py', f'--workdir={classifier}',
          f'--config.data.data_dir={tfds_dir}', '--config.train.num_steps=100',
          '--config.evals.likelihood.every_steps=100')
  assert read_metrics(classifier, 'eval')[-1]['accuracy'] > 0.8
  result = run_cli(*ddpm_args(ddpm, tfds_dir, classifier, str(root / 'reference'),
                              '--config.evals.likelihood.every_steps=5',
                              '--config.evals.fid.every_steps=10'))
  return root, classifier, ddpm, result.stderr


def test_evaluators_run_on_their_own_cadences_and_eval_mode_agrees(runs, tfds_dir):
  root, classifier, ddpm, log = runs
  lines = read_metrics(ddpm, 'eval')
  steps = {name: [r['step'] for r in lines if r['evaluator'] == name]
           for name in ('likelihood', 'fid')}
  assert steps == {'likelihood': [5, 10, 15, 20], 'fid': [10, 20]}
  assert all(set(r) - {'step', 'split', 'evaluator'} ==
             ({'bpd', 'nll', 'num_examples'} if r['evaluator'] == 'likelihood' else
              {'fid', 'kid', 'kid_std', 'precision', 'recall', 'inception_score',
               'inception_score_std'}) for r in lines)
  tags = read_scalar_tags(ddpm)
  assert tags['eval/likelihood/bpd'] == [5, 10, 15, 20] and tags['eval/fid/fid'] == [10, 20]
  for r in lines:
    assert f'eval {r["evaluator"]} at step {r["step"]} | ' in log

  # On 3 devices the batches of 20 are padded to 21: the same numbers, to float rounding.
  for devices, tolerance in ((1, 1e-6), (3, 1e-4)):
    workdir = str(root / f'ddpm_eval_{devices}')
    shutil.copytree(ddpm, workdir, ignore=shutil.ignore_patterns('metrics.jsonl'))
    run_cli(*ddpm_args(workdir, tfds_dir, classifier, str(root / 'reference'), '--mode=eval'),
            devices=devices)
    for r in lines:
      if r['step'] == 20:
        result = read_json(os.path.join(workdir, 'eval', r['evaluator'], 'step_0000020.json'))
        for key, value in r.items():
          if key not in ('split', 'evaluator', 'step'):
            assert result[key] == pytest.approx(value, rel=tolerance), (devices, key)


def eval_args(workdir, tfds_dir, classifier, reference_dir):
  return ddpm_args(workdir, tfds_dir, classifier, reference_dir, '--mode=eval',
                   '--config.eval.only=fid', '--config.evals.fid.num_samples=1000')


@pytest.fixture(scope='module')
def fid_eval(runs, tfds_dir):
  """--mode=eval of the `fid` evaluator (1,000 samples) on a copy of the DDPM run; returns
  (that workdir, the reference folder, eval/fid/step_0000020.json)."""
  root, classifier, ddpm, _ = runs
  workdir, reference_dir = str(root / 'fid_eval'), str(root / 'reference_1000')
  shutil.copytree(ddpm, workdir, ignore=shutil.ignore_patterns('metrics.jsonl'))
  run_cli(*eval_args(workdir, tfds_dir, classifier, reference_dir))
  return workdir, reference_dir, read_json(os.path.join(workdir, 'eval', 'fid',
                                                        'step_0000020.json'))


def test_eval_records_metrics_with_their_protocol_and_caches_the_reference(runs, fid_eval,
                                                                           tfds_dir):
  _, classifier, _, _ = runs
  workdir, reference_dir, result = fid_eval
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
  run_cli(*eval_args(workdir, tfds_dir, classifier, reference_dir))
  assert os.stat(os.path.join(reference_dir, cached)).st_mtime_ns == before
  again = read_json(os.path.join(workdir, 'eval', 'fid', 'step_0000020.json'))
  assert again == result
  assert [r['fid'] for r in read_metrics(workdir, 'eval')] == [result['fid']] * 2


def test_eval_killed_half_way_resumes_to_the_same_numbers(runs, fid_eval, tfds_dir):
  root, classifier, ddpm, _ = runs
  _, reference_dir, expected = fid_eval
  killed = str(root / 'killed')
  shutil.copytree(ddpm, killed, ignore=shutil.ignore_patterns('metrics.jsonl'))
  env = dict(os.environ, PYTHONPATH=REPO, XLA_FLAGS='--xla_force_host_platform_device_count=1')
  process = subprocess.Popen(
      [sys.executable, '-m', 'gen_jax.main', *eval_args(killed, tfds_dir, classifier,
                                                        reference_dir)],
      cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  progress = os.path.join(killed, 'eval', 'fid', 'step_0000020.progress')

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
  got = read_json(os.path.join(killed, 'eval', 'fid', 'step_0000020.json'))
  assert got == expected
  assert not os.path.exists(progress)


def test_a_bad_evaluator_fails_before_anything_runs(runs, tfds_dir, tmp_path):
  root, classifier, ddpm, _ = runs
  missing = str(tmp_path / 'no_classifier')
  workdir = str(tmp_path / 'run')
  result = run_cli(*ddpm_args(workdir, tfds_dir, missing, str(root / 'reference'),
                              '--config.evals.fid.every_steps=10'), check=False)
  assert result.returncode == 1 and not os.path.exists(workdir)
  assert result.stderr.strip().splitlines()[-1].startswith(
      f'gen_jax: error: evals.fid.features=classifier:{missing}: no config.json there')
  result = run_cli(*ddpm_args(ddpm, tfds_dir, classifier, str(root / 'reference'),
                              '--mode=eval', '--config.eval.only=bpd'), check=False)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1] == (
      "gen_jax: error: eval.only='bpd': expected names among config.evals "
      "['fid', 'likelihood']")


def test_feature_network_errors_are_clear(tmp_path):
  from gen_jax.errors import UserError
  from gen_jax.metrics.features import load_feature_net
  from gen_jax.parallel import make_mesh
  mesh = make_mesh()
  with pytest.raises(UserError, match='expected inception_v3_fid or classifier:WORKDIR'):
    load_feature_net('vgg16', mesh)
  with pytest.raises(UserError, match='inception_weights=None'):
    load_feature_net('inception_v3_fid', mesh, None)
  with pytest.raises(UserError, match='no config.json there'):
    load_feature_net(f'classifier:{tmp_path}', mesh)


@pytest.mark.slow
def test_watch_evaluates_checkpoints_as_training_writes_them(tmp_path, tfds_dir):
  """An eval job started before training waits, evaluates new checkpoints, stops at the end."""
  workdir = str(tmp_path / 'run')
  common = digits_args(workdir, tfds_dir, '--config.train.num_steps=40',
                       '--config.checkpoint.every_steps=20', '--config.sample.every_steps=0',
                       '--config.evals.likelihood.every_steps=0')
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
  for name in ('likelihood', 'reconstruction'):
    assert os.path.exists(os.path.join(workdir, 'eval', name, 'step_0000040.json'))
    steps = [r['step'] for r in read_metrics(workdir, 'eval') if r['evaluator'] == name]
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


@pytest.mark.slow
@pytest.mark.usefixtures('torch_stand_ins')
def test_eval_with_the_fid_inception_from_a_weights_file(runs, tfds_dir, tmp_path):
  """inception_v3_fid end to end: a (random) weights file in pytorch-fid's format, 8x8
  digits resized to 299, the file's hash and the resizing in the protocol."""
  root, classifier, ddpm, _ = runs
  weights = str(tmp_path / 'pt_inception.pth')
  write_state_dict(weights, to_torchvision_names(scaled_fid_variables()))
  workdir = str(tmp_path / 'ddpm')
  shutil.copytree(ddpm, workdir, ignore=shutil.ignore_patterns('metrics.jsonl'))
  run_cli(*ddpm_args(workdir, tfds_dir, classifier, str(tmp_path / 'reference'),
                     '--mode=eval', '--config.eval.only=fid', '--config.eval.batch_size=10',
                     '--config.evals.fid.num_samples=20', '--config.evals.fid.reference_num=20',
                     "--config.evals.fid.metrics=('fid','inception_score')",
                     '--config.evals.fid.features=inception_v3_fid',
                     f'--config.evals.fid.inception_weights={weights}'))
  result = read_json(os.path.join(workdir, 'eval', 'fid', 'step_0000020.json'))
  assert np.isfinite(result['fid']) and result['fid'] > 0
  assert result['inception_score'] >= 1.0
  protocol = result['protocol']
  assert protocol['feature_dim'] == 2048 and protocol['feature_image_size'] == 299
  assert protocol['resize'].startswith('8 -> 299: bilinear, half-pixel, no antialiasing')
  with open(weights, 'rb') as f:
    assert protocol['weights_sha256'] == hashlib.sha256(f.read()).hexdigest()


@pytest.mark.slow
def test_class_accuracy_and_intra_fid_follow_the_classes_asked(runs, tfds_dir):
  """A 'generator' that returns, for the class each sample asks for, a test digit of a given
  class: asked truthfully, class_accuracy is the classifier's accuracy on those digits and
  intra-FID the mean per-class FID against the reference digits of each class, both
  computed here directly; shifted by one class, the same set of images (the same FID) is
  mostly classified as the class before the one asked, and its intra-FID grows."""
  from ml_collections import ConfigDict

  from gen_jax import config_lib, evaluators
  from gen_jax import labels as labels_lib
  from gen_jax.data import pipeline
  from gen_jax.evaluators import Run
  from gen_jax.metrics import sample_quality as sq
  from gen_jax.metrics.features import load_feature_net
  from gen_jax.parallel import make_mesh
  from tests.families.test_vae import load_config
  root, classifier, _, _ = runs
  config = load_config('ddpm_digits')
  config.data.data_dir = tfds_dir
  config.model.num_classes = 10
  (batch,) = pipeline.eval_batches(config.data, 'test', 297, 297, 0, 1)
  images = batch['image'].astype(np.float32) / 127.5 - 1
  by_class = np.stack([images[batch['label'] == c][:20] for c in range(10)])  # [10, 20, ...]
  mesh = make_mesh()
  spec = config_lib.evaluator('sample_quality', metrics=('fid',), num_samples=200,
                              features=f'classifier:{classifier}', reference_num=297,
                              reference_dir=str(root / 'reference_oracle'))
  net = load_feature_net(f'classifier:{classifier}', mesh)
  reference = np.asarray(net.apply(net.params, jax.numpy.asarray(images))[0], np.float64)
  results = {}
  for shift in (0, 1):
    def oracle(params, key, ids, shift=shift):
      del params, key
      return jax.numpy.asarray(by_class)[(ids + shift) % 10, ids // 10]

    run = Run(data=config.data, batch_size=20, seed=0, key=jax.random.key(0), mesh=mesh,
              eval_step=None, sample=oracle, reconstruct=None,
              labels=lambda ids: labels_lib.for_ids(config, ids),
              conditioning={'classes': list(range(10)), 'guidance': 0.0})
    (evaluator,) = evaluators.build(ConfigDict({'q': spec}), run, ['q'])
    metrics, protocol = evaluator.evaluate(ConfigDict({'ema_params': None}), None)
    shown = by_class[(np.arange(200) + shift) % 10, np.arange(200) // 10]
    features, logits = net.apply(net.params, jax.numpy.asarray(shown))
    asked = np.arange(200) % 10
    expected = np.mean(np.argmax(np.asarray(logits), -1) == asked)
    assert metrics['class_accuracy'] == pytest.approx(expected, abs=1e-9)
    assert protocol['conditioning']['classes'] == list(range(10))
    assert (expected > 0.8) if shift == 0 else (expected < 0.2)
    features = np.asarray(features, np.float64)
    per_class = [sq.frechet_distance(*sq.gaussian_statistics(features[asked == c]),
                                     *sq.gaussian_statistics(reference[batch['label'] == c]))
                 for c in range(10)]
    assert metrics['intra_fid'] == pytest.approx(np.mean(per_class), rel=1e-4)
    assert metrics['intra_fid_class_3'] == pytest.approx(per_class[3], rel=1e-4)
    results[shift] = metrics
  assert results[1]['fid'] == pytest.approx(results[0]['fid'], rel=1e-6)
  assert results[1]['intra_fid'] > 1.5 * results[0]['intra_fid']
