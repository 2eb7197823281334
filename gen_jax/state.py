"""The one train state of every family, and its parameter update with EMA."""

from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh
from ml_collections import ConfigDict

from gen_jax import parallel
from gen_jax.rng import Keys


class TrainState(flax.struct.PyTreeNode):
  """Everything a run needs to continue: all of it is checkpointed.

  Attributes:
    step: int32 scalar, optimizer steps taken.
    params: the trainable parameters (a GAN: {'generator': ..., 'discriminator': ...}).
    opt_state: optax state, the same sub-tree layout as the optimizers.
    ema_params: exponential moving average of `params`, used for sampling and eval.
    model_state: non-trainable collections (BatchNorm statistics, ...); {} when none.
  """
  step: jax.Array
  params: Any
  opt_state: Any
  ema_params: Any
  model_state: Any


def create(params: Any, tx: optax.GradientTransformation, model_state: Any = None) -> TrainState:
  """Returns the state at step 0: EMA equal to `params`, fresh optimizer state."""
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    ema_params=params, model_state={} if model_state is None else model_state)


def initializer(family: Any, config: ConfigDict, mesh: Mesh) -> Callable[[], 'TrainState']:
  """Returns the jitted init of `family` (a `gen_jax.families.Family`) for `config`: the
  state at step 0 from the seed's init key, replicated on `mesh`. `jax.eval_shape` of it is
  the abstract state that checkpoints restore into."""
  data = config.data
  shape = (1, data.image_size, data.image_size, data.channels)
  key = Keys.from_seed(config.seed).init
  return jax.jit(lambda: family.init(key, jnp.zeros(shape, jnp.float32)),
                 out_shardings=parallel.replicated(mesh))


def loss_and_grads(loss_fn: Callable[[Any, dict], tuple[jax.Array, dict]], params: Any,
                   batch: dict, micro_batches: int = 1) -> tuple[tuple[jax.Array, dict], Any]:
  """((loss, aux), gradients) of `loss_fn(params, batch) -> (loss, {name: scalar})`, a mean
  over the batch's examples.

  With `micro_batches` k > 1 the batch [B, ...] is cut along its first axis into k
  micro-batches of B/k, run one after another (`lax.scan`) and their losses, aux values and
  gradients averaged: the whole batch's values (when each example's terms depend only on
  the example), with the activations of B/k examples alive at a time.
  """
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  if micro_batches == 1:
    return grad_fn(params, batch)
  micro = jax.tree.map(lambda x: x.reshape(micro_batches, -1, *x.shape[1:]), batch)

  def add(total, batch_j):
    return jax.tree.map(jnp.add, total, grad_fn(params, batch_j)), None

  first = jax.tree.map(lambda x: x[0], micro)
  zeros = jax.tree.map(jnp.zeros_like, jax.eval_shape(grad_fn, params, first))
  total, _ = jax.lax.scan(add, zeros, micro)
  return jax.tree.map(lambda x: x / micro_batches, total)


def ema_update(ema: Any, params: Any, decay: float) -> Any:
  """Returns decay * ema + (1 - decay) * params, leaf by leaf (decay 0: params, no pass)."""
  if decay == 0:
    return params
  return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params)


def apply_gradients(state: TrainState, grads: Any, tx: optax.GradientTransformation,
                    ema_decay: float) -> tuple[TrainState, dict[str, jax.Array]]:
  """Returns the state one step on, and the l2 norms of grads, updates and new params."""
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                            ema_params=ema_update(state.ema_params, params, ema_decay))
  norms = {'grad_norm': optax.tree.norm(grads), 'update_norm': optax.tree.norm(updates),
           'param_norm': optax.tree.norm(params)}
  return new_state, norms
