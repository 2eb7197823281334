"""The dataset side of the CLI: --mode=prepare, the paper configs on files in their real
formats, and the one-line failures of a dataset that cannot be prepared here."""

import os

import numpy as np
import pytest
from ml_collections import ConfigDict

from gen_jax.data import sources
from tests.conftest import read_metrics, run_cli
from tests.data import real_formats

SMALL_DDPM = ['--config.model.ch=32', '--config.model.ch_mult=(1,2)',
              '--config.model.num_res_blocks=1', '--config.data.batch_size=8',
              '--config.evals.likelihood.every_steps=0', '--config.optim.warmup_steps=0',
              '--config.sample.sampler=ddim', '--config.sample.steps=5',
              '--config.sample.num=8', '--config.sample.grid=8']
SMALL_DCGAN = ['--config.model.g_channels=(64,32,16,8)', '--config.model.d_channels=(8,16,32,64)',
               '--config.data.batch_size=8', '--config.sample.num=8', '--config.sample.grid=8']


def tree(folder) -> dict[str, tuple[int, int]]:
  """{path: (size, mtime_ns)} of everything under `folder`."""
  out = {}
  for root, dirs, files in os.walk(folder):
    for name in dirs + files:
      stat = os.stat(os.path.join(root, name))
      out[os.path.relpath(os.path.join(root, name), folder)] = (stat.st_size, stat.st_mtime_ns)
  return out


def one_error_line(result) -> str:
  lines = result.stderr.strip().splitlines()
  assert result.returncode != 0 and len(lines) == 1, result.stderr[-3000:]
  assert lines[0].startswith('gen_jax: error: ')
  return lines[0]


@pytest.mark.slow
@pytest.mark.parametrize('config, write, flags', [
    ('ddpm_cifar10', lambda d: real_formats.write_cifar10(d, per_batch=8), SMALL_DDPM),
    ('dcgan_celeba64', lambda d: real_formats.write_celeba(d, [0] * 40 + [1, 2]), SMALL_DCGAN),
])
def test_paper_config_prepares_trains_and_samples_from_the_files(tmp_path, config, write, flags):
  manual, data_dir, workdir = tmp_path / 'manual', tmp_path / 'tfds', tmp_path / 'run'
  manual.mkdir()
  write(str(manual))
  data = [f'--config=configs/{config}.py', f'--config.data.manual_dir={manual}',
          f'--config.data.data_dir={data_dir}']
  prepared = run_cli(*data, '--mode=prepare')
  assert 'train ' in prepared.stdout
  before = tree(data_dir)
  run_cli(*data, f'--workdir={workdir}', '--config.train.num_steps=20',
          '--config.checkpoint.every_steps=20', '--config.sample.every_steps=0', *flags)
  (last,) = [r for r in read_metrics(str(workdir)) if r['step'] == 20]
  assert np.isfinite([v for k, v in last.items() if k not in ('step', 'split')]).all()
  run_cli(*data, f'--workdir={workdir}', '--mode=sample', *flags)
  with np.load(workdir / 'samples' / 'samples_step_0000020.npz') as samples:
    size = 32 if config == 'ddpm_cifar10' else 64
    assert samples['images'].shape == (8, size, size, 3)
  assert tree(data_dir) == before, 'training wrote to the prepared data_dir'


def test_tfds_dataset_without_tensorflow_is_one_line_and_leaves_nothing(tmp_path):
  result = run_cli('--config=configs/dcgan_mnist.py', f'--workdir={tmp_path / "run"}',
                   '--config.data.name=mnist', f'--config.data.data_dir={tmp_path / "tfds"}',
                   check=False)
  line = one_error_line(result)
  assert "'mnist' is not prepared" in line and "pip install -e '.[prepare]'" in line
  assert 'MNIST idx files' in line  # the offline way
  assert not (tmp_path / 'tfds').exists() and not (tmp_path / 'run').exists()


def test_prepare_mode_needs_no_workdir_and_reports_bad_manual_dir(tmp_path):
  result = run_cli('--config=configs/ddpm_cifar10.py', '--mode=prepare',
                   f'--config.data.manual_dir={tmp_path}/nowhere', check=False)
  assert 'is not a directory' in one_error_line(result)


def test_without_network_the_download_is_refused_at_once(tmp_path, monkeypatch):
  # a port nothing listens on: the probe fails at once, as it does without a network
  import socket
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    closed = s.getsockname()
  assert not sources.network_reachable(closed, timeout=2)
  monkeypatch.setattr(sources, 'has_tensorflow', lambda: True)
  monkeypatch.setattr(sources, 'network_reachable', lambda: False)
  config = ConfigDict({'name': 'mnist', 'data_dir': str(tmp_path), 'manual_dir': None})
  with pytest.raises(sources.UserError, match='its download needs a network'):
    sources.load_source(config, 'train')
  assert not list(tmp_path.iterdir())


def test_tfrecord_data_dir_says_how_to_convert(tmp_path):
  config = ConfigDict({'name': 'digits', 'data_dir': str(tmp_path), 'manual_dir': None})
  sources.load_source(config, 'train')
  (info,) = tmp_path.glob('digits/*/dataset_info.json')
  info.write_text(info.read_text().replace('"array_record"', '"tfrecord"'))
  with pytest.raises(sources.UserError, match='in tfrecord format.*tfds convert_format '
                     r'--dataset_version_dir=\S+digits/1.0.0 --out_file_format=array_record'):
    sources.load_source(config, 'train')


def test_multi_process_run_never_prepares(tmp_path, monkeypatch):
  monkeypatch.setattr(sources.jax, 'process_count', lambda: 2)
  config = ConfigDict({'name': 'digits', 'data_dir': str(tmp_path), 'manual_dir': None})
  with pytest.raises(sources.UserError, match='--mode=prepare'):
    sources.load_source(config, 'train')
  assert not list(tmp_path.iterdir())
