"""The FID InceptionV3 as a Flax linen module: pool3 features [B, 2048] and logits.

The architecture is the standard InceptionV3 (Szegedy et al. 2016) as torchvision's
`Inception3` and `keras.applications.InceptionV3` build it, NHWC, for 299x299x3 inputs in
[-1, 1]; every conv is conv (no bias) -> BatchNorm (running statistics, eps 1e-3) -> ReLU.
Submodules carry torchvision's names (`Conv2d_1a_3x3`, `Mixed_5b/branch5x5_1`, `fc`, ...),
which are also the names in pytorch-fid's weights file, so `load_inception_fid` maps that
file onto this module name for name (`torch_weights.to_flax_variables`).

The FID network (TF's `inception-2015-12-05` graph, as pytorch-fid's `FIDInceptionA/C/E`
patch torchvision's blocks) differs from torchvision's in two places, each with its own
attribute; `fid=True` switches on both:

* `avg_pool_excludes_padding`: the 3x3 average pool in the pool branch of the A, C and E
  blocks divides by the number of pixels inside the image, not by 9 (`count_include_pad=
  False`). This is TF's and Keras's behaviour too.
* `last_block_max_pool`: the last block (`Mixed_7c`) max-pools in its pool branch.

The FID weights also have 1008 logits (`FID_NUM_CLASSES`), not 1000.
"""

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from gen_jax.metrics import torch_weights

IMAGE_SIZE = 299
FEATURE_DIM = 2048
FID_NUM_CLASSES = 1008
POOLS = ('avg', 'avg_count_pad', 'max')


def pool_3x3(x: jax.Array, kind: str) -> jax.Array:
  """3x3 stride-1 pool with 1 pixel of padding, [B, H, W, C] -> [B, H, W, C].

  'avg' divides each window's sum by the pixels inside the image (TF, Keras, FID); 'avg_count_pad'
  by 9 (torchvision's default); 'max' takes the maximum, padding never winning.
  """
  pad = ((1, 1), (1, 1))
  if kind == 'max':
    return nn.max_pool(x, (3, 3), padding=pad)
  if kind not in POOLS:
    raise ValueError(f'pool {kind!r}: expected one of {POOLS}')
  return nn.avg_pool(x, (3, 3), padding=pad, count_include_pad=kind == 'avg_count_pad')


def max_pool_3x3_stride2(x: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, (H - 3) // 2 + 1, (W - 3) // 2 + 1, C], no padding."""
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding='VALID')


class ConvBN(nn.Module):
  """Conv without bias -> BatchNorm in inference mode (eps 1e-3) -> ReLU.

  `padding` is 'SAME' (symmetric for the stride-1, odd-sized kernels it is used with) or
  'VALID'. `bn_scale=False` drops BatchNorm's learned scale, as Keras's `conv2d_bn` does.
  """
  features: int
  kernel: tuple[int, int]
  strides: int = 1
  padding: str = 'SAME'
  bn_scale: bool = True
  precision: str | None = 'highest'

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.Conv(self.features, self.kernel, (self.strides, self.strides), self.padding,
                use_bias=False, precision=self.precision, name='conv')(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, use_scale=self.bn_scale,
                     name='bn')(x)
    return nn.relu(x)


class InceptionA(nn.Module):
  """Mixed_5b/c/d, 35x35: [B, 35, 35, C] -> [B, 35, 35, 224 + pool_features]."""
  pool_features: int
  pool: str = 'avg'
  bn_scale: bool = True
  precision: str | None = 'highest'

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = functools.partial(ConvBN, bn_scale=self.bn_scale, precision=self.precision)
    b1 = conv(64, (1, 1), name='branch1x1')(x)
    b5 = conv(48, (1, 1), name='branch5x5_1')(x)
    b5 = conv(64, (5, 5), name='branch5x5_2')(b5)
    b3 = conv(64, (1, 1), name='branch3x3dbl_1')(x)
    b3 = conv(96, (3, 3), name='branch3x3dbl_2')(b3)
    b3 = conv(96, (3, 3), name='branch3x3dbl_3')(b3)
    bp = conv(self.pool_features, (1, 1), name='branch_pool')(pool_3x3(x, self.pool))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  """Mixed_6a, 35x35 -> 17x17: [B, 35, 35, 288] -> [B, 17, 17, 768]."""
  bn_scale: bool = True
  precision: str | None = 'highest'

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = functools.partial(ConvBN, bn_scale=self.bn_scale, precision=self.precision)
    b3 = conv(384, (3, 3), strides=2, padding='VALID', name='branch3x3')(x)
    bd = conv(64, (1, 1), name='branch3x3dbl_1')(x)
    bd = conv(96, (3, 3), name='branch3x3dbl_2')(bd)
    bd = conv(96, (3, 3), strides=2, padding='VALID', name='branch3x3dbl_3')(bd)
    return jnp.concatenate([b3, bd, max_pool_3x3_stride2(x)], axis=-1)


