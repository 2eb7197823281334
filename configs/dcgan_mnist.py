"""DCGAN on MNIST (28x28), non-saturating loss, Adam 2e-4 / beta1 0.5 (Radford et al.).

  python -m gen_jax.main --config=configs/dcgan_mnist.py --workdir=/tmp/dcgan_mnist \
      --config.data.manual_dir=PATH/TO/MNIST_IDX_FILES

Runtime: 17 min 23 s on 2 CPU cores (12,000 steps of batch 64, 11-12 steps/s). Expected:
crisp, diverse digits (docs/dcgan_mnist_samples.png) and, in classifier space
(configs/classifier_mnist.py), FID 88.9 on 10,000 EMA samples (precision 0.46, recall
0.76; an earlier run, the same function with other float rounding: 84.6): see
experiments/BASELINES.md.
"""

from gen_jax.config_lib import base_config


def get_config():
  config = base_config()
  config.family = 'gan'
  config.data.name = 'mnist_idx'
  config.data.image_size = 28
  config.data.batch_size = 64

  # g_channels: widths from the 7x7 base grid up; d_channels: from the image down.
  config.model = dict(arch='dcgan', z_dim=100, g_channels=(256, 128), d_channels=(64, 128),
                      d_norm='batch', spectral_norm=False)
  config.gan = dict(loss='non_saturating', n_critic=1, gp_weight=0.0, r1_gamma=0.0)

  config.optim.learning_rate = 2e-4  # the generator's; optim_d overrides it for D (TTUR)
  config.optim.b1 = 0.5
  config.optim.b2 = 0.999
  config.optim.ema_decay = 0.999
  config.optim_d = dict(learning_rate=2e-4)

  config.train.num_steps = 12000
  config.train.log_every = 200
  config.checkpoint.every_steps = 3000
  config.sample.every_steps = 3000
  config.eval.every_steps = 0
  config.eval.num_examples = 1000
  config.eval.batch_size = 100
  return config
