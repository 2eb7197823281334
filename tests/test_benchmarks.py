"""The accelerator check, the memory and the checkpoint benchmarks run (on small models, on the
CPU) and print their tables; remat and bfloat16 lower the activations the backward pass keeps."""

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


def run_script(*args: str) -> list[list[str]]:
  """Runs a benchmark script; returns the cells of its table's data rows."""
  env = dict(os.environ, PYTHON=sys.executable,
             PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, 'benchmarks')]))
  result = subprocess.run([*args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  rows = [line for line in result.stdout.splitlines() if line.startswith('| ')]
  return [[cell.strip() for cell in row.strip('|').split('|')] for row in rows[1:]
          if not row.startswith('| ---')]


@pytest.mark.slow
def test_accelerator_check_runs_and_reports_finite_losses():
  rows = run_script('bash', 'benchmarks/accelerator_check.sh', '--smoke', '--steps=2')
  assert [row[0] for row in rows] == ['ddpm_cifar10 float32', 'ddpm_cifar10 bfloat16',
                                      'dcgan_celeba64 float32', 'dcgan_celeba64 bfloat16']
  assert all(row[8] == 'True' and float(row[2]) > 0 for row in rows)


@pytest.mark.slow
def test_memory_benchmark_shows_what_remat_and_bf16_save():
  rows = run_script(sys.executable, 'benchmarks/memory.py', '--config=configs/ddpm_digits.py',
                    '--devices=2', '--batch=16')
  activations = {(row[0], row[1]): float(row[3]) for row in rows}
  assert set(activations) == {(d, r) for d in ('float32', 'bfloat16') for r in ('off', 'on')}
  for dtype in ('float32', 'bfloat16'):
    assert activations[dtype, 'on'] < 0.5 * activations[dtype, 'off']
  assert activations['bfloat16', 'off'] < activations['float32', 'off']


@pytest.mark.slow
def test_checkpoint_benchmark_times_orbax_and_the_checked_checkpointer():
  rows = run_script(sys.executable, 'benchmarks/checkpoint.py', '--config=configs/vae_digits.py',
                    '--repeats=1')
  assert [row[0] for row in rows] == ['orbax', 'gen_jax']
  assert all(float(cell) > 0 for row in rows for cell in row[1:])
