"""Data parallelism over one mesh axis, 'data', spanning every device of every process.

Steps are written as per-device code (pmap semantics) and run under `jax.shard_map`
inside `jax.jit`: parameters are replicated (`P()`), batches split on their leading axis
(`P('data')`). Per-device code reduces across devices explicitly with `pmean`/`psum`.

Inside `shard_map` the gradient with respect to a replicated input is already summed over
the axis, so a family differentiates the `pmean`-ed loss (`jax.grad(lambda p:
pmean(loss(p)))`) and gets the global mean gradient; a `pmean` of local gradients would
be a no-op and leave them `num_devices` times too large.
"""

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from gen_jax.errors import UserError

DATA_AXIS = 'data'
BATCH = P(DATA_AXIS)  # split on the leading axis
REPLICATED = P()


def make_mesh() -> Mesh:
  """Returns a 1-D mesh named 'data' over all devices of all processes."""
  return jax.make_mesh((jax.device_count(),), (DATA_AXIS,),
                       axis_types=(jax.sharding.AxisType.Auto,))


def check_divisible(global_batch_size: int, mesh: Mesh, what: str) -> None:
  """Raises a UserError unless `global_batch_size` divides by the mesh's device count."""
  if global_batch_size % mesh.size:
    raise UserError(f'{what}={global_batch_size} does not divide by the device count '
                    f'{mesh.size}; use a multiple of {mesh.size}')


def padded_size(size: int, mesh: Mesh) -> int:
  """`size` rounded up to a multiple of the mesh's device count: an eval or sample batch
  runs at this size, its extra rows masked or dropped, so no device count is refused."""
  return -(-size // mesh.size) * mesh.size


def pmean(tree: Any) -> Any:
  """Mean over the 'data' axis; call it from per-device code."""
  return lax.pmean(tree, DATA_AXIS)


def psum(tree: Any) -> Any:
  """Sum over the 'data' axis; call it from per-device code."""
  return lax.psum(tree, DATA_AXIS)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def shard_batch(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Assembles each process's slice [b, ...] into global arrays [b * processes, ...]."""
  sharding = NamedSharding(mesh, P(DATA_AXIS))
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch)


def data_parallel(fn: Callable, mesh: Mesh, in_specs: tuple, out_specs: Any,
                  donate_argnums: tuple[int, ...] = ()) -> Callable:
  """Returns `fn` (per-device code) jitted and mapped over the mesh with the given specs."""
  mapped = jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs)
  return jax.jit(mapped, donate_argnums=donate_argnums)


def host_values(tree: Any) -> Any:
  """Fetches replicated (or fully addressable) arrays to host numpy, on every process.

  A replicated array is read from this process's first device, which also works where the
  array spans devices of other processes (multi-host), unlike `jax.device_get`.
  """
  return jax.tree.map(lambda x: np.asarray(jax.device_get(x.addressable_data(0)))
                      if isinstance(x, jax.Array) and x.sharding.is_fully_replicated
                      else np.asarray(x), tree)
