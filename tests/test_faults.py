"""The fault table of the README, one test per row: what a long pod job meets (a kill in the
middle of an asynchronous save, damaged or corrupted checkpoints, a full disk, signals, a
second run on a live workdir) and what a user gets wrong (a missing config file, a config of
another family, a forgotten override, a finished run resumed). Each asserts the one last line
on stderr, the exit status and that no good checkpoint was lost. Non-finite losses are in
test_cli.py."""

import glob
import os
import re
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
  flat_params,
  read_metrics,
  restore_run,
  run_cli,
  run_experiment,
  snapshot,
)

# The basenames of gen_jax's modules: the only ones whose log lines may precede the error line.
GEN_JAX_FILES = {os.path.basename(f) for f in glob.glob(os.path.join(REPO, 'gen_jax', '**', '*.py'),
                                                       recursive=True)}
LOG_LINE = re.compile(r'^[IWEF]\d{4} [\d:.]+ +\d+ (\S+\.py):\d+\] ')


def args(workdir, tfds_dir, num_steps, *extra):
  return digits_args(workdir, tfds_dir, f'--config.train.num_steps={num_steps}',
                     '--config.checkpoint.every_steps=20', '--config.checkpoint.max_to_keep=10',
                     '--config.sample.every_steps=0', '--config.evals.likelihood.every_steps=0',
                     '--config.train.log_every=1', '--config.model.hidden=512', *extra)


def start(arguments, prefix=()):
  env = dict(os.environ, PYTHONPATH=REPO, XLA_FLAGS='--xla_force_host_platform_device_count=1')
  return subprocess.Popen([*prefix, sys.executable, '-m', 'gen_jax.main', *arguments], cwd=REPO,
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory, tfds_dir):
  """The parameters of a 60-step run of `args` that was never interrupted."""
  workdir = str(tmp_path_factory.mktemp('uninterrupted'))
  run_cli(*args(workdir, tfds_dir, 60))
  return flat_params(restore_run(workdir)[0])


def assert_equals_the_uninterrupted_run(workdir, uninterrupted):
  """The resumed 60-step run in `workdir` logged every step once and ends where the run that
  was never interrupted ends, bit for bit."""
  assert [r['step'] for r in read_metrics(workdir)] == list(range(1, 61))
  np.testing.assert_array_equal(flat_params(restore_run(workdir)[0]), uninterrupted)


def last_line(stderr: str) -> str:
  return stderr.strip().splitlines()[-1]


def only_gen_jax_lines(stderr: str, last: int = 0) -> list[str]:
  """The lines of `stderr` but the `last` ones, after checking that each is a log line of a
  gen_jax module: no traceback and no third-party noise."""
  lines = stderr.strip().splitlines()
  for line in lines[:len(lines) - last]:
    match = LOG_LINE.match(line)
    assert match and match.group(1) in GEN_JAX_FILES, f'not a gen_jax log line: {line!r}'
  return lines


def assert_error(result, status: int, *fragments: str) -> str:
  """The one error line that ends `result`'s stderr, after checking the exit status, the
  fragments it names and that nothing but gen_jax's log lines precede it."""
  only_gen_jax_lines(result.stderr, last=1)
  line = last_line(result.stderr)
  assert result.returncode == status, (result.returncode, result.stderr[-2000:])
  assert line.startswith('gen_jax: error: '), line
  for fragment in fragments:
    assert fragment in line, (fragment, line)
  return line


@pytest.fixture(scope='module')
def run_40(tmp_path_factory, tfds_dir):
  """A 40-step run of `args`, checkpoints at 20 and 40; tests damage copies of it."""
  workdir = str(tmp_path_factory.mktemp('run_40'))
  run_cli(*args(workdir, tfds_dir, 40))
  return workdir


def copy_of(run_40, tmp_path) -> str:
  workdir = str(tmp_path / 'run')
  shutil.copytree(run_40, workdir)
  return workdir


def resume_falls_back_to_20(workdir, tfds_dir, uninterrupted, reason):
  """Resumes the damaged copy to step 60: one warning naming checkpoint 40 and `reason`, the
  checkpoint moved aside, and the result equals the run that was never damaged."""
  result = run_cli(*args(workdir, tfds_dir, 60))
  warnings = [line for line in only_gen_jax_lines(result.stderr) if line.startswith('W')]
  assert len(warnings) == 1, result.stderr[-3000:]
  assert 'checkpoints/40 ' in warnings[0] and reason in warnings[0], warnings[0]
  assert warnings[0].endswith('and resuming from checkpoint 20'), warnings[0]
  assert os.path.isdir(os.path.join(workdir, 'checkpoints.damaged', '40'))
  assert_equals_the_uninterrupted_run(workdir, uninterrupted)


