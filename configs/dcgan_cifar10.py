"""DCGAN on CIFAR-10: non-saturating loss, BatchNorm in G and D, Adam 2e-4 / beta1 0.5, the
32 px DCGAN networks of configs/wgan_gp_cifar10.py.

  python -m gen_jax.main --config=configs/dcgan_cifar10.py --workdir=runs/dcgan_cifar10 \
      --config.data.data_dir=PATH/TO/TENSORFLOW_DATASETS

The row beside StudioGAN's CIFAR-10 DCGAN (FID 49.0, 10k samples against test). StudioGAN's
"deep conv" networks differ from these (3x3 convs between the strided ones), so compare the
protocol, not the architecture. Not yet run here (no CIFAR-10 offline, no GPU).
"""

from gen_jax.config_lib import base_config


def get_config():
  config = base_config()
  config.family = 'gan'
  config.data.name = 'cifar10'
  config.data.image_size = 32
  config.data.channels = 3
  config.data.batch_size = 64

  config.model = dict(arch='dcgan', z_dim=100,
                      g_channels=(512, 256, 128), d_channels=(128, 256, 512),
                      d_norm='batch', spectral_norm=False)
  config.gan = dict(loss='non_saturating', n_critic=1, gp_weight=0.0, r1_gamma=0.0)

  config.optim.learning_rate = 2e-4  # the generator's; optim_d overrides it for D (TTUR)
  config.optim.b1 = 0.5
  config.optim.b2 = 0.999
  config.optim.ema_decay = 0.999
  config.optim_d = dict(learning_rate=2e-4)

  config.train.num_steps = 100000
  config.train.log_every = 500
  config.checkpoint.every_steps = 5000
  config.sample.every_steps = 5000
  config.eval.every_steps = 0
  config.eval.num_examples = 1000
  config.eval.batch_size = 100
  return config
