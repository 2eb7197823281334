"""VAE on scikit-learn's 8x8 digits: the Quickstart, offline anywhere.

  python -m gen_jax.main --config=configs/vae_digits.py --workdir=runs/vae_digits

Data: 1,500 train / 297 test digits (16 grey levels scaled to 0..255), discretized-logistic
likelihood on [-1, 1]. Runtime: about 30 s on 2 CPU cores (2,000 steps of batch 64 at
150-210 steps/s, start-up and four evaluations). Expected: sample grids of recognisable 8x8
digits in runs/vae_digits/samples/, and a test NLL (importance-weighted, k=100, all 297 test digits)
of about 157 nats (3.5 bits/dim) at step 2,000; longer training overfits 1,500 digits.
"""

from gen_jax.config_lib import family_config


def get_config():
  config = family_config('vae')
  config.data.update(name='digits', image_size=8, batch_size=64)
  config.model.update(hidden=128, latent_dim=8, likelihood='logistic')
  config.optim.ema_decay = 0.99
  config.train.num_steps = 2000
  config.checkpoint.every_steps = config.sample.every_steps = 500
  config.eval.update(batch_size=99, iw_samples=100, iw_chunk=50)
  config.evals.likelihood.update(every_steps=500, num_examples=297)
  config.evals.reconstruction.num_examples = 297
  return config