def biggest_state_file(workdir) -> str:
  files = glob.glob(os.path.join(workdir, 'checkpoints', '40', 'state', '**', '*'),
                    recursive=True)
  return max((f for f in files if os.path.isfile(f)), key=os.path.getsize)


def xor_4096_bytes(path):
  data = bytearray(open(path, 'rb').read())
  middle = len(data) // 2
  data[middle:middle + 4096] = bytes(b ^ 0x5A for b in data[middle:middle + 4096])
  open(path, 'wb').write(data)


def flip_low_bits(path):
  """Flips the lowest bit of every 4th byte of 4 KiB: small changes to float32 values, if
  the byte is a mantissa's lowest."""
  data = bytearray(open(path, 'rb').read())
  for i in range(len(data) // 2, len(data) // 2 + 4096, 4):
    data[i] ^= 1
  open(path, 'wb').write(data)


@pytest.mark.parametrize('damage', [xor_4096_bytes,
                                    pytest.param(flip_low_bits, marks=pytest.mark.slow)])
def test_corruption_that_keeps_the_size_is_caught(run_40, tmp_path, tfds_dir, uninterrupted,
                                                  damage):
  """orbax compresses the arrays, so the damage either breaks the decoding (orbax's error) or
  decodes to other values (the checksums' mismatch), depending on where it falls; both are
  caught. test_checkpoint.py rewrites an array with other valid values: the checksums alone."""
  workdir = copy_of(run_40, tmp_path)
  path = biggest_state_file(workdir)
  size = os.path.getsize(path)
  damage(path)
  assert os.path.getsize(path) == size
  line = assert_error(run_cli(*args(workdir, tfds_dir, 60), '--mode=eval', check=False), 1,
                      'checkpoints/40 ')
  reason = next(r for r in ('does not match the checksum it was saved with', 'cannot be read')
                if r in line)
  assert not os.path.exists(os.path.join(workdir, 'eval'))  # no NaN metrics written
  resume_falls_back_to_20(workdir, tfds_dir, uninterrupted, reason)


def test_kill_during_an_async_save_resumes_from_the_previous_checkpoint(tmp_path, tfds_dir,
                                                                       uninterrupted):
  workdir = str(tmp_path / 'run')
  checkpoints = os.path.join(workdir, 'checkpoints')
  process = start(args(workdir, tfds_dir, 200))
  deadline = time.time() + 300
  while True:  # the moment orbax's temporary folder of checkpoint 40 appears
    names = os.listdir(checkpoints) if os.path.isdir(checkpoints) else []
    if any(n.startswith('40') and 'tmp' in n for n in names):
      break
    assert process.poll() is None and time.time() < deadline, f'no save of 40 seen: {names}'
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert not os.path.exists(os.path.join(checkpoints, '40', 'commit_success.txt')), (
      'the kill came after the save finished')
  run_cli(*args(workdir, tfds_dir, 60))
  assert_equals_the_uninterrupted_run(workdir, uninterrupted)


def test_damaged_newest_checkpoint_is_moved_aside_and_the_previous_one_used(tmp_path, tfds_dir,
                                                                           uninterrupted):
  workdir = str(tmp_path / 'run')
  run_cli(*args(workdir, tfds_dir, 40))
  step_40 = os.path.join(workdir, 'checkpoints', '40')
  files = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(step_40, 'state'))
           for f in fs]
  biggest = max(files, key=os.path.getsize)
  size = os.path.getsize(biggest)
  with open(biggest, 'r+b') as f:  # truncate the newest checkpoint's largest data file
    f.truncate(size // 2)
  result = run_cli(*args(workdir, tfds_dir, 60))
  warning = [line for line in result.stderr.splitlines() if 'cannot be read' in line]
  assert len(warning) == 1 and 'checkpoints/40' in warning[0], result.stderr[-2000:]
  assert 'resuming from checkpoint 20' in warning[0]
  moved = os.path.join(workdir, 'checkpoints.damaged', '40')
  truncated = os.path.join(moved, os.path.relpath(biggest, step_40))
  assert os.path.getsize(truncated) == size // 2  # kept as it was, for a post-mortem
  assert_equals_the_uninterrupted_run(workdir, uninterrupted)


@pytest.mark.slow
def test_a_second_run_on_a_live_workdir_is_refused(tmp_path, tfds_dir):
  workdir = str(tmp_path / 'run')
  first = start(args(workdir, tfds_dir, 100000))
  try:
    deadline = time.time() + 300
    while not os.path.exists(os.path.join(workdir, 'metrics.jsonl')):
      assert first.poll() is None and time.time() < deadline, 'the first run did not start'
      time.sleep(0.05)
    before = sorted(os.listdir(workdir))
    second = run_cli(*args(workdir, tfds_dir, 100000), check=False)
    assert second.returncode != 0
    message = last_line(second.stderr)
    assert message.startswith('gen_jax: error: workdir')
    assert 'in use by another training run' in message
    assert f'pid {first.pid}' in message
    assert first.poll() is None and sorted(os.listdir(workdir)) == before
  finally:
    first.kill()
    first.wait()
  # The lock dies with its process: a restart after a kill is not refused.
  saved = [int(n) for n in os.listdir(os.path.join(workdir, 'checkpoints')) if n.isdigit()]
  assert run_cli(*args(workdir, tfds_dir, max(saved, default=0) + 1)).returncode == 0


def mount_small_tmpfs(folder, kib: int) -> None:
  os.makedirs(folder)
  result = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={kib}k', 'tmpfs', folder],
                          capture_output=True, text=True, check=False)
  if result.returncode != 0:
    pytest.skip(f'cannot mount a tmpfs here ({result.stderr.strip()}): the file-size-limit '
                'variant of this test stands in for it')


