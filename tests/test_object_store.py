"""Workdirs on object storage, against a real GCS server running locally (gcp-storage-emulator,
in memory): train, SIGKILL, resume exactly, eval and sample in gs://; the lease that stands
for flock there; and unsupported URI schemes refused in one line before anything is written."""

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import jax
import numpy as np
import pytest

from gen_jax import lock
from tests.conftest import REPO, digits_args, read_metrics, restore_run, run_cli
from tests.test_faults import last_line
from tests.test_resume import without_timing

BUCKET = 'test-bucket'


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def emulator_env(url: str) -> dict[str, str]:
  """What gcsfs, google-auth, tensorstore (orbax's arrays) and array_record need to use the
  server at `url` without credentials or a metadata server (../shared/STACK.md)."""
  dead = f'127.0.0.1:{_free_port()}'
  return {'STORAGE_EMULATOR_HOST': url, 'TENSORSTORE_GCS_HTTP_URL': url,
          'CLOUD_STORAGE_EMULATOR_ENDPOINT': url, 'GOOGLE_AUTH_TOKEN_FOR_TESTING': 'fake',
          'FSSPEC_GCS_TOKEN': 'anon', 'GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT': 'false',
          'NO_GCE_CHECK': 'true', 'GCE_METADATA_HOST': dead, 'GCE_METADATA_ROOT': dead,
          'GCE_METADATA_IP': dead}


