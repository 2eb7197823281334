"""DCGAN on CelebA faces at 64x64 (Radford et al. 2016): the seed's face-generation case.

  python -m gen_jax.main --config=configs/dcgan_celeba64.py --workdir=runs/dcgan_celeba64 \
      --config.data.data_dir=PATH/TO/TENSORFLOW_DATASETS

tfds `celeb_a` (prepared beforehand: its download needs a network), center crop 108 -> 64.
The model is PyTorch's DCGAN example exactly: G 512-256-128-64 from a 4x4 grid (3,576,704
parameters), D 64-128-256-512 (2,765,568), no conv biases, batch 64, Adam 2e-4 / beta1 0.5.
Not yet run here (no CelebA offline, no GPU); benchmarks/train_throughput.py times its step.
Expected on an accelerator: recognisable faces within a few epochs (~3k steps per epoch).
"""

from gen_jax.config_lib import base_config


def get_config():
  config = base_config()
  config.family = 'gan'
  config.data.name = 'celeb_a'
  config.data.image_size = 64
  config.data.crop_size = 108
  config.data.channels = 3
  config.data.batch_size = 64

  config.model = dict(arch='dcgan', z_dim=100,
                      g_channels=(512, 256, 128, 64), d_channels=(64, 128, 256, 512),
                      d_norm='batch', spectral_norm=False)
  config.gan = dict(loss='non_saturating', n_critic=1, gp_weight=0.0, r1_gamma=0.0)

  config.optim.learning_rate = 2e-4  # the generator's; optim_d overrides it for D (TTUR)
  config.optim.b1 = 0.5
  config.optim.b2 = 0.999
  config.optim.ema_decay = 0.999
  config.optim_d = dict(learning_rate=2e-4)

  config.train.num_steps = 50000
  config.train.log_every = 500
  config.checkpoint.every_steps = 5000
  config.sample.every_steps = 5000
  config.eval.every_steps = 0
  config.eval.num_examples = 1000
  config.eval.batch_size = 100
  return config
