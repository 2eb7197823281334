"""Sweeps: the point helpers, a 2-point sweep run end to end (results checked against each
run's own metrics), skipping finished points, and the launch commands."""

import csv
import os
import subprocess
import sys

from gen_jax.sweep import product, zip_points
from tests.conftest import REPO, read_metrics

SWEEP = """
from gen_jax.sweep import product
CONFIG = 'configs/vae_digits.py'
def get_sweep():
  return product(**{'loss.beta': [0.5, 2.0]})
"""


def test_product_and_zip():
  assert product(a=[1, 2], b__c=['x']) == [{'a': 1, 'b.c': 'x'}, {'a': 2, 'b.c': 'x'}]
  assert zip_points(a=[1, 2], b=[3, 4]) == [{'a': 1, 'b': 3}, {'a': 2, 'b': 4}]


def sweep(*args):
  env = dict(os.environ, PYTHONPATH=REPO, XLA_FLAGS='--xla_force_host_platform_device_count=1')
  return subprocess.run([sys.executable, '-m', 'gen_jax.sweep', *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=600, check=True).stdout


def test_sweep_runs_points_writes_results_and_skips_finished_ones(tmp_path, tfds_dir):
  sweep_file, root = tmp_path / 'beta.py', str(tmp_path / 'sweep')
  sweep_file.write_text(SWEEP)
  common = [f'--config.data.data_dir={tfds_dir}', '--config.train.num_steps=40',
            '--config.train.log_every=20', '--config.evals.likelihood.every_steps=40',
            '--config.evals.likelihood.num_examples=32', '--config.eval.batch_size=16',
            '--config.eval.iw_samples=0', '--config.sample.every_steps=0',
            '--config.checkpoint.every_steps=40', '--config.model.hidden=32',
            '--config.model.channels=(8,16)']
  out = sweep(str(sweep_file), f'--root={root}', '--parallel=2', *common)
  assert sorted(out.split()) == sorted(['000-beta=0.5:', '001-beta=2.0:', 'done', 'done'])
  with open(os.path.join(root, 'results.csv')) as f:
    rows = list(csv.DictReader(f))
  assert [r['point'] for r in rows] == ['000-beta=0.5', '001-beta=2.0']
  for row, beta in zip(rows, (0.5, 2.0), strict=True):
    workdir = os.path.join(root, row['point'])
    assert row['status'] == 'done' and float(row['loss.beta']) == beta
    train, evals = read_metrics(workdir), read_metrics(workdir, 'eval')
    assert int(row['train/step']) == train[-1]['step'] == 40
    assert float(row['train/elbo']) == train[-1]['elbo']
    assert float(row['eval/likelihood/elbo']) == evals[-1]['elbo']
  table = open(os.path.join(root, 'results.md')).read().splitlines()
  assert table[0].startswith('| point | status | loss.beta |') and len(table) == 4
  assert f'{float(rows[1]["eval/likelihood/elbo"]):.4g}' in table[3]

  mtimes = [os.path.getmtime(os.path.join(root, r['point'], 'metrics.jsonl')) for r in rows]
  again = sweep(str(sweep_file), f'--root={root}', *common)
  assert again.count('done (skipped)') == 2
  assert mtimes == [os.path.getmtime(os.path.join(root, r['point'], 'metrics.jsonl'))
                    for r in rows]

  commands = sweep(str(sweep_file), f'--root={root}', '--print_commands', *common).splitlines()
  assert len(commands) == 2 and commands[1].startswith('python -m gen_jax.main')
  assert '--config.loss.beta=2.0' in commands[1] and f'--workdir={root}/001-beta=2.0' in commands[1]