@pytest.fixture(scope='module')
def gcs():
  """(environment for the CLI, a gcsfs file system) of a fresh in-memory server
  (tests/gcs_emulator.py: gcp-storage-emulator, one gap filled)."""
  port = _free_port()
  url = f'http://127.0.0.1:{port}'
  server = subprocess.Popen(
      [sys.executable, '-m', 'tests.gcs_emulator', 'start', '--host', '127.0.0.1',
       '--port', str(port), '--in-memory', '-q', '--default-bucket', BUCKET], cwd=REPO,
      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 30
  while True:
    try:
      urllib.request.urlopen(f'{url}/storage/v1/b/{BUCKET}', timeout=1)
      break
    except OSError:
      assert server.poll() is None and time.time() < deadline, 'the emulator did not start'
      time.sleep(0.1)
  env = dict(os.environ, **emulator_env(url), PYTHONPATH=REPO,
             XLA_FLAGS='--xla_force_host_platform_device_count=1')
  with pytest.MonkeyPatch.context() as patch:  # gcsfs in this process too, read at import
    for key, value in emulator_env(url).items():
      patch.setenv(key, value)
    import gcsfs  # pylint: disable=g-import-not-at-top
    yield env, gcsfs.GCSFileSystem(endpoint_url=url, token='anon')
  server.terminate()
  server.wait()


def cli(env, *arguments) -> subprocess.Popen:
  """`python -m gen_jax.main ARGUMENTS` with the emulator's gaps patched (tests/gcs_main.py)."""
  return subprocess.Popen([sys.executable, '-m', 'tests.gcs_main', *arguments], cwd=REPO,
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> tuple[int, str]:
  _, stderr = process.communicate(timeout=600)
  return process.returncode, stderr


def args(workdir, tfds_dir, num_steps, *extra):
  return digits_args(workdir, tfds_dir, f'--config.train.num_steps={num_steps}',
                     '--config.checkpoint.every_steps=10', '--config.sample.every_steps=0',
                     '--config.evals.likelihood.every_steps=0', '--config.train.log_every=1',
                     *extra)


def wait_for(fs, path, process, what):
  deadline = time.time() + 300
  while not fs.exists(path):
    assert process.poll() is None and time.time() < deadline, f'no {what}: {process.stderr.read()}'
    time.sleep(0.02)


def no_local_scheme_folder():
  return not [n for n in os.listdir(REPO) if n.endswith(':')]


@pytest.mark.slow
def test_train_kill_resume_eval_sample_in_gs(tmp_path, tfds_dir, gcs):
  env, fs = gcs
  num_steps, workdir = 40, f'gs://{BUCKET}/run'
  reference = str(tmp_path / 'reference')
  run_cli(*args(reference, tfds_dir, num_steps))

  first = cli(env, *args(workdir, tfds_dir, num_steps))
  wait_for(fs, f'{BUCKET}/run/checkpoints/10/commit_success.txt', first, 'first checkpoint')
  first.send_signal(signal.SIGKILL)
  first.wait()
  killed_at = json.loads(fs.cat(f'{BUCKET}/run/metrics.jsonl').splitlines()[-1])['step']
  assert 10 <= killed_at < num_steps, f'the kill came at step {killed_at}, not mid-run'
  status, stderr = finish(cli(env, *args(workdir, tfds_dir, num_steps)))
  assert status == 0, stderr[-3000:]
  takeover = [line for line in stderr.splitlines() if 'stale lease' in line]
  assert len(takeover) == 1 and f'pid {first.pid}' in takeover[0], stderr[-3000:]

  for mode, extra in (('eval', ()), ('sample', ('--config.sample.num=20',))):
    status, stderr = finish(cli(env, *args(workdir, tfds_dir, num_steps), f'--mode={mode}',
                                *extra))
    assert status == 0, stderr[-3000:]
  assert not fs.exists(f'{BUCKET}/run/.lock')  # released by the run that finished

  local = str(tmp_path / 'downloaded')
  fs.get(f'{BUCKET}/run', local, recursive=True)
  got, expected = read_metrics(local), read_metrics(reference)
  assert [r['step'] for r in got] == list(range(1, num_steps + 1))  # every step once
  assert without_timing(got) == without_timing(expected)  # bitwise: floats compare exactly
  (state_a, step_a), (state_b, step_b) = restore_run(reference), restore_run(local)
  assert step_a == step_b == num_steps
  for a, b in zip(jax.tree.leaves(state_a), jax.tree.leaves(state_b), strict=True):
    np.testing.assert_array_equal(a, b)
  assert {r['evaluator'] for r in read_metrics(local, 'eval')} >= {'likelihood'}
  assert os.path.exists(os.path.join(local, 'eval', 'likelihood', f'step_{num_steps:07d}.json'))
  assert os.listdir(os.path.join(local, 'tensorboard'))
  with fs.open(f'{BUCKET}/run/samples/samples_step_{num_steps:07d}.npz', 'rb') as f:
    assert np.load(io.BytesIO(f.read()))['images'].shape == (20, 8, 8, 1)
  assert no_local_scheme_folder()


@pytest.mark.slow
def test_a_second_run_on_a_live_gs_workdir_is_refused(tfds_dir, gcs):
  env, fs = gcs
  workdir = f'gs://{BUCKET}/live'
  first = cli(env, *args(workdir, tfds_dir, 100000))
  try:
    wait_for(fs, f'{BUCKET}/live/metrics.jsonl', first, 'first run')
    status, stderr = finish(cli(env, *args(workdir, tfds_dir, 100000)))
    assert status != 0
    message = last_line(stderr)
    assert message.startswith(f'gen_jax: error: workdir {workdir} is in use by another '
                              f'training run (host {socket.gethostname()}, pid {first.pid}, '
                              'heartbeat '), stderr[-3000:]
    assert first.poll() is None
  finally:
    first.kill()
    first.wait()


@pytest.mark.parametrize('name,flag,value', [('--workdir', '--workdir', 's3://bucket/run'),
                                              ('data.data_dir', '--config.data.data_dir',
                                               'hdfs://host/data')])
def test_an_unsupported_scheme_is_one_line_and_writes_nothing(tmp_path, tfds_dir, name, flag,
                                                              value):
  workdir = str(tmp_path / 'run')
  result = run_cli(*args(workdir, tfds_dir, 2), f'{flag}={value}', check=False)
  assert result.returncode != 0
  assert result.stderr.strip() == (
      f"gen_jax: error: {name}='{value}': unsupported URI scheme; expected a local path or "
      'gs://BUCKET/...')
  assert not os.path.exists(workdir) and no_local_scheme_folder()


def test_a_lease_is_stale_when_its_heartbeat_is_old_or_its_process_on_this_host_is_gone():
  now = 1_000_000.0
  fresh = f'host a, pid 7, heartbeat {now - 10:.0f}'
  assert lock.parse_lease(fresh) == ('a', 7, now - 10)
  assert not lock.is_stale(fresh, now, 'a', process_exists=lambda pid: True)
  assert not lock.is_stale(fresh, now, 'b', process_exists=lambda pid: False)
  assert lock.is_stale(fresh, now, 'a', process_exists=lambda pid: False)
  old = f'host a, pid 7, heartbeat {now - lock.STALE_AFTER_S - 1:.0f}'
  assert lock.is_stale(old, now, 'b', process_exists=lambda pid: True)
  assert lock.is_stale('host a, pi', now, 'b')  # an object cut short is no lease


@pytest.mark.slow
def test_a_gs_data_dir_prepared_locally_and_copied_trains(tmp_path, gcs):
  env, fs = gcs
  data_dir = f'gs://{BUCKET}/tfds'
  status, stderr = finish(cli(env, '--config=configs/vae_digits.py', '--mode=prepare',
                              f'--config.data.data_dir={data_dir}'))
  assert status != 0 and last_line(stderr).endswith(
      f'copy DATA_DIR/digits to {data_dir}/ (e.g. gcloud storage cp -r)'), stderr[-3000:]
  assert not fs.exists(f'{BUCKET}/tfds/digits') and no_local_scheme_folder()
  run_cli('--config=configs/vae_digits.py', '--mode=prepare',
          f'--config.data.data_dir={tmp_path / "local"}')
  fs.put(str(tmp_path / 'local' / 'digits'), f'{BUCKET}/tfds/', recursive=True)
  uploaded = {path: fs.info(path)['generation'] for path in fs.find(f'{BUCKET}/tfds')}
  status, stderr = finish(cli(env, *args(str(tmp_path / 'run'), data_dir, 3)))
  assert status == 0, stderr[-3000:]
  assert [r['step'] for r in read_metrics(str(tmp_path / 'run'))] == [1, 2, 3]
  assert {path: fs.info(path)['generation'] for path in fs.find(f'{BUCKET}/tfds')} == uploaded
