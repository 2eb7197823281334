"""VAE on scikit-learn's 8x8 digits (resized to 16x16): the Quickstart, offline anywhere.

  python -m gen_jax.main --config=configs/vae_digits.py --workdir=/tmp/vae_digits

Runtime: about 2 minutes on 2 CPU cores (3,000 steps of batch 64).
Expected: a sample grid of recognisable digits in /tmp/vae_digits/samples/; test
-ELBO about ... nats (discretized logistic likelihood, 16x16x1 pixels).
"""

from gen_jax.config_lib import base_config


def get_config():
  config = base_config()
  config.family = 'vae'
  config.data.name = 'digits'
  config.data.image_size = 16
  config.data.batch_size = 64

  config.model = dict(channels=(32, 64), hidden=256, latent_dim=16, likelihood='logistic',
                      conv_impl='stride1')
  config.loss = dict(beta=1.0)
  config.optim.learning_rate = 1e-3
  config.optim.ema_decay = 0.99

  config.train.num_steps = 3000
  config.train.log_every = 100
  config.checkpoint.every_steps = 1000
  config.sample.every_steps = 1000
  config.eval.every_steps = 1000
  config.eval.num_examples = 297
  config.eval.batch_size = 99
  config.eval.iw_samples = 100
  config.eval.iw_chunk = 50
  return config
