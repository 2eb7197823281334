"""SN-GAN on CIFAR-10 (Miyato et al. 2018): hinge loss, spectral norm in D, 32 px DCGAN-style
("standard CNN") networks.

  python -m gen_jax.main --config=configs/sngan_hinge_cifar10.py \
      --workdir=runs/sngan_hinge_cifar10 --config.data.data_dir=PATH/TO/TENSORFLOW_DATASETS

The paper's setting (A) for the standard CNN: Adam 1e-4, beta = (0.5, 0.9), 5 discriminator
updates per generator update, each on its own 64 real images (data.batch_size = 5 x 64);
no BatchNorm in D. Not yet run here (no CIFAR-10 offline, no GPU). Published: Miyato et
al. (2018), table 2, for this network (their ResNet reaches FID 21.7); compare only under the
same FID protocol.
"""

from gen_jax.config_lib import base_config


def get_config():
  config = base_config()
  config.family = 'gan'
  config.data.name = 'cifar10'
  config.data.image_size = 32
  config.data.channels = 3
  config.data.batch_size = 320

  config.model = dict(arch='dcgan', z_dim=128,
                      g_channels=(512, 256, 128), d_channels=(128, 256, 512),
                      d_norm='none', spectral_norm=True)
  config.gan = dict(loss='hinge', n_critic=5, gp_weight=0.0, r1_gamma=0.0)

  config.optim.learning_rate = 1e-4  # the generator's; optim_d overrides it for D (TTUR)
  config.optim.b1 = 0.5
  config.optim.b2 = 0.9
  config.optim.ema_decay = 0.999
  config.optim_d = dict(learning_rate=1e-4)

  config.train.num_steps = 100000
  config.train.log_every = 500
  config.checkpoint.every_steps = 5000
  config.sample.every_steps = 5000
  config.eval.every_steps = 0
  config.eval.num_examples = 1000
  config.eval.batch_size = 100
  return config
