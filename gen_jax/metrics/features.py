"""Feature networks for sample-quality metrics, chosen by `eval.features`.

`classifier:WORKDIR`: the penultimate layer (and logits) of a classifier trained by gen_jax
(`configs/classifier_mnist.py`), restored from the newest checkpoint in WORKDIR, EMA params.
"""

import hashlib
import json
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
from ml_collections import ConfigDict

from gen_jax.errors import UserError


class FeatureNet(NamedTuple):
  """A feature network with what a metric's protocol must record about it."""
  spec: str  # as given in eval.features
  weights_sha256: str  # of the parameters' bytes, in tree order
  image_size: int  # the input size it expects; images are resized to it
  params: Any
  apply: Callable[[Any, jax.Array], tuple[jax.Array, jax.Array]]  # -> (features, logits)


def params_sha256(params: Any) -> str:
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(params):
    digest.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
  return digest.hexdigest()


def load_classifier(workdir: str) -> FeatureNet:
  """Restores the classifier run in `workdir` (its config.json and newest checkpoint)."""
  from gen_jax import experiment  # pylint: disable=g-import-not-at-top
  from gen_jax.checkpoint import restore_latest  # pylint: disable=g-import-not-at-top
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise UserError(f'eval.features=classifier:{workdir}: no config.json there; train '
                    'configs/classifier_mnist.py into that workdir first')
  with open(path) as f:
    config = ConfigDict(json.load(f))
  if config.family != 'classifier':
    raise UserError(f'eval.features=classifier:{workdir} holds a {config.family!r} run, '
                    'not a classifier')
  exp = experiment.build(config)
  state, _ = restore_latest(workdir, exp.abstract_state, exp.family.name)
  params = jax.device_get(state.ema_params)
  return FeatureNet(f'classifier:{os.path.abspath(workdir)}', params_sha256(params),
                    config.data.image_size, params, exp.family.features)


def load_feature_net(spec: str) -> FeatureNet:
  """Returns the feature network that `eval.features` names."""
  kind, _, arg = spec.partition(':')
  if kind == 'classifier' and arg:
    return load_classifier(arg)
  raise UserError(f'eval.features={spec!r}: expected classifier:WORKDIR')
