"""Feature networks for sample-quality metrics, chosen by a sample_quality evaluator's
`features`.

`inception_v3_fid`: pool3 (2048-d) and logits of the FID InceptionV3, with the weights file
of its `inception_weights` (pytorch-fid's pt_inception-2015-12-05-6726825d.pth), images
resized to 299 as pytorch-fid does.
`classifier:WORKDIR`: the penultimate layer (and logits) of a classifier trained by gen_jax
(`configs/classifier_mnist.py`), restored from the newest checkpoint in WORKDIR, EMA params.

A network takes images [B, H, W, C] in [-1, 1] of any size and resizes them itself, as its
protocol (`resize`) says.
"""

import hashlib
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh

from gen_jax.checkpoint import restore_run
from gen_jax.errors import UserError


class FeatureNet(NamedTuple):
  """A feature network with what a metric's protocol must record about it."""
  spec: str  # as given in `features`, paths made absolute
  weights_sha256: str  # of the weights file, or of the parameters' bytes in tree order
  image_size: int  # the input size it works at
  resize: str  # how other sizes are brought to image_size
  params: Any
  apply: Callable[[Any, jax.Array], tuple[jax.Array, jax.Array]]  # -> (features, logits)


def params_sha256(params: Any) -> str:
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(params):
    digest.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
  return digest.hexdigest()


def load_classifier(workdir: str, mesh: Mesh) -> FeatureNet:
  """Restores the classifier run in `workdir` (its config.json and newest checkpoint)."""
  try:
    config, family, state = restore_run(workdir, mesh)
  except UserError as e:
    raise UserError(f'features=classifier:{workdir}: {e}') from None
  if family.features is None:
    raise UserError(f'features=classifier:{workdir} holds a {config.family!r} run, '
                    'not a classifier')
  params = jax.device_get(state.ema_params)
  size = config.data.image_size

  def apply(params, images):
    if images.shape[1:3] != (size, size):
      images = jax.image.resize(images, (images.shape[0], size, size, images.shape[3]),
                                'bilinear')
    return family.features(params, images)

  return FeatureNet(f'classifier:{os.path.abspath(workdir)}', params_sha256(params), size,
                    'bilinear, antialiased (jax.image.resize)', params, apply)


def load_inception(weights_path: str | None) -> FeatureNet:
  from gen_jax.metrics import inception, torch_weights  # pylint: disable=g-import-not-at-top
  if not weights_path or not os.path.exists(weights_path):
    raise UserError(f'inception_weights={weights_path!r}: expected the path of the FID '
                    'Inception weights (pytorch-fid pt_inception-2015-12-05-6726825d.pth)')
  try:
    variables, apply = inception.load_inception_fid(weights_path)
  except ValueError as e:
    raise UserError(f'inception_weights={weights_path!r}: {e}') from None
  return FeatureNet('inception_v3_fid', torch_weights.file_sha256(weights_path),
                    inception.IMAGE_SIZE, 'bilinear, half-pixel, no antialiasing (as '
                    'torch F.interpolate in pytorch-fid); grey repeated to RGB',
                    variables, apply)


def load_feature_net(spec: str, mesh: Mesh, inception_weights: str | None = None
                     ) -> FeatureNet:
  """Returns the feature network that `spec` names (a classifier restored onto `mesh`)."""
  kind, _, arg = spec.partition(':')
  if kind == 'classifier' and arg:
    return load_classifier(arg, mesh)
  if spec == 'inception_v3_fid':
    return load_inception(inception_weights)
  raise UserError(f'features={spec!r}: expected inception_v3_fid or classifier:WORKDIR')