class InceptionC(nn.Module):
  """Mixed_6b/c/d/e, 17x17 with factorized 7x7 convs: [B, 17, 17, 768] -> [B, 17, 17, 768]."""
  channels_7x7: int
  pool: str = 'avg'
  bn_scale: bool = True
  precision: str | None = 'highest'

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = functools.partial(ConvBN, bn_scale=self.bn_scale, precision=self.precision)
    c7 = self.channels_7x7
    b1 = conv(192, (1, 1), name='branch1x1')(x)
    b7 = conv(c7, (1, 1), name='branch7x7_1')(x)
    b7 = conv(c7, (1, 7), name='branch7x7_2')(b7)
    b7 = conv(192, (7, 1), name='branch7x7_3')(b7)
    bd = conv(c7, (1, 1), name='branch7x7dbl_1')(x)
    bd = conv(c7, (7, 1), name='branch7x7dbl_2')(bd)
    bd = conv(c7, (1, 7), name='branch7x7dbl_3')(bd)
    bd = conv(c7, (7, 1), name='branch7x7dbl_4')(bd)
    bd = conv(192, (1, 7), name='branch7x7dbl_5')(bd)
    bp = conv(192, (1, 1), name='branch_pool')(pool_3x3(x, self.pool))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  """Mixed_7a, 17x17 -> 8x8: [B, 17, 17, 768] -> [B, 8, 8, 1280]."""
  bn_scale: bool = True
  precision: str | None = 'highest'

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = functools.partial(ConvBN, bn_scale=self.bn_scale, precision=self.precision)
    b3 = conv(192, (1, 1), name='branch3x3_1')(x)
    b3 = conv(320, (3, 3), strides=2, padding='VALID', name='branch3x3_2')(b3)
    b7 = conv(192, (1, 1), name='branch7x7x3_1')(x)
    b7 = conv(192, (1, 7), name='branch7x7x3_2')(b7)
    b7 = conv(192, (7, 1), name='branch7x7x3_3')(b7)
    b7 = conv(192, (3, 3), strides=2, padding='VALID', name='branch7x7x3_4')(b7)
    return jnp.concatenate([b3, b7, max_pool_3x3_stride2(x)], axis=-1)


class InceptionE(nn.Module):
  """Mixed_7b/c, 8x8 with split 1x3 / 3x1 convs: [B, 8, 8, C] -> [B, 8, 8, 2048]."""
  pool: str = 'avg'
  bn_scale: bool = True
  precision: str | None = 'highest'

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = functools.partial(ConvBN, bn_scale=self.bn_scale, precision=self.precision)
    b1 = conv(320, (1, 1), name='branch1x1')(x)
    b3 = conv(384, (1, 1), name='branch3x3_1')(x)
    b3 = [conv(384, (1, 3), name='branch3x3_2a')(b3), conv(384, (3, 1), name='branch3x3_2b')(b3)]
    bd = conv(448, (1, 1), name='branch3x3dbl_1')(x)
    bd = conv(384, (3, 3), name='branch3x3dbl_2')(bd)
    bd = [conv(384, (1, 3), name='branch3x3dbl_3a')(bd),
          conv(384, (3, 1), name='branch3x3dbl_3b')(bd)]
    bp = conv(192, (1, 1), name='branch_pool')(pool_3x3(x, self.pool))
    return jnp.concatenate([b1, *b3, *bd, bp], axis=-1)


