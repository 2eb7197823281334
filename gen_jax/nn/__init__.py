"""The layer library of gen_jax's models, in flax's vocabulary and the papers'.

Every layer computes its plain flax / lax form, or, where the run's kernels
(`runtime.kernels`, see `gen_jax.nn.kernels`) are the CPU's, the same function by the XLA:CPU
kernels of `gen_jax.nn.cpu`. Models import their layers from here and never meet the kernels.
"""

from gen_jax.nn.layers import (
                               Conv,
                               ConvTranspose,
                               Dense,
                               Downsample,
                               Upsample,
                               checkpointed,
                               example_dropout,
                               upsample_nearest,
)
from gen_jax.nn.norms import BatchNorm, GroupNorm, GroupNormSiLU

__all__ = ['BatchNorm', 'Conv', 'ConvTranspose', 'Dense', 'Downsample', 'GroupNorm',
           'GroupNormSiLU', 'Upsample', 'checkpointed', 'example_dropout', 'upsample_nearest']
