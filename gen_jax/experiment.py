"""A family mapped onto the device mesh: jitted init, train, eval and sample functions.

Everything that runs on devices for `train`, `eval` and `sample` is built here once, from
the config, so the modes differ only in their loops.
"""

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from ml_collections import ConfigDict

from gen_jax import images, labels, parallel
from gen_jax import state as state_lib
from gen_jax.data import augment
from gen_jax.evaluators.run import Run
from gen_jax.families import Family, get_family
from gen_jax.parallel import BATCH, REPLICATED
from gen_jax.rng import Keys, step_key


class Experiment(NamedTuple):
  config: ConfigDict
  mesh: Mesh
  family: Family
  keys: Keys
  abstract_state: Any  # TrainState of ShapeDtypeStructs, replicated sharding
  init: Callable[[], Any]
  train_step: Callable[[Any, dict], tuple[Any, dict]]  # (state, batch) -> (state, metrics)
  eval_step: Callable[[Any, dict], tuple[dict, jax.Array]]
  sample: Callable[[Any, jax.Array, jax.Array], jax.Array] | None
  # (params, eval batch) -> (model inputs, reconstructions), both [B, H, W, C] in [-1, 1]
  reconstruct: Callable[[Any, dict], tuple[jax.Array, jax.Array]] | None
  edit: Callable[..., jax.Array] | None  # Family.edit on the mesh


def build(config: ConfigDict) -> Experiment:
  """Returns the experiment of `config` on a mesh over all devices."""
  mesh = parallel.make_mesh()
  family = get_family(config)
  keys = Keys.from_seed(config.seed)
  data = config.data
  init = state_lib.initializer(family, config, mesh)
  abstract_state = jax.eval_shape(init)

  def train_step(state, batch):
    data_rng, model_rng = jax.random.split(step_key(config.seed, state.step + 1))
    image = augment.prepare_images(batch['image'], batch['id'], data_rng,
                                   binarize=data.binarize, random_flip=data.random_flip)
    return family.train_step(state, {**batch, 'image': image}, model_rng)

  def eval_images(batch):
    return augment.prepare_images(batch['image'], batch['id'], keys.eval,
                                  binarize=data.binarize, random_flip=False)

  def eval_step(state, batch):
    values = family.eval_step(state, {**batch, 'image': eval_images(batch)}, keys.eval)
    mask = batch['mask']
    sums = {k: jnp.sum(v * mask) for k, v in values.items()}
    return parallel.psum(sums), parallel.psum(jnp.sum(mask))

  reconstruct = None
  if family.reconstruct is not None:
    def reconstruct_step(params, batch):
      images = eval_images(batch)
      return images, family.reconstruct(params, images, batch['label'])

    reconstruct = parallel.data_parallel(reconstruct_step, mesh, (REPLICATED, BATCH),
                                         (BATCH, BATCH))

  return Experiment(
      config=config, mesh=mesh, family=family, keys=keys, abstract_state=abstract_state,
      init=init,
      train_step=parallel.data_parallel(train_step, mesh, (REPLICATED, BATCH),
                                        (REPLICATED, REPLICATED), donate_argnums=(0,)),
      eval_step=parallel.data_parallel(eval_step, mesh, (REPLICATED, BATCH),
                                       (REPLICATED, REPLICATED)),
      sample=family.sample and parallel.data_parallel(
          family.sample, mesh, (REPLICATED, REPLICATED, BATCH), BATCH),
      reconstruct=reconstruct,
      edit=family.edit and parallel.data_parallel(
          family.edit, mesh, (REPLICATED, REPLICATED) + (BATCH,) * 4, BATCH))


def generate(exp: Experiment, params: Any, rng: jax.Array, num: int, start: int = 0) -> Any:
  """Returns `num` samples [num, H, W, C] in [-1, 1] (host numpy) with ids start..start+num-1.

  The ids are padded to a multiple of the device count; each sample's randomness comes
  from its id, so the images do not depend on the number of devices.
  """
  padded = parallel.padded_size(num, exp.mesh)
  ids = jax.device_put(np.arange(start, start + padded, dtype=np.int32),
                       jax.sharding.NamedSharding(exp.mesh, BATCH))
  images = multihost_utils.process_allgather(exp.sample(params, rng, ids), tiled=True)
  return np.asarray(images)[:num]


def edit_images(exp: Experiment, params: Any, given: np.ndarray, masks: np.ndarray,
                classes: np.ndarray) -> np.ndarray:
  """Returns the edits (`Family.edit`, the sample stream's key, ids 0..n-1) of uint8 images
  `given` [n, H, W, C] with `masks` [n, H, W, 1] and `classes` [n], as uint8 [n, H, W, C],
  in batches of eval.batch_size padded to a multiple of the device count."""
  batch, n = exp.config.eval.batch_size, len(given)
  sharding = jax.sharding.NamedSharding(exp.mesh, BATCH)
  out = []
  for start in range(0, n, batch):
    ids = np.arange(start, min(start + batch, n))
    padded = np.resize(ids, parallel.padded_size(len(ids), exp.mesh))  # repeats, then drops
    x = augment.prepare_images(jnp.asarray(given[padded]), jnp.asarray(padded), exp.keys.eval,
                               binarize=False, random_flip=False)
    args = (np.asarray(x), masks[padded], classes[padded].astype(np.int32))
    edited = exp.edit(params, exp.keys.sample, *(jax.device_put(a, sharding)
                                                 for a in (padded.astype(np.int32), *args)))
    out.append(np.asarray(multihost_utils.process_allgather(edited, tiled=True))[:len(ids)])
  return images.to_uint8(np.concatenate(out))


def sample_images(exp: Experiment, params: Any, num: int) -> np.ndarray:
  """Returns `num` samples (ids 0..num-1, the sample stream's key) as uint8 [num, H, W, C],
  drawn in batches of eval.batch_size."""
  batch = exp.config.eval.batch_size
  return images.to_uint8(np.concatenate([
      generate(exp, params, exp.keys.sample, min(batch, num - start), start)
      for start in range(0, num, batch)]))


def eval_run(exp: Experiment) -> Run:
  """What the evaluators see of `exp`."""
  c = exp.config
  return Run(data=c.data, batch_size=parallel.padded_size(c.eval.batch_size, exp.mesh),
             seed=c.seed, key=exp.keys.eval, mesh=exp.mesh, eval_step=exp.eval_step,
             sample=exp.sample, reconstruct=exp.reconstruct,
             **conditioning(c))


def conditioning(config: ConfigDict) -> dict:
  """The `labels` and `conditioning` fields of a class-conditional model's Run; {} for an
  unconditional one."""
  if not labels.num_classes(config):
    return {}
  smp = config.sample
  conditioning = {'classes': list(labels.classes(config)),
                  'guidance': float(smp.get('guidance', 0.0))}
  low, high = smp.get('guidance_sigma_min', 0.0), smp.get('guidance_sigma_max', math.inf)
  if low > 0 or high < math.inf:  # the guided levels (low, high], None: no upper bound
    conditioning['guidance_sigmas'] = [low, high if high < math.inf else None]
  return {'labels': functools.partial(labels.for_ids, config), 'conditioning': conditioning}