class InceptionV3(nn.Module):
  """InceptionV3 without the auxiliary head: images [B, H, W, 3] in [-1, 1] (299x299; the
  net is fully convolutional and takes any size >= 75) -> (features [B, 2048], the global
  average of the last block's output (pool3), logits [B, num_classes]).

  Attributes:
    num_classes: size of the logits (`fc`): 1008 for the FID weights, 1000 for ImageNet's.
    fid: switches on both FID-network differences below unless they are set on their own.
    avg_pool_excludes_padding: the A/C/E blocks' average pools do not count padding (FID,
      TF, Keras), instead of dividing by 9 (torchvision). None: as `fid`.
    last_block_max_pool: Mixed_7c's pool branch max-pools (FID) instead of averaging.
      None: as `fid`.
    bn_scale: BatchNorm has a learned scale (torchvision and the FID weights have one;
      Keras's `conv2d_bn` has none).
    precision: of the convs and `fc`; 'highest' keeps float32 on GPUs and TPUs.
  """
  num_classes: int = 1000
  fid: bool = False
  avg_pool_excludes_padding: bool | None = None
  last_block_max_pool: bool | None = None
  bn_scale: bool = True
  precision: str | None = 'highest'

  def pools(self) -> tuple[str, str]:
    """The pool-branch kinds (of `pool_3x3`) of the A/C/E blocks and of Mixed_7c."""
    excludes = self.fid if self.avg_pool_excludes_padding is None else (
        self.avg_pool_excludes_padding)
    last_max = self.fid if self.last_block_max_pool is None else self.last_block_max_pool
    avg = 'avg' if excludes else 'avg_count_pad'
    return avg, 'max' if last_max else avg

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    avg, last = self.pools()
    common = {'bn_scale': self.bn_scale, 'precision': self.precision}
    conv = functools.partial(ConvBN, **common)
    x = conv(32, (3, 3), strides=2, padding='VALID', name='Conv2d_1a_3x3')(x)  # 149
    x = conv(32, (3, 3), padding='VALID', name='Conv2d_2a_3x3')(x)  # 147
    x = conv(64, (3, 3), name='Conv2d_2b_3x3')(x)
    x = max_pool_3x3_stride2(x)  # 73
    x = conv(80, (1, 1), padding='VALID', name='Conv2d_3b_1x1')(x)
    x = conv(192, (3, 3), padding='VALID', name='Conv2d_4a_3x3')(x)  # 71
    x = max_pool_3x3_stride2(x)  # 35
    x = InceptionA(32, avg, **common, name='Mixed_5b')(x)  # 256 channels
    x = InceptionA(64, avg, **common, name='Mixed_5c')(x)  # 288
    x = InceptionA(64, avg, **common, name='Mixed_5d')(x)  # 288
    x = InceptionB(**common, name='Mixed_6a')(x)  # 17x17x768
    for name, c7 in (('Mixed_6b', 128), ('Mixed_6c', 160), ('Mixed_6d', 160), ('Mixed_6e', 192)):
      x = InceptionC(c7, avg, **common, name=name)(x)
    x = InceptionD(**common, name='Mixed_7a')(x)  # 8x8x1280
    x = InceptionE(avg, **common, name='Mixed_7b')(x)  # 8x8x2048
    x = InceptionE(last, **common, name='Mixed_7c')(x)
    features = jnp.mean(x, axis=(1, 2))
    logits = nn.Dense(self.num_classes, precision=self.precision, name='fc')(features)
    return features, logits


def fid_inception() -> InceptionV3:
  """The FID network, for pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` weights."""
  return InceptionV3(num_classes=FID_NUM_CLASSES, fid=True)


def resize_for_inception(images: jax.Array, size: int = IMAGE_SIZE) -> jax.Array:
  """[B, H, W, C] -> [B, size, size, 3] float32, bilinear with half-pixel centres and no
  antialiasing: what torch's `F.interpolate(mode='bilinear', align_corners=False)` computes,
  as pytorch-fid resizes. One channel (grayscale) is repeated to three. A no-op at 299."""
  images = jnp.asarray(images, jnp.float32)
  if images.shape[-1] == 1:
    images = jnp.repeat(images, 3, axis=-1)
  if images.shape[1:3] == (size, size):
    return images
  return jax.image.resize(images, (images.shape[0], size, size, images.shape[-1]), 'bilinear',
                          antialias=False)


def abstract_variables(module: InceptionV3) -> Any:
  """The {'params', 'batch_stats'} tree of `module` as shapes, without running it."""
  return jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 75, 75, 3), jnp.float32))


def load_inception_fid(weights_path: str) -> tuple[Any, Callable[[Any, jax.Array],
                                                                   tuple[jax.Array, jax.Array]]]:
  """Reads pytorch-fid's FID weights (`pt_inception-2015-12-05-6726825d.pth`; no torch needed).

  Returns (variables, apply): apply(variables, images [B, H, W, C] in [-1, 1], any size, C in
  {1, 3}) resizes them to 299 (`resize_for_inception`) and returns (pool3 features [B, 2048],
  logits [B, 1008]); pure, so it can be jitted or sharded.
  """
  module = fid_inception()
  torch_weights.check_hub_hash(weights_path)
  state = torch_weights.read_state_dict(weights_path)
  variables = torch_weights.to_flax_variables(state, abstract_variables(module))

  def apply(variables: Any, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    return module.apply(variables, resize_for_inception(images))

  return variables, apply
