"""VAE on scikit-learn's 8x8 digits: the Quickstart, offline anywhere.

  python -m gen_jax.main --config=configs/vae_digits.py --workdir=runs/vae_digits

Data: 1,500 train / 297 test digits (16 grey levels scaled to 0..255), discretized-logistic
likelihood on [-1, 1]. Runtime: about 30 s on 2 CPU cores (2,000 steps of batch 64 at
150-210 steps/s, start-up and four evaluations). Expected: sample grids of recognisable 8x8
digits in runs/vae_digits/samples/, and a test NLL (importance-weighted, k=100, all 297 test digits)
of about 157 nats (3.5 bits/dim) at step 2,000; longer training overfits 1,500 digits.
"""

from gen_jax.config_lib import base_config


def get_config():
  config = base_config()
  config.family = 'vae'
  config.data.name = 'digits'
  config.data.image_size = 8
  config.data.batch_size = 64

  config.model = dict(channels=(32, 64), hidden=128, latent_dim=8, likelihood='logistic')
  config.loss = dict(beta=1.0)
  config.optim.learning_rate = 1e-3
  config.optim.ema_decay = 0.99

  config.train.num_steps = 2000
  config.train.log_every = 100
  config.checkpoint.every_steps = 500
  config.sample.every_steps = 500
  config.eval.every_steps = 500
  config.eval.num_examples = 297
  config.eval.batch_size = 99
  config.eval.iw_samples = 100
  config.eval.iw_chunk = 50
  return config
