"""Shared fixtures: the offline data folders and a runner for the gen_jax CLI."""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

# One XLA compilation cache for the whole test run, shared by this process and the CLI runs it
# starts: many tests compile the same programs (a run and its resumption, 1 and 8 devices).
_XLA_CACHE = tempfile.mkdtemp(prefix='gen_jax_tests_xla_cache_')
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', _XLA_CACHE)

from gen_jax import cpu_runtime  # noqa: E402

# The CLI's XLA flags, for the tests that compute in this process (before jax starts).
cpu_runtime.set_xla_flags(os.environ)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST_DIR = os.environ.get('GEN_JAX_MNIST_DIR',
                           os.path.join(os.path.dirname(REPO), 'shared', 'data', 'mnist'))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
  shutil.rmtree(_XLA_CACHE, ignore_errors=True)


@pytest.fixture(scope='session')
def mnist_dir() -> str:
  """The four MNIST idx files (../shared/data/mnist beside the checkout, or $GEN_JAX_MNIST_DIR)."""
  if not os.path.exists(os.path.join(MNIST_DIR, 'train-images-idx3-ubyte.gz')):
    pytest.fail(f'MNIST idx files not found in {MNIST_DIR}; set GEN_JAX_MNIST_DIR')
  return MNIST_DIR


@pytest.fixture(scope='session')
def tfds_dir(tmp_path_factory) -> str:
  """A tfds data_dir shared by the whole session, so each dataset is prepared once."""
  return str(tmp_path_factory.mktemp('tensorflow_datasets'))


def run_cli(*args: str, devices: int = 1, timeout: float = 600,
            check: bool = True) -> subprocess.CompletedProcess:
  """Runs `python -m gen_jax.main ARGS` in a fresh process on `devices` fake CPU devices."""
  env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
             PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
  result = subprocess.run([sys.executable, '-m', 'gen_jax.main', *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
  if check and result.returncode != 0:
    raise AssertionError(f'gen_jax.main {" ".join(args)} failed:\n{result.stderr[-4000:]}')
  return result


def read_metrics(workdir: str, split: str = 'train') -> list[dict]:
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [r for r in map(json.loads, f) if r['split'] == split]


def digits_args(workdir: str, tfds_dir: str, *overrides: str) -> list[str]:
  """CLI arguments of a small, fast VAE run on digits (8x8, batch 16)."""
  return ['--config=configs/vae_digits.py', f'--workdir={workdir}',
          f'--config.data.data_dir={tfds_dir}', '--config.data.image_size=8',
          '--config.data.batch_size=16', '--config.model.hidden=32',
          '--config.model.channels=(8,16)', '--config.evals.likelihood.num_examples=32',
          '--config.evals.reconstruction.num_examples=32', '--config.eval.batch_size=16',
          '--config.eval.iw_samples=8', '--config.eval.iw_chunk=4', '--config.sample.grid=16',
          *overrides]


def gan_digits_args(workdir: str, tfds_dir: str, *overrides: str) -> list[str]:
  """CLI arguments of a small, fast DCGAN run on digits (8x8, batch 32, BatchNorm in G and D)."""
  return ['--config=configs/dcgan_mnist.py', f'--workdir={workdir}',
          f'--config.data.data_dir={tfds_dir}', '--config.data.name=digits',
          '--config.data.image_size=8', '--config.data.batch_size=32',
          '--config.model.g_channels=(32,)', '--config.model.d_channels=(16,32)',
          '--config.eval.batch_size=96', '--config.sample.grid=16', *overrides]


def run_experiment(workdir: str):
  """The Experiment of a run, built from its own config.json."""
  from ml_collections import ConfigDict

  from gen_jax import experiment
  with open(os.path.join(workdir, 'config.json')) as f:
    return experiment.build(ConfigDict(json.load(f)))


def restore_run(workdir: str):
  """Returns (state, step) of the latest checkpoint of the run in `workdir`."""
  from gen_jax import layout
  from gen_jax.checkpoint import restore_checkpoint
  exp = run_experiment(workdir)
  return restore_checkpoint(layout.checkpoints(workdir), exp.abstract_state, exp.family.name)


def read_scalar_tags(workdir: str) -> dict[str, list[int]]:
  """{tag: [steps]} of the scalars in the run's TensorBoard event files (TFRecord framing:
  length, its CRC, the Event proto, its CRC)."""
  import struct

  from tensorboardX.proto import event_pb2
  tags: dict[str, list[int]] = {}
  folder = os.path.join(workdir, 'tensorboard')
  for name in sorted(os.listdir(folder)):
    with open(os.path.join(folder, name), 'rb') as f:
      data = f.read()
    offset = 0
    while offset < len(data):
      (length,) = struct.unpack('<Q', data[offset:offset + 8])
      event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
      offset += 16 + length
      for value in event.summary.value:
        if value.HasField('simple_value'):
          tags.setdefault(value.tag, []).append(event.step)
  return tags


def snapshot(workdir):
  """{path: (size, mtime)} of every file under `workdir`."""
  return {os.path.join(root, name): (os.stat(os.path.join(root, name)).st_size,
                                     os.stat(os.path.join(root, name)).st_mtime_ns)
          for root, _, names in os.walk(workdir) for name in names}


def read_json(path: str) -> dict:
  with open(path) as f:
    return json.load(f)


def flat_params(state):
  """All parameters of `state`, their EMA and the model state (BatchNorm and spectral-norm
  statistics) as one float64 vector."""
  import jax
  import numpy as np
  leaves = jax.tree.leaves((state.params, state.ema_params, state.model_state))
  return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in leaves])
