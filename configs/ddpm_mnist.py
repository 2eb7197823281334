"""A small DDPM on MNIST that trains on 2 CPU cores.

  python -m gen_jax.main --config=configs/ddpm_mnist.py --workdir=/tmp/ddpm_mnist \
      --config.data.manual_dir=PATH/TO/MNIST_IDX_FILES

Runtime: 42 min 47 s on 2 CPU cores (5,000 steps of batch 64, ~2 steps/s). Expected:
recognizable, diverse digits (docs/ddpm_mnist_samples.png; DDIM, 50 trailing steps, EMA);
test bound 1.71 bits/dim (200 test images, all 1,000 terms, fixed-small variance) and, in
classifier space (configs/classifier_mnist.py), FID 88.2 on 10,000 samples (precision 0.54,
recall 0.88): see experiments/BASELINES.md. The eval of both took 37 minutes.
"""

from gen_jax.config_lib import base_config


def get_config():
  config = base_config()
  config.family = 'ddpm'
  config.data.name = 'mnist_idx'
  config.data.image_size = 28
  config.data.batch_size = 64

  config.model = dict(ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(7,),
                      dropout=0.0)
  config.diffusion = dict(num_steps=1000, schedule='cosine', prediction='eps',
                          min_snr_gamma=0.0, learn_variance=False, vlb_weight=0.001)
  config.sample.sampler = 'ddim'
  config.sample.steps = 50
  config.sample.eta = 0.0
  config.sample.spacing = 'trailing'  # DDIM timesteps: uniform, trailing or quadratic
  config.sample.variance = 'small'  # small, large, or learned (with learn_variance)

  config.optim.learning_rate = 1e-3
  config.optim.schedule = 'cosine'
  config.optim.warmup_steps = 200
  config.optim.grad_clip = 1.0
  config.optim.ema_decay = 0.999

  config.train.num_steps = 5000
  config.train.log_every = 100
  config.checkpoint.every_steps = 1000
  config.sample.every_steps = 1000
  config.eval.every_steps = 0
  config.eval.num_examples = 500
  config.eval.batch_size = 100
  return config
