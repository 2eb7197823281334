"""The conditional `vae_mnist` (Sohn et al. 2015): the label, one-hot, enters the encoder
beside the conv features and the decoder beside the latent; the bounds are of log p(x | y).

  python -m gen_jax.main --config=configs/vae_mnist_cond.py --workdir=/tmp/vae_mnist_cond \
      --config.data.manual_dir=PATH/TO/MNIST_IDX_FILES

Samples decode z ~ N(0, I) with the classes 0-9 in turn (`sample.labels=(3,)`: threes).
Not yet run: its results are still to be measured (experiments/BASELINES.md).
"""

from gen_jax.config_lib import config_beside


def get_config():
  config = config_beside(__file__, 'vae_mnist')
  config.model.num_classes = 10
  return config
