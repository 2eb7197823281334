"""gen_jax: GAN, VAE and DDPM image generation on one functional JAX core."""

import os
import sys

# XLA:CPU runs convolution nets about twice as fast without YNNPACK fusions (measured in
# benchmarks/train_throughput.py). The flag is CPU-only and must be set before jax starts;
# a user's own XLA_FLAGS setting of it wins, and GEN_JAX_KEEP_XLA_FLAGS=1 disables this.
_YNN_FLAG = '--xla_cpu_experimental_ynn_fusion_type'
if ('jax' not in sys.modules and not os.environ.get('GEN_JAX_KEEP_XLA_FLAGS')
    and _YNN_FLAG not in os.environ.get('XLA_FLAGS', '')):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + f' {_YNN_FLAG}=').strip()
