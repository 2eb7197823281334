"""gen_jax: GAN, VAE and DDPM image generation on one functional JAX core."""

import os

# XLA:CPU runs convolution nets faster without YNNPACK fusions (README, "Speed on CPU";
# measured with benchmarks/train_throughput.py). XLA reads XLA_FLAGS when jax first starts its
# backend, so importing gen_jax before any computation is enough. The flag is CPU-only; a
# user's own setting of it wins, and GEN_JAX_KEEP_XLA_FLAGS=1 leaves XLA_FLAGS untouched.
_YNN_FLAG = '--xla_cpu_experimental_ynn_fusion_type'
if not os.environ.get('GEN_JAX_KEEP_XLA_FLAGS') and _YNN_FLAG not in os.environ.get(
    'XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + f' {_YNN_FLAG}=').strip()
