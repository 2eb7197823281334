"""The DDPM UNet of Ho et al. (2020), as in their reference code (diffusion_tf/models/unet.py).

Wide-ResNet blocks with GroupNorm(32) + SiLU and an added projection of the timestep
embedding, self-attention at the resolutions in `attn_resolutions`, 3x3 stride-2 conv
downsampling, nearest-neighbour x2 + 3x3 conv upsampling, skip connections from every
down-path block to the up path. The CIFAR-10 model (ch 128, ch_mult (1, 2, 2, 2), 2 blocks,
attention at 16x16) has 35.7M parameters.

Layer names follow the reference where they are explicit there (conv1, temb_proj, q, ...);
the norms and the resampling convs keep the names of the checkpoints written so far:
`GroupNorm_0` / `GroupNorm_1` for the reference's norm1 / norm2 (and norm_out), and `Conv_i`
for the i-th resampling conv, downsampling first.
"""

import itertools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from gen_jax.nn import (
  Conv,
  Dense,
  Downsample,
  GroupNorm,
  GroupNormSiLU,
  Upsample,
  checkpointed,
  example_dropout,
)


def timestep_embedding(t: jax.Array, dim: int) -> jax.Array:
  """Sinusoidal embedding of timesteps t [B] -> [B, dim], as in the reference code (and the
  Transformer): sin and cos of t * exp(-log(10000) * i / (dim/2 - 1))."""
  half = dim // 2
  frequencies = jnp.exp(-math.log(10000.0) * jnp.arange(half) / (half - 1))
  angles = t.astype(jnp.float32)[:, None] * frequencies[None]
  embedding = jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=1)
  return jnp.pad(embedding, ((0, 0), (0, dim % 2)))


class ResnetBlock(nn.Module):
  """x [B, H, W, C], temb [B, E] -> [B, H, W, out_ch]; ids [B] pick the dropout masks."""
  out_ch: int
  dropout: float

  @nn.compact
  def __call__(self, x: jax.Array, temb: jax.Array, train: bool, ids: jax.Array | None
               ) -> jax.Array:
    h = GroupNormSiLU(name='GroupNorm_0')(x)
    h = Conv(self.out_ch, (3, 3), name='conv1')(h)
    h = h + Dense(self.out_ch, name='temb_proj')(nn.silu(temb))[:, None, None, :]
    h = GroupNormSiLU(name='GroupNorm_1')(h)
    if train and self.dropout > 0:
      h = example_dropout(h, self.dropout, self.make_rng('dropout'), ids)
    h = Conv(self.out_ch, (3, 3), name='conv2')(h)
    if x.shape[-1] != self.out_ch:
      x = Dense(self.out_ch, name='nin_shortcut')(x)
    return x + h


class AttnBlock(nn.Module):
  """Single-head self-attention over all positions: [B, H, W, C] -> [B, H, W, C]."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b, h, w, c = x.shape
    y = GroupNorm()(x)
    q, k, v = (Dense(c, name=name)(y).reshape(b, h * w, c) for name in ('q', 'k', 'v'))
    logits = jnp.einsum('bic,bjc->bij', q, k) / math.sqrt(c)
    weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
    out = jnp.einsum('bij,bjc->bic', weights, v).reshape(b, h, w, c)
    return x + Dense(c, name='proj_out')(out)


class UNet(nn.Module):
  """x_t [B, H, W, C], t [B] -> [B, H, W, out_ch] (e.g. the predicted noise).

  Training with dropout needs a 'dropout' rng and the examples' global ids [B]. `remat`
  recomputes each residual and attention block's activations in the backward pass.
  With `num_classes` > 0 the model is class-conditional: labels [B] in 0..num_classes, the
  last being the null class of classifier-free guidance, add a learned embedding to the
  timestep embedding (Ho & Salimans 2022; improved-diffusion's `label_emb`).
  """
  ch: int = 128
  ch_mult: Sequence[int] = (1, 2, 2, 2)
  num_res_blocks: int = 2
  attn_resolutions: Sequence[int] = (16,)
  dropout: float = 0.1
  out_ch: int = 3
  remat: bool = False
  num_classes: int = 0

  @nn.compact
  def __call__(self, x: jax.Array, t: jax.Array, train: bool = False,
               ids: jax.Array | None = None, labels: jax.Array | None = None) -> jax.Array:
    if train and self.dropout > 0 and ids is None:
      raise ValueError('UNet: training with dropout needs the example ids')
    resample_names = (f'Conv_{i}' for i in itertools.count())
    resnet_block = checkpointed(ResnetBlock, self.remat, static_argnums=(3,))
    attn_block = checkpointed(AttnBlock, self.remat)
    temb = timestep_embedding(t, self.ch)
    temb = Dense(4 * self.ch, name='temb_dense0')(temb)
    temb = Dense(4 * self.ch, name='temb_dense1')(nn.silu(temb))
    if self.num_classes:
      label_emb = nn.Embed(self.num_classes + 1, 4 * self.ch, name='label_emb')(labels)
      temb = temb + label_emb.astype(temb.dtype)

    # Downsampling
    hs = [Conv(self.ch, (3, 3), name='conv_in')(x)]
    for level, mult in enumerate(self.ch_mult):
      for _ in range(self.num_res_blocks):
        h = resnet_block(self.ch * mult, self.dropout)(hs[-1], temb, train, ids)
        if h.shape[1] in self.attn_resolutions:
          h = attn_block()(h)
        hs.append(h)
      if level != len(self.ch_mult) - 1:
        hs.append(Downsample(name=next(resample_names))(hs[-1]))

    # Middle
    h = resnet_block(hs[-1].shape[-1], self.dropout)(hs[-1], temb, train, ids)
    h = attn_block()(h)
    h = resnet_block(h.shape[-1], self.dropout)(h, temb, train, ids)

    # Upsampling
    for level, mult in reversed(list(enumerate(self.ch_mult))):
      for _ in range(self.num_res_blocks + 1):
        h = resnet_block(self.ch * mult, self.dropout)(
            jnp.concatenate([h, hs.pop()], axis=-1), temb, train, ids)
        if h.shape[1] in self.attn_resolutions:
          h = attn_block()(h)
      if level != 0:
        h = Upsample(name=next(resample_names))(h)

    # End
    h = GroupNormSiLU(name='GroupNorm_0')(h)
    return Conv(self.out_ch, (3, 3), name='conv_out')(h)
