"""oneDNN convolutions (gen_jax/nn/cpu/onednn.py) against XLA's: values, gradients of first and
second order, vmap, and that jitted programs really call them."""

import os
import platform
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest
from jax import lax

from gen_jax.nn.cpu import onednn

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# setup.cfg installs the oneDNN wheels on Linux x86_64 only.
ON_X86_LINUX = sys.platform == 'linux' and platform.machine() == 'x86_64'
needs_onednn = pytest.mark.skipif(not ON_X86_LINUX, reason='the oneDNN wheels are x86_64 Linux')

# x shape, kernel shape, strides, padding
CASES = [((2, 8, 8, 5), (3, 3, 5, 7), (1, 1), 'SAME'),
         ((2, 8, 8, 5), (3, 3, 5, 7), (2, 2), 'SAME'),  # padding (0, 1): asymmetric
         ((3, 9, 7, 4), (2, 2, 4, 6), (1, 1), 'VALID'),
         ((2, 6, 6, 3), (4, 4, 3, 2), (2, 2), 'SAME'),
         ((1, 5, 6, 8), (1, 1, 8, 3), (1, 1), ((0, 0), (0, 0))),
         ((2, 7, 7, 3), (3, 3, 3, 4), (2, 1), ((2, 0), (1, 3)))]


@pytest.fixture(autouse=True)
def _small_convs_too(monkeypatch):
  """These tests' convs are small: below `MIN_FLOPS`, `conv` would be XLA's."""
  monkeypatch.setattr(onednn, 'MIN_FLOPS', 0)


def _xla(x, kernel, strides, padding):
  return lax.conv_general_dilated(x, kernel, strides, padding,
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def _inputs(x_shape, kernel_shape):
  return (jax.random.normal(jax.random.key(0), x_shape),
          jax.random.normal(jax.random.key(1), kernel_shape))


def _close(got, want, tol=2e-6):
  scale = float(jnp.max(jnp.abs(want)))
  assert float(jnp.max(jnp.abs(got - want))) <= tol * scale, (got.shape, scale)


@needs_onednn
def test_loads_where_the_wheels_are_installed():
  assert onednn.load()


@needs_onednn
@pytest.mark.parametrize('x_shape, kernel_shape, strides, padding', CASES)
def test_values_and_gradients_of_two_orders_equal_xla(x_shape, kernel_shape, strides, padding):
  x, kernel = _inputs(x_shape, kernel_shape)
  convs = {'onednn': lambda x, k: onednn.conv(x, k, strides, padding),
           'xla': lambda x, k: _xla(x, k, strides, padding)}
  assert 'GenJaxOnednnConvForward' in jax.jit(convs['onednn']).lower(x, kernel).as_text()

  def loss(conv):
    return lambda x, k: jnp.sum(jnp.sin(conv(x, k)))

  def grad_norm(conv):  # second order: differentiates the first-order gradients
    return lambda x, k: sum(jnp.sum(g ** 2) for g in jax.grad(loss(conv), (0, 1))(x, k))

  for fn in (lambda c: c, lambda c: jax.grad(loss(c), (0, 1)),
             lambda c: jax.grad(grad_norm(c), (0, 1))):
    got, want = (jax.jit(fn(convs[name]))(x, kernel) for name in ('onednn', 'xla'))
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
      _close(g, w, tol=1e-5)


@needs_onednn
def test_jitted_gradient_calls_all_three_handlers():
  x, kernel = _inputs((2, 8, 8, 4), (3, 3, 4, 4))
  text = jax.jit(jax.grad(lambda x, k: jnp.sum(onednn.conv(x, k) ** 2), (0, 1))).lower(
      x, kernel).as_text()
  assert onednn.calls_in(text) == 3
  with onednn.xla_only():
    text = jax.jit(jax.grad(lambda x, k: jnp.sum(onednn.conv(x, k) ** 3), (0, 1))).lower(
        x, kernel).as_text()
  assert onednn.calls_in(text) == 0 and 'convolution' in text


@needs_onednn
def test_convs_below_min_flops_stay_xla(monkeypatch):
  x, kernel = _inputs((2, 8, 8, 4), (3, 3, 4, 4))
  flops = 2 * 2 * 8 * 8 * 3 * 3 * 4 * 4  # 2 x N x OH x OW x KH x KW x C x O, 'SAME'
  assert onednn.forward_flops(x.shape, kernel.shape, (1, 1), ((1, 1), (1, 1))) == flops
  monkeypatch.setattr(onednn, 'MIN_FLOPS', flops + 1)
  text = jax.jit(lambda x, k: onednn.conv(x, k)).lower(x, kernel).as_text()
  assert onednn.calls_in(text) == 0 and 'convolution' in text
  monkeypatch.setattr(onednn, 'MIN_FLOPS', flops)
  text = jax.jit(lambda x, k: onednn.conv(x, k)).lower(x, kernel).as_text()  # traced anew
  assert onednn.calls_in(text) == 1


@needs_onednn
def test_vmap_equals_each_example():
  xs, kernel = _inputs((3, 2, 6, 6, 4), (3, 3, 4, 5))
  got = jax.jit(jax.vmap(lambda x: onednn.conv(x, kernel)))(xs)
  for x, g in zip(xs, got):
    _close(g, _xla(x, kernel, (1, 1), 'SAME'))


def _load_in_subprocess(**env) -> subprocess.CompletedProcess:
  code = 'from gen_jax.nn.cpu import onednn; print(onednn.load())'
  return subprocess.run([sys.executable, '-c', code], env=dict(os.environ, **env), cwd=REPO,
                        capture_output=True, text=True, timeout=120)


def test_switched_off_by_the_environment():
  assert _load_in_subprocess(GEN_JAX_ONEDNN='0').stdout.strip() == 'False'


@needs_onednn
def test_failed_build_falls_back_to_xla_with_one_warning(tmp_path):
  result = _load_in_subprocess(GEN_JAX_CACHE=str(tmp_path), CXX='false')
  assert result.stdout.strip() == 'False'
  warnings = [line for line in result.stderr.splitlines() if 'oneDNN convolutions' in line]
  assert len(warnings) == 1 and 'false failed' in warnings[0], result.stderr
  assert not list(tmp_path.glob('*.so'))


@needs_onednn
def test_build_is_cached(tmp_path):
  assert _load_in_subprocess(GEN_JAX_CACHE=str(tmp_path)).stdout.strip() == 'True'
  built = list(tmp_path.glob('onednn_conv-*.so'))
  assert len(built) == 1
  mtime = built[0].stat().st_mtime_ns
  assert _load_in_subprocess(GEN_JAX_CACHE=str(tmp_path), CXX='false').stdout.strip() == 'True'
  assert built[0].stat().st_mtime_ns == mtime
