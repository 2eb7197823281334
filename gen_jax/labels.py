"""Class labels: which class each generated sample is asked for, and the check that a dataset
gives the labels a conditional model (`model.num_classes` > 0) trains on.

Sample i is asked for class `classes[i % len(classes)]`, where `classes` is `sample.labels`
or, when that is empty, every class 0..num_classes-1 (balanced). The label is a function of
the sample's id, as its noise is, so it does not depend on the batch or the device count.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from gen_jax.errors import UserError


def num_classes(config: ConfigDict) -> int:
  """The classes a generative model is conditioned on; 0: unconditional."""
  return int(config.model.get('num_classes', 0)) if config.family != 'classifier' else 0


def classes(config: ConfigDict) -> tuple[int, ...]:
  """The classes that samples cycle through; (0,) for an unconditional model."""
  k = num_classes(config)
  if not k:
    return (0,)
  return tuple(config.sample.get('labels', ())) or tuple(range(k))


def for_ids(config: ConfigDict, ids: Any, xp: Any = np) -> Any:
  """The class asked of each sample id: int32 [n] for ids [n], computed by `xp` (numpy on
  the host, jax.numpy inside a jitted sampler)."""
  table = xp.asarray(classes(config), dtype=xp.int32)
  return table[ids % len(table)]


def given(config: ConfigDict, labels: Any) -> Any:
  """What a model is conditioned on: `labels` [n] for a conditional model, None for an
  unconditional one."""
  return labels if num_classes(config) else None


def asked(config: ConfigDict, ids: jax.Array) -> jax.Array | None:
  """What a model's sampler is given for sample ids [n]: `for_ids` in jax.numpy, int32 [n],
  or None for an unconditional model."""
  return given(config, for_ids(config, ids, jnp))


def check(labels: np.ndarray, config: ConfigDict) -> None:
  """Raises a UserError if a conditional model's training batch lacks labels in
  [0, model.num_classes); the pipeline gives -1 for a dataset without labels."""
  k = num_classes(config)
  if not k:
    return
  labels = np.asarray(labels)
  if labels.min() < 0:
    raise UserError(f'dataset {config.data.name!r} has no labels, but model.num_classes={k} '
                    'asks for a class-conditional model; set model.num_classes=0')
  if labels.max() >= k:
    raise UserError(f'dataset {config.data.name!r} has label {labels.max()}, outside '
                    f'model.num_classes={k}: expected labels 0 to {k - 1}')


def grid_layout(config: ConfigDict, num: int) -> tuple[int, np.ndarray, int | None]:
  """How a grid of about `num` samples shows a class-conditional model: (samples to draw,
  their order in the grid, columns), one row per class of `classes`; for an unconditional
  model (num, 0..num-1, None: a square grid)."""
  if not num_classes(config):
    return num, np.arange(num), None
  rows = len(classes(config))
  per_row = max(1, num // rows)
  order = np.argsort(for_ids(config, np.arange(per_row * rows)), kind='stable')
  return per_row * rows, order, per_row

