"""The class-conditional `dcgan_mnist`: conditional BatchNorm in the generator, a projection
discriminator with spectral normalization and the hinge loss (Miyato & Koyama 2018).

  python -m gen_jax.main --config=configs/dcgan_mnist_cond.py --workdir=/tmp/dcgan_mnist_cond \
      --config.data.manual_dir=PATH/TO/MNIST_IDX_FILES

7,000 steps instead of 12,000, to train within 20 minutes on 2 CPU cores (397 against 456
images/s for the unconditional step, `benchmarks/train_throughput.py`). Each fake is
generated for a class drawn uniformly from its example's key; samples and
grids ask for the classes 0-9 in turn, one row per class (`sample.labels` picks others).
Runtime: 19 min 59 s on 2 CPU cores. Expected: digits of the class asked
(docs/dcgan_mnist_cond_samples.png) and, in classifier space, 98.4% of 10,000 EMA samples
read as their class, FID 10.55, intra-FID 33.9: see experiments/BASELINES.md.
"""

from gen_jax.config_lib import config_beside


def get_config():
  config = config_beside(__file__, 'dcgan_mnist')
  config.model.update(num_classes=10, d_norm='none', spectral_norm=True)
  config.gan.loss = 'hinge'
  config.train.num_steps = 7000
  return config