@pytest.mark.parametrize('limit', ['tmpfs', pytest.param('file_size', marks=pytest.mark.slow)])
def test_full_disk_is_one_clear_line_and_keeps_the_finished_checkpoints(run_40, tmp_path,
                                                                        tfds_dir, limit):
  """A real full disk (ENOSPC on a tmpfs with room for one more half checkpoint) where the
  test may mount one; else a file-size limit (bash's ulimit -f: writes past it fail with
  EFBIG, as they would with ENOSPC; SIGXFSZ is ignored so the writer sees the error)."""
  source = copy_of(run_40, tmp_path)
  shutil.rmtree(os.path.join(source, 'checkpoints', '40'))
  checkpoint_sizes = [size for size, _ in
                      snapshot(os.path.join(source, 'checkpoints', '20')).values()]
  prefix = ()
  if limit == 'tmpfs':
    used_kib = sum(size for size, _ in snapshot(source).values()) // 1024
    mount_small_tmpfs(str(tmp_path / 'small'), used_kib + sum(checkpoint_sizes) // 2048 + 64)
    workdir = str(tmp_path / 'small' / 'run')
  else:
    workdir = source
    limit_kib = 64  # above metrics.jsonl, config.json and the events; below the arrays' files
    assert max(checkpoint_sizes) > 4 * limit_kib * 1024
    prefix = ['bash', '-c', f"trap '' XFSZ; ulimit -f {limit_kib}; exec \"$@\"", 'bash']
  try:
    if limit == 'tmpfs':
      shutil.copytree(source, workdir)
    process = start(args(workdir, tfds_dir, 100000), prefix=prefix)
    _, stderr = process.communicate(timeout=600)
    result = subprocess.CompletedProcess(process.args, process.returncode, '', stderr)
    assert_error(result, 1, 'writing checkpoint 40 to',
                 'finished checkpoints are intact (newest: 20)')
    state, step = restore_run(workdir)
    assert step == 20 and np.all(np.isfinite(flat_params(state)))
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:  # the last line may be cut short
      assert '"step": 1000' not in f.read()  # the run stopped soon after the failed save
  finally:
    if limit == 'tmpfs':
      subprocess.run(['umount', str(tmp_path / 'small')], check=True)


def test_a_workdir_that_cannot_be_created_is_one_clear_line(tmp_path, tfds_dir):
  """Root ignores permission bits, so the unwritable workdir here is one under a file."""
  blocker = tmp_path / 'a_file'
  blocker.write_text('')
  result = run_cli(*args(str(blocker / 'run'), tfds_dir, 2), check=False)
  assert result.returncode != 0
  assert last_line(result.stderr) == ('gen_jax: error: NotADirectoryError: [Errno 20] '
                                      f"Not a directory: '{blocker / 'run'}'")


@pytest.mark.slow
def test_resuming_with_another_seed_is_refused_in_one_line(tmp_path, tfds_dir):
  workdir = str(tmp_path / 'run')
  run_cli(*args(workdir, tfds_dir, 2))
  result = run_cli(*args(workdir, tfds_dir, 4, '--config.seed=1'), check=False)
  assert result.returncode != 0
  assert last_line(result.stderr) == (
      f'gen_jax: error: {workdir}/checkpoints holds a run with seed=0, this config has seed=1: '
      'resuming would not continue that run; use another --workdir')


@pytest.mark.slow
@pytest.mark.parametrize('signum,status', [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_sigterm_and_sigint_save_the_step_and_resume_exactly(tmp_path, tfds_dir, uninterrupted,
                                                              signum, status):
  workdir = str(tmp_path / 'run')
  process = start(args(workdir, tfds_dir, 60))
  metrics, deadline = os.path.join(workdir, 'metrics.jsonl'), time.time() + 300
  while not (os.path.exists(metrics) and len(open(metrics).readlines()) >= 25):
    assert process.poll() is None and time.time() < deadline, 'the run did not reach step 25'
    time.sleep(0.002)
  process.send_signal(signum)
  _, stderr = process.communicate(timeout=300)
  stopped_at = read_metrics(workdir)[-1]['step']
  assert 25 <= stopped_at < 60, f'the run reached step {stopped_at} before the signal'
  assert process.returncode == status
  name = signal.Signals(signum).name
  checkpoint = os.path.join(os.path.realpath(workdir), 'checkpoints', str(stopped_at))
  assert last_line(stderr) == (f'gen_jax: stopped at step {stopped_at} ({name}), checkpoint '
                               f'saved in {checkpoint}'), stderr[-3000:]
  assert os.path.exists(os.path.join(checkpoint, 'commit_success.txt'))
  run_cli(*args(workdir, tfds_dir, 60))
  assert_equals_the_uninterrupted_run(workdir, uninterrupted)


@pytest.mark.slow
def test_a_checkpoint_holding_nan_is_refused_by_eval_and_sample_and_skipped_by_training(
    run_40, tmp_path, tfds_dir, uninterrupted):
  import json

  import orbax.checkpoint as ocp

  from gen_jax import layout
  from gen_jax.checkpoint import signature
  workdir = copy_of(run_40, tmp_path)
  # What a corruption of a checkpoint written without checksums (by gen_jax before it kept
  # them: gen_jax itself never saves a non-finite state) can leave: a NaN among the
  # parameters, in a newer checkpoint than the last good one.
  state, _ = restore_run(workdir)
  leaves, treedef = jax.tree.flatten(state.params)
  leaves[0] = leaves[0].at[0].set(np.nan)
  damaged = state.replace(params=jax.tree.unflatten(treedef, leaves))
  config = json.loads(run_experiment(workdir).config.to_json_best_effort())
  manager = ocp.CheckpointManager(layout.checkpoints(workdir))
  manager.save(41, args=ocp.args.Composite(
      state=ocp.args.StandardSave(damaged), data=ocp.args.JsonSave({'next_index': 656}),
      meta=ocp.args.JsonSave({'family': 'vae', 'signature': signature(damaged),
                              'config': config})))
  manager.wait_until_finished()
  manager.close()
  for mode in ('eval', 'sample'):
    result = run_cli(*args(workdir, tfds_dir, 60), f'--mode={mode}', check=False)
    line = assert_error(result, 1, 'checkpoints/41 holds non-finite values '
                        '(params/decoder/Conv2x_0/bias): its files are damaged')
    assert line.startswith('gen_jax: error: checkpoint ')
  result = run_cli(*args(workdir, tfds_dir, 60))
  warning = [line for line in result.stderr.splitlines() if 'non-finite values' in line]
  assert len(warning) == 1 and 'resuming from checkpoint 40' in warning[0], result.stderr[-2000:]
  assert os.path.isdir(os.path.join(workdir, 'checkpoints.damaged', '41'))
  assert_equals_the_uninterrupted_run(workdir, uninterrupted)


@pytest.mark.slow  # the truncated file's test above runs the same path by default
@pytest.mark.parametrize('removed', ['state/manifest.ocdbt', 'state/d',
                                     'state/ocdbt.process_0/d'])
def test_a_removed_checkpoint_file_is_one_warning_and_a_fallback(run_40, tmp_path, tfds_dir,
                                                                 uninterrupted, removed):
  workdir = copy_of(run_40, tmp_path)
  path = os.path.join(workdir, 'checkpoints', '40', removed)
  shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
  resume_falls_back_to_20(workdir, tfds_dir, uninterrupted, 'cannot be read')


@pytest.mark.slow
def test_a_data_position_without_next_index_is_a_damaged_checkpoint(run_40, tmp_path, tfds_dir,
                                                                    uninterrupted):
  workdir = copy_of(run_40, tmp_path)
  with open(os.path.join(workdir, 'checkpoints', '40', 'data', 'metadata'), 'w') as f:
    f.write('{"position": 3}')  # valid JSON, not what was saved
  resume_falls_back_to_20(workdir, tfds_dir, uninterrupted, '(the data position)')


def test_a_truncated_or_foreign_gz_in_manual_dir_is_one_line(tmp_path, mnist_dir):
  manual = tmp_path / 'manual'
  shutil.copytree(mnist_dir, manual)
  images = manual / 'train-images-idx3-ubyte.gz'
  prepare = ['--config=configs/vae_mnist.py', '--mode=prepare',
             f'--config.data.data_dir={tmp_path / "tfds"}', f'--config.data.manual_dir={manual}']
  images.write_bytes(images.read_bytes()[:5000])
  assert_error(run_cli(*prepare, check=False), 1, 'EOFError', 'mnist', str(images))
  images.write_bytes(os.urandom(4000))
  assert_error(run_cli(*prepare, check=False), 1, 'BadGzipFile', 'mnist', str(images))
  for leftover in (tmp_path / 'tfds').rglob('*'):
    assert 'incomplete' not in leftover.name and '.tmp.' not in leftover.name, leftover


def test_a_config_of_another_family_is_one_line(tmp_path, tfds_dir):
  workdir = tmp_path / 'run'
  result = run_cli(*digits_args(str(workdir), tfds_dir, '--config.family=gan'), check=False)
  assert_error(result, 2, "family='gan' needs gan.", 'start from a config of that family')
  assert not workdir.exists()


def test_a_missing_config_file_is_one_line(tmp_path):
  workdir = tmp_path / 'run'
  result = run_cli('--config=configs/no_such_config.py', f'--workdir={workdir}', check=False)
  assert result.stderr.strip().splitlines() == [
      "gen_jax: error: --config: OSError: [Errno 2] No such file or directory: "
      "'configs/no_such_config.py'"]
  assert result.returncode == 2 and not workdir.exists()


def test_a_forgotten_override_points_to_the_runs_config_json(run_40, tfds_dir, tmp_path):
  workdir = run_40
  before = snapshot(workdir)
  plain = digits_args(workdir, tfds_dir, '--mode=sample')  # without model.hidden=512
  config_json = os.path.join(os.path.realpath(workdir), 'config.json')
  assert_error(run_cli(*plain, check=False), 1, 'different model',
               f'pass --config={config_json} (its config, overrides included)')
  output = str(tmp_path / 'samples.npz')
  run_cli(f'--config={config_json}', f'--workdir={workdir}', '--mode=sample',
          f'--config.sample.output={output}')
  assert np.load(output)['images'].shape[1:] == (8, 8, 1)
  assert snapshot(workdir) == before


def test_images_of_another_shape_are_refused_before_the_workdir_is_written(tmp_path, tfds_dir):
  workdir = tmp_path / 'run'
  result = run_cli(*digits_args(str(workdir), tfds_dir, '--config.data.channels=3'), check=False)
  assert_error(result, 1, "dataset 'digits' gives images of shape (8, 8, 1)", '(8, 8, 3)')
  assert not workdir.exists()


def test_a_finished_run_with_fewer_steps_is_refused_and_kept(run_40, tfds_dir):
  before = snapshot(run_40)
  result = run_cli(*args(run_40, tfds_dir, 20), check=False)
  assert_error(result, 1, f'workdir {run_40} holds a checkpoint of step 40, past '
               'train.num_steps=20: nothing to train')
  assert snapshot(run_40) == before
