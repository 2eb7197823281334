"""DCGAN on MNIST (28x28), non-saturating loss, Adam 2e-4 / beta1 0.5 (Radford et al.).

  python -m gen_jax.main --config=configs/dcgan_mnist.py --workdir=/tmp/dcgan_mnist \
      --config.data.manual_dir=PATH/TO/MNIST_IDX_FILES

Runtime: 17 min 23 s on 2 CPU cores (12,000 steps of batch 64, 11-12 steps/s). Expected:
crisp, diverse digits (docs/dcgan_mnist_samples.png) and, in classifier space
(configs/classifier_mnist.py), FID 88.9 on 10,000 EMA samples (precision 0.46, recall
0.76; an earlier run, the same function with other float rounding: 84.6): see
experiments/BASELINES.md.
"""

from gen_jax.config_lib import classifier_fid, family_config


def get_config():
  config = family_config('gan')
  config.data.update(name='mnist_idx', batch_size=64)
  config.model.update(g_channels=(256, 128), d_channels=(64, 128))
  config.train.num_steps = 12000
  config.train.log_every = 200
  config.checkpoint.every_steps = config.sample.every_steps = 3000
  config.evals.fid = classifier_fid('runs/classifier_mnist')
  return config
