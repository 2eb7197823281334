"""A tiny DDPM on scikit-learn's 8x8 digits, for smoke runs and tests.

  python -m gen_jax.main --config=configs/ddpm_digits.py --workdir=runs/ddpm_digits

Runtime: a few minutes on 2 CPU cores. Expected: blurry digit-like blobs after 2,000 steps;
a smoke test of the DDPM family, not a result.
"""

from gen_jax.config_lib import base_config


def get_config():
  config = base_config()
  config.family = 'ddpm'
  config.data.name = 'digits'
  config.data.image_size = 8
  config.data.batch_size = 64

  config.model = dict(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,),
                      dropout=0.0)
  config.diffusion = dict(num_steps=200, schedule='cosine', prediction='eps',
                          min_snr_gamma=0.0, learn_variance=False,
                          vlb_weight=0.001)
  config.sample.sampler = 'ddim'
  config.sample.steps = 50
  config.sample.eta = 0.0
  config.sample.spacing = 'uniform'  # DDIM timesteps: uniform, trailing or quadratic
  config.sample.variance = 'small'  # small, large, or learned (with learn_variance)

  config.optim.learning_rate = 1e-3
  config.optim.warmup_steps = 100
  config.optim.grad_clip = 1.0
  config.optim.ema_decay = 0.99

  config.train.num_steps = 2000
  config.train.log_every = 100
  config.checkpoint.every_steps = 1000
  config.sample.every_steps = 1000
  config.eval.every_steps = 0
  config.eval.num_examples = 297
  config.eval.batch_size = 99
  return config
