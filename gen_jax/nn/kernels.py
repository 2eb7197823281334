"""How the layers of `gen_jax.nn` compute: which implementation they trace to, and in which
dtype.

A run chooses once. `runtime.kernels` picks the implementation:

* 'xla': the plain flax / lax forms, on every backend;
* 'cpu': the kernels of `gen_jax.nn.cpu` wherever a layer has one for its arguments (they
  compute in float32 only);
* 'auto' (the default): 'cpu' when `jax.default_backend()` is the CPU, else 'xla'.

`model.dtype` picks the compute dtype (`DTYPES`). With 'bfloat16' the convolutions, dense
layers and the matmuls fed by them compute in bfloat16, while parameters, optimizer state
and norm statistics stay float32 (norms reduce in float32, flax's `force_float32_reductions`)
and so does every network's output: the results of a model's top-level methods (what
`model.apply` returns) are cast to float32, so losses, GAN logits and diffusion arithmetic
never see bfloat16. A checkpoint does not depend on the dtype.

The choice is read while a function is traced, so it is bound to the functions of a run
(`bind`), not to a global setting that a later trace could see changed.
"""

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import linen as nn

CHOICES = ('auto', 'xla', 'cpu')
DTYPES = ('float32', 'bfloat16')


class Setting(NamedTuple):
  kernels: str = 'auto'
  dtype: str = 'float32'


_active = [Setting()]


def check(choice: str, dtype: str = 'float32') -> None:
  """Raises a ValueError unless `choice` is one of CHOICES and `dtype` one of DTYPES."""
  if choice not in CHOICES:
    raise ValueError(f'runtime.kernels={choice!r}: expected one of {CHOICES}')
  if dtype not in DTYPES:
    raise ValueError(f'model.dtype={dtype!r}: expected one of {DTYPES}')


def resolve(choice: str) -> str:
  """'xla' or 'cpu': what `choice` means on this process's default backend."""
  check(choice)
  if choice == 'auto':
    return 'cpu' if jax.default_backend() == 'cpu' else 'xla'
  return choice


def _float32_outputs(next_fun: Callable, args: tuple, kwargs: dict,
                     context: nn.module.InterceptorContext) -> Any:
  """A flax method interceptor: a top-level module's results as float32."""
  out = next_fun(*args, **kwargs)
  scope = context.module.scope
  if scope is None or scope.path:
    return out
  return jax.tree.map(
      lambda x: x.astype(jnp.float32) if jnp.issubdtype(jnp.result_type(x), jnp.floating)
      else x, out)


@contextlib.contextmanager
def use(choice: str, dtype: str = 'float32') -> Iterator[None]:
  """Layers traced inside the context use `choice`'s kernels and compute in `dtype`."""
  check(choice, dtype)
  _active.append(Setting(choice, dtype))
  try:
    with (nn.intercept_methods(_float32_outputs) if dtype != 'float32'
          else contextlib.nullcontext()):
      yield
  finally:
    _active.pop()


def bind(choice: str, fn: Callable, dtype: str = 'float32') -> Callable:
  """Returns `fn` traced (and run) with `choice`'s kernels in `dtype`, whoever calls it and
  when."""
  check(choice, dtype)

  @functools.wraps(fn)
  def with_kernels(*args, **kwargs):
    with use(choice, dtype):
      return fn(*args, **kwargs)

  return with_kernels


def compute_dtype() -> jnp.dtype:
  """The dtype layers traced now compute in."""
  return jnp.dtype(_active[-1].dtype)


def cpu() -> bool:
  """Whether layers traced now use the CPU kernels (float32 only)."""
  return compute_dtype() == jnp.float32 and resolve(_active[-1].kernels) == 'cpu'
