"""model.dtype='bfloat16': what computes in bfloat16 (the jaxprs), that training stays close
to float32, that 1 and 8 devices agree, and that checkpoints resume across dtypes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax import experiment as experiment_lib
from gen_jax import parallel
from gen_jax.data import pipeline
from gen_jax.errors import UserError
from gen_jax.families import get_family
from gen_jax.nn import Conv, kernels
from tests.conftest import digits_args, gan_digits_args, read_metrics, run_cli
from tests.families.test_gan import digits_gan
from tests.families.test_vae import load_config, tiny_config, train
from tests.test_parallel import assert_same_training_on_1_and_8_devices

MATMULS = ('conv_general_dilated', 'dot_general')
# Reductions and transcendentals of statistics, softmax and losses: float32 in every dtype.
STATISTICS = ('reduce_sum', 'reduce_max', 'reduce_min', 'exp', 'log', 'log1p', 'rsqrt')


def equations(jaxpr):
  """Every equation of a jaxpr and of the jaxprs inside it (jit, shard_map, scan, cond)."""
  for eqn in jaxpr.eqns:
    yield eqn
    for param in eqn.params.values():
      for sub in param if isinstance(param, (list, tuple)) else [param]:
        if hasattr(sub, 'eqns'):
          yield from equations(sub)
        elif hasattr(getattr(sub, 'jaxpr', None), 'eqns'):
          yield from equations(sub.jaxpr)


def operand_dtypes(jaxpr, primitives):
  """{primitive: set of operand dtype names} of the equations of `primitives`."""
  found = {}
  for eqn in equations(jaxpr):
    if eqn.primitive.name in primitives:
      found.setdefault(eqn.primitive.name, set()).update(
          str(v.aval.dtype) for v in eqn.invars)
  return found


def tiny(family, tfds_dir):
  if family == 'vae':
    return tiny_config(tfds_dir)
  if family == 'gan':
    return digits_gan(tfds_dir)
  config = load_config(f'{family}_digits')
  config.data.update(data_dir=tfds_dir, batch_size=16)
  if family == 'ddpm':
    config.model.update(ch=32, ch_mult=(1, 2))
  return config


def traced_steps(config, dtype):
  """(train-step jaxpr, eval-step jaxpr, state) of `config` computing in `dtype`."""
  config.model.dtype = dtype
  exp = experiment_lib.build(config)
  batch = next(pipeline.train_iterator(config.data, 0, 0, 1))
  batch = parallel.shard_batch({**batch, 'mask': np.ones(len(batch['id']), np.float32)},
                               exp.mesh)
  state = jax.eval_shape(exp.init)
  return (jax.make_jaxpr(exp.train_step)(state, batch).jaxpr,
          jax.make_jaxpr(exp.eval_step)(state, batch).jaxpr, state)


@pytest.mark.parametrize('family', ['vae', 'ddpm', 'gan', 'classifier'])
def test_bf16_runs_the_matmuls_in_bf16_and_keeps_statistics_and_state_float32(tfds_dir, family):
  train_jaxpr, eval_jaxpr, state = traced_steps(tiny(family, tfds_dir), 'bfloat16')
  # Every convolution and matmul, forward and backward, takes bfloat16 operands.
  assert operand_dtypes(train_jaxpr, MATMULS) == {p: {'bfloat16'} for p in MATMULS}
  # The forward pass's norm statistics, softmax and losses reduce in float32.
  statistics = operand_dtypes(eval_jaxpr, STATISTICS)
  assert statistics and all(dtypes == {'float32'} for dtypes in statistics.values()), statistics
  # Parameters, optimizer state, EMA and norm statistics stay float32.
  assert {str(x.dtype) for x in jax.tree.leaves(state) if x.dtype != jnp.int32} == {'float32'}

  train_f32, _, state_f32 = traced_steps(tiny(family, tfds_dir), 'float32')
  assert operand_dtypes(train_f32, MATMULS) == {p: {'float32'} for p in MATMULS}
  assert jax.tree.map(lambda x: (x.shape, x.dtype), state) == jax.tree.map(
      lambda x: (x.shape, x.dtype), state_f32)  # the same checkpoint for both


def test_bf16_bias_gradients_are_summed_in_float32():
  """A conv's bias gradient over 256 x 8 x 8 positions: bfloat16's is float32's to within
  bfloat16 rounding (summed in bfloat16, XLA:CPU's would stall at a few hundred)."""
  x = jax.random.normal(jax.random.key(0), (256, 8, 8, 4))
  ct = 1.0 + jax.random.uniform(jax.random.key(1), (256, 8, 8, 8))
  model = Conv(8, (3, 3))
  params = model.init(jax.random.key(2), x)

  def bias_grad(dtype):
    def loss(p):
      return jnp.sum(model.apply(p, x).astype(jnp.float32) * ct)
    return kernels.bind('xla', jax.grad(loss), dtype)(params)['params']['bias']

  exact, bf16 = bias_grad('float32'), bias_grad('bfloat16')
  assert bf16.dtype == jnp.float32
  np.testing.assert_allclose(bf16, exact, rtol=1e-2)


def test_a_bad_dtype_is_one_clear_error(tfds_dir):
  config = tiny_config(tfds_dir)
  config.model.dtype = 'float16'
  with pytest.raises(UserError, match="model.dtype='float16': expected one of"):
    get_family(config)


@pytest.mark.slow
def test_bf16_training_follows_float32(tfds_dir):
  """100 steps of the small VAE: bfloat16 ends within 1% of float32's loss, and differs
  from it (the check sees bfloat16 at work)."""
  losses = {}
  for dtype in ('float32', 'bfloat16'):
    config = tiny_config(tfds_dir)
    config.model.dtype = dtype
    _, history = train(config, 100)
    losses[dtype] = np.array([m['loss'] for m in history])
  assert np.all(np.isfinite(losses['bfloat16']))
  final = {k: v[-10:].mean() for k, v in losses.items()}
  assert final['bfloat16'] == pytest.approx(final['float32'], rel=0.01)
  assert not np.array_equal(losses['bfloat16'], losses['float32'])


@pytest.mark.slow
@pytest.mark.parametrize('config,overrides,tolerance', [
    ('vae_digits', (), 0.01),
    ('ddpm_digits', (), 0.05),
    ('dcgan_mnist', ('--config.data.name=digits', '--config.data.image_size=8',
                     '--config.model.g_channels=(64,)', '--config.model.d_channels=(32,64)',
                     '--config.data.batch_size=64', '--config.sample.every_steps=0'), 0.1),
])
def test_300_bf16_steps_stay_finite_and_near_float32(tmp_path, tfds_dir, config, overrides,
                                                     tolerance):
  """The shipped digits configs (and a small DCGAN) for 300 steps: the last 50 steps' mean
  loss in bfloat16 is within `tolerance` (relative) of float32's."""
  final = {}
  for dtype in ('float32', 'bfloat16'):
    workdir = str(tmp_path / dtype)
    run_cli(f'--config=configs/{config}.py', f'--workdir={workdir}',
            f'--config.data.data_dir={tfds_dir}', '--config.train.num_steps=300',
            '--config.train.log_every=1', f'--config.model.dtype={dtype}', *overrides)
    rows = read_metrics(workdir)
    losses = {k: np.array([r[k] for r in rows]) for k in rows[0]
              if k == 'loss' or k.endswith('_loss')}
    assert all(np.all(np.isfinite(v)) for v in losses.values())
    final[dtype] = {k: v[-50:].mean() for k, v in losses.items()}
  for key, value in final['float32'].items():
    assert final['bfloat16'][key] == pytest.approx(value, rel=tolerance), key


@pytest.mark.parametrize('make_args,tolerance', [
    pytest.param(lambda w, d: digits_args(
        w, d, '--config.optim.name=sgd', '--config.optim.learning_rate=0.05',
        '--config.data.batch_size=32', '--config.sample.every_steps=0',
        '--config.evals.likelihood.every_steps=0'), 5e-4, id='vae-sgd', marks=pytest.mark.slow),
    pytest.param(lambda w, d: gan_digits_args(
        w, d, '--config.sample.every_steps=0', '--config.optim.name=sgd',
        '--config.optim.learning_rate=0.01', '--config.optim_d.learning_rate=0.01'), 2e-3,
        id='gan-batchnorm', marks=pytest.mark.slow),
])
def test_bf16_agrees_on_one_and_eight_devices(tmp_path, tfds_dir, make_args, tolerance):
  """In bfloat16 the per-device matmuls round differently once the batch is split (a weight
  gradient is a bfloat16 sum over the examples of a device), so 1 and 8 devices agree to
  bfloat16's precision, not float32's."""
  assert_same_training_on_1_and_8_devices(
      tmp_path, lambda workdir: [*make_args(workdir, tfds_dir), '--config.model.dtype=bfloat16'],
      num_steps=10, tolerance=tolerance)


@pytest.mark.slow
@pytest.mark.parametrize('first,then', [('float32', 'bfloat16'), ('bfloat16', 'float32')])
def test_a_checkpoint_resumes_in_the_other_dtype(tmp_path, tfds_dir, first, then):
  """4 steps in one dtype, then the same workdir to step 8 in the other: it resumes from step
  4 and its losses stay within 1% of a run that did all 8 steps in `then`'s dtype."""
  def args(workdir, dtype):
    return digits_args(workdir, tfds_dir, '--config.train.num_steps=8',
                       '--config.checkpoint.every_steps=4', '--config.train.log_every=1',
                       '--config.sample.every_steps=0', f'--config.model.dtype={dtype}')

  mixed, reference = str(tmp_path / 'mixed'), str(tmp_path / 'reference')
  run_cli(*args(mixed, first), '--config.train.num_steps=4')
  result = run_cli(*args(mixed, then))
  assert 'Resumed from' in result.stderr and 'from step 4 to 8' in result.stderr
  run_cli(*args(reference, then))
  got, expected = read_metrics(mixed), read_metrics(reference)
  assert [r['step'] for r in got] == list(range(1, 9))
  for a, b in zip(got[4:], expected[4:], strict=True):
    assert a['loss'] == pytest.approx(b['loss'], rel=0.01)
