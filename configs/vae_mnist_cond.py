"""The conditional `vae_mnist` (Sohn et al. 2015): the label, one-hot, enters the encoder
beside the conv features and the decoder beside the latent; the bounds are of log p(x | y).

  python -m gen_jax.main --config=configs/vae_mnist_cond.py --workdir=/tmp/vae_mnist_cond \
      --config.data.manual_dir=PATH/TO/MNIST_IDX_FILES

Samples decode z ~ N(0, I) with the classes 0-9 in turn (`sample.labels=(3,)`: threes).
Expected: digits of the class asked (docs/vae_mnist_cond_samples.png) and, in classifier
space, 97.4% of 10,000 samples read as their class, FID 22.99, intra-FID 43.9: see
experiments/BASELINES.md. Its runtime was not measured on an idle machine (vae_mnist: 27-29
minutes).
"""

from gen_jax.config_lib import config_beside


def get_config():
  config = config_beside(__file__, 'vae_mnist')
  config.model.num_classes = 10
  return config
