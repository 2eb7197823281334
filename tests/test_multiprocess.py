"""Two processes x 4 CPU devices over jax.distributed on 127.0.0.1 train exactly like one
process x 8 devices, and a run whose two processes are killed resumes. The first run finds
its cluster as on SLURM (`--distributed` and the SLURM_* variables), the others through
--coordinator_address / --num_processes / --process_id."""

import os
import random
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import REPO, digits_args, flat_params, read_metrics, restore_run, run_cli


def free_port(low: int = 0) -> int:
  """A free port on 127.0.0.1: any (low 0), or one from [low, 65535]."""
  for _ in range(100):
    with socket.socket() as s:
      try:
        s.bind(('127.0.0.1', random.randint(low, 65535) if low else 0))
      except OSError:
        continue
      return s.getsockname()[1]
  raise RuntimeError(f'no free port from {low}')


def start_processes(args: list[str], slurm: bool = False) -> list[subprocess.Popen]:
  """Starts the 2 processes of one run, 4 fake CPU devices each; with `slurm`, as SLURM
  would (jax.distributed's auto-detection takes the port from the job id)."""
  env = dict(os.environ, PYTHONPATH=REPO, XLA_FLAGS='--xla_force_host_platform_device_count=4')
  if slurm:
    slurm_ports = 65535 - 2**12 + 1  # the first port jax derives from SLURM_JOB_ID
    env |= {'SLURM_JOB_ID': str(free_port(slurm_ports) - slurm_ports),
            'SLURM_STEP_NODELIST': '127.0.0.1', 'SLURM_NTASKS': '2'}
    per_process = [(['--distributed'], {'SLURM_PROCID': str(i), 'SLURM_LOCALID': str(i)})
                   for i in range(2)]
  else:
    port = free_port()
    per_process = [([f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2',
                     f'--process_id={i}'], {}) for i in range(2)]
  return [subprocess.Popen([sys.executable, '-m', 'gen_jax.main', *args, *flags],
                           cwd=REPO, env=env | extra, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
          for flags, extra in per_process]


def finish(processes: list[subprocess.Popen], timeout: float = 600) -> list[str]:
  """Waits for the processes to succeed; returns their stderr."""
  errors = []
  try:
    for i, p in enumerate(processes):
      errors.append(p.communicate(timeout=timeout)[1])
      assert p.returncode == 0, f'process {i} failed:\n{errors[-1][-3000:]}'
  finally:
    for p in processes:
      p.kill()
  return errors


def run_args(workdir, tfds_dir, num_steps):
  return digits_args(workdir, tfds_dir, '--config.data.batch_size=32',
                     f'--config.train.num_steps={num_steps}', '--config.train.log_every=1',
                     '--config.checkpoint.every_steps=5', '--config.sample.every_steps=0',
                     '--config.evals.likelihood.every_steps=0', '--config.data.random_flip=True',
                     '--config.eval.batch_size=32')


@pytest.mark.slow  # 84-89 s on 2 cores
def test_two_processes_equal_one_and_resume_after_both_are_killed(tmp_path, tfds_dir):
  single, multi = str(tmp_path / 'single'), str(tmp_path / 'multi')
  run_cli(*run_args(single, tfds_dir, 10), devices=8)
  errors = finish(start_processes(run_args(multi, tfds_dir, 10), slurm=True))
  assert 'on 8 devices (2 processes)' in errors[0]
  state_1, step_1 = restore_run(single)
  state_2, step_2 = restore_run(multi)
  assert step_1 == step_2 == 10
  a, b = flat_params(state_1), flat_params(state_2)
  assert np.linalg.norm(a - b) <= 1e-5 * np.linalg.norm(a)
  assert [r['step'] for r in read_metrics(multi)] == list(range(1, 11))  # process 0 only

  # Kill both processes once checkpoint 5 is complete, restart both: the run goes on to
  # step 40 from a checkpoint, exactly as one that was never stopped.
  resumed = str(tmp_path / 'resumed')
  processes = start_processes(run_args(resumed, tfds_dir, 40))
  marker = os.path.join(resumed, 'checkpoints', '5', 'commit_success.txt')
  deadline = time.time() + 300
  while not os.path.exists(marker):
    assert time.time() < deadline and all(p.poll() is None for p in processes), 'no checkpoint'
    time.sleep(0.01)
  for p in processes:
    p.send_signal(signal.SIGKILL)
    p.wait()
  assert read_metrics(resumed)[-1]['step'] < 40
  finish(start_processes(run_args(resumed, tfds_dir, 40)))
  uninterrupted = str(tmp_path / 'uninterrupted')
  finish(start_processes(run_args(uninterrupted, tfds_dir, 40)))
  np.testing.assert_array_equal(flat_params(restore_run(resumed)[0]),
                                flat_params(restore_run(uninterrupted)[0]))
  assert [r['step'] for r in read_metrics(resumed)] == list(range(1, 41))
