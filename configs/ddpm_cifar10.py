"""Ho et al. (2020)'s CIFAR-10 DDPM: the paper's model and training setting.

  python -m gen_jax.main --config=configs/ddpm_cifar10.py --workdir=runs/ddpm_cifar10

Model: UNet ch 128, ch_mult (1, 2, 2, 2), 2 res blocks, attention at 16x16, dropout 0.1:
35,746,307 parameters (the paper's 35.7M; `--mode=summary` prints it). Training: Adam 2e-4,
5,000 warm-up steps, batch 128, grad-norm clip 1, EMA 0.9999, random flips, 800k steps,
linear betas 1e-4..0.02 over T = 1000, eps-prediction with L_simple.
Expected (paper): FID 3.17 (50k samples, Inception), <= 3.75 bits/dim on the test set.
Not yet run here: 800k steps need accelerators (the paper: 21 steps/s on a TPU v3-8,
10.6 hours in all).
"""

from gen_jax.config_lib import base_config


def get_config():
  config = base_config()
  config.family = 'ddpm'
  config.data.name = 'cifar10'
  config.data.image_size = 32
  config.data.channels = 3
  config.data.batch_size = 128
  config.data.random_flip = True

  config.model = dict(ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,),
                      dropout=0.1)
  config.diffusion = dict(num_steps=1000, schedule='linear', prediction='eps',
                          min_snr_gamma=0.0, learn_variance=False,
                          vlb_weight=0.001)
  config.sample.sampler = 'ddpm'
  config.sample.steps = 1000
  config.sample.eta = 0.0
  config.sample.spacing = 'uniform'  # DDIM timesteps: uniform, trailing or quadratic
  config.sample.variance = 'large'  # small, large, or learned (with learn_variance)

  config.optim.learning_rate = 2e-4
  config.optim.warmup_steps = 5000
  config.optim.grad_clip = 1.0
  config.optim.ema_decay = 0.9999

  config.train.num_steps = 800_000
  config.train.log_every = 1000
  config.checkpoint.every_steps = 10_000
  config.sample.every_steps = 50_000
  config.eval.every_steps = 0
  config.eval.num_examples = 10000
  config.eval.batch_size = 128
  config.eval.num_samples = 50000
  return config
