"""Which implementation the layers of `gen_jax.nn` trace to: the plain one or XLA:CPU's.

A run chooses once, with `runtime.kernels`:

* 'xla': the plain flax / lax forms, on every backend;
* 'cpu': the kernels of `gen_jax.nn.cpu` wherever a layer has one for its arguments;
* 'auto' (the default): 'cpu' when `jax.default_backend()` is the CPU, else 'xla'.

The choice is read while a function is traced, so it is bound to the functions of a run
(`bind`), not to a global setting that a later trace could see changed.
"""

import contextlib
import functools
from collections.abc import Callable, Iterator

import jax

CHOICES = ('auto', 'xla', 'cpu')
_active = ['auto']


def check(choice: str) -> None:
  """Raises a ValueError unless `choice` is one of CHOICES."""
  if choice not in CHOICES:
    raise ValueError(f'runtime.kernels={choice!r}: expected one of {CHOICES}')


def resolve(choice: str) -> str:
  """'xla' or 'cpu': what `choice` means on this process's default backend."""
  check(choice)
  if choice == 'auto':
    return 'cpu' if jax.default_backend() == 'cpu' else 'xla'
  return choice


@contextlib.contextmanager
def use(choice: str) -> Iterator[None]:
  """Layers traced inside the context use `choice`'s kernels."""
  check(choice)
  _active.append(choice)
  try:
    yield
  finally:
    _active.pop()


def bind(choice: str, fn: Callable) -> Callable:
  """Returns `fn` traced (and run) with `choice`'s kernels, whoever calls it and when."""
  check(choice)

  @functools.wraps(fn)
  def with_kernels(*args, **kwargs):
    with use(choice):
      return fn(*args, **kwargs)

  return with_kernels


def cpu() -> bool:
  """Whether layers traced now use the CPU kernels."""
  return resolve(_active[-1]) == 'cpu'
