"""DDPM++ (Song et al. 2021), the CIFAR-10 network of EDM (Karras et al. 2022), as in
NVlabs/edm `training/networks.py` (`SongUNet` with `--arch=ddpmpp`).

Residual blocks GroupNorm-SiLU-conv, the noise embedding added between the two convs, their
sum and every attention output scaled by sqrt(1/2); 2x2 average-pool downsampling and
nearest-neighbour upsampling inside the first conv of a resampling block (and its 1x1 skip);
every encoder output kept for the decoder. CIFAR-10 (ch 128, ch_mult (2, 2, 2), 4 blocks,
attention at 16x16) has 55,732,739 parameters, and 55,734,147 with 10 classes; EDM's
released models add 1,152 for the labels of its augmentation pipeline, which gen_jax does not
have.
"""

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from gen_jax.models.unet import timestep_embedding
from gen_jax.nn import (
  Conv,
  Dense,
  GroupNorm,
  GroupNormSiLU,
  checkpointed,
  example_dropout,
  upsample_nearest,
)

SKIP_SCALE = math.sqrt(0.5)
xavier = nn.initializers.xavier_uniform()
# EDM's init_zero (xavier_uniform times 1e-5) and its attention qkv (times sqrt(0.2)).
near_zero = nn.initializers.variance_scaling(1e-10, 'fan_avg', 'uniform')
qkv_init = nn.initializers.variance_scaling(0.2, 'fan_avg', 'uniform')


def resample(x: jax.Array, mode: str) -> jax.Array:
  """'down': 2x2 average pooling (EDM's [1, 1] filter at stride 2); 'up': nearest x2."""
  if mode == 'down':
    return nn.avg_pool(x, (2, 2), (2, 2))
  return upsample_nearest(x) if mode == 'up' else x


class Block(nn.Module):
  """EDM's UNetBlock: [B, H, W, Cin], emb [B, E] -> [B, H', W', out_ch]."""
  out_ch: int
  mode: str = ''  # '', 'down' or 'up'
  attention: bool = False
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array, emb: jax.Array, train: bool, ids: jax.Array | None
               ) -> jax.Array:
    h = resample(GroupNormSiLU(name='norm0')(x), self.mode)
    h = Conv(self.out_ch, (3, 3), kernel_init=xavier, name='conv0')(h)
    h = h + Dense(self.out_ch, kernel_init=xavier, name='affine')(emb)[:, None, None, :]
    h = GroupNormSiLU(name='norm1')(h)
    if train and self.dropout > 0:
      h = example_dropout(h, self.dropout, self.make_rng('dropout'), ids)
    h = Conv(self.out_ch, (3, 3), kernel_init=near_zero, name='conv1')(h)
    skip = x
    if self.mode or x.shape[-1] != self.out_ch:
      skip = Conv(self.out_ch, (1, 1), kernel_init=xavier, name='skip')(resample(x, self.mode))
    x = (h + skip) * SKIP_SCALE
    if not self.attention:
      return x
    b, height, width, c = x.shape
    q, k, v = jnp.split(Conv(3 * c, (1, 1), kernel_init=qkv_init, name='qkv')(
        GroupNorm(name='norm2')(x)).reshape(b, height * width, 3 * c), 3, axis=-1)
    logits = jnp.einsum('bic,bjc->bij', q, k) / math.sqrt(c)
    weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
    a = jnp.einsum('bij,bjc->bic', weights, v).reshape(b, height, width, c)
    return (Conv(c, (1, 1), kernel_init=near_zero, name='proj')(a) + x) * SKIP_SCALE


class SongUNet(nn.Module):
  """x [B, H, W, C], noise label [B] (EDM's c_noise) -> [B, H, W, out_ch].

  With `num_classes` K > 0, labels [B] in 0..K add map_label(one_hot(y) sqrt(K)) to the
  noise embedding; the null class K is the all-zero one-hot, as EDM's label dropout.
  `remat` recomputes each block's activations in the backward pass (the same parameters).
  """
  ch: int = 128
  ch_mult: Sequence[int] = (2, 2, 2)
  num_res_blocks: int = 4
  attn_resolutions: Sequence[int] = (16,)
  dropout: float = 0.13
  out_ch: int = 3
  num_classes: int = 0
  remat: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, noise_label: jax.Array, train: bool = False,
               ids: jax.Array | None = None, labels: jax.Array | None = None) -> jax.Array:
    if train and self.dropout > 0 and ids is None:
      raise ValueError('SongUNet: training with dropout needs the example ids')
    emb = timestep_embedding(noise_label, self.ch)  # [sin, cos] at EDM's frequencies
    if self.num_classes:
      one_hot = jax.nn.one_hot(labels, self.num_classes) * math.sqrt(self.num_classes)
      emb = emb + Dense(self.ch, kernel_init=xavier, name='map_label')(one_hot)
    emb = nn.silu(Dense(4 * self.ch, kernel_init=xavier, name='map_layer0')(emb))
    emb = nn.silu(Dense(4 * self.ch, kernel_init=xavier, name='map_layer1')(emb))

    block_class = checkpointed(Block, self.remat, static_argnums=(3,))  # train is static

    def block(out_ch, name, mode='', attention=False):
      return block_class(out_ch, mode, attention, self.dropout, name=name)

    skips = [Conv(self.ch, (3, 3), kernel_init=xavier, name='conv_in')(x)]
    h = skips[-1]
    for level, mult in enumerate(self.ch_mult):
      res = x.shape[1] >> level
      if level:
        h = block(h.shape[-1], f'enc{res}_down', 'down')(h, emb, train, ids)
        skips.append(h)
      for i in range(self.num_res_blocks):
        h = block(self.ch * mult, f'enc{res}_block{i}',
                  attention=res in self.attn_resolutions)(h, emb, train, ids)
        skips.append(h)

    for level, mult in reversed(list(enumerate(self.ch_mult))):
      res = x.shape[1] >> level
      if level == len(self.ch_mult) - 1:
        h = block(h.shape[-1], f'dec{res}_in0', attention=True)(h, emb, train, ids)
        h = block(h.shape[-1], f'dec{res}_in1')(h, emb, train, ids)
      else:
        h = block(h.shape[-1], f'dec{res}_up', 'up')(h, emb, train, ids)
      for i in range(self.num_res_blocks + 1):
        last = i == self.num_res_blocks
        h = block(self.ch * mult, f'dec{res}_block{i}',
                  attention=last and res in self.attn_resolutions)(
                      jnp.concatenate([h, skips.pop()], axis=-1), emb, train, ids)
    h = GroupNormSiLU(name='norm_out')(h)
    return Conv(self.out_ch, (3, 3), kernel_init=near_zero, name='conv_out')(h)
