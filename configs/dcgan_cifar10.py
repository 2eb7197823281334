"""DCGAN on CIFAR-10: non-saturating loss, BatchNorm in G and D, Adam 2e-4 / beta1 0.5, the
32 px DCGAN networks of configs/wgan_gp_cifar10.py.

  python -m gen_jax.main --config=configs/dcgan_cifar10.py --workdir=runs/dcgan_cifar10 \
      --config.data.manual_dir=DIR_WITH_cifar-10-python.tar.gz

Data: the CIFAR-10 python tarball from https://www.cs.toronto.edu/~kriz/cifar.html,
prepared once into data.data_dir (README, "Datasets"); or a tfds copy prepared
in array_record format there, without manual_dir.

The row beside StudioGAN's CIFAR-10 DCGAN (FID 49.0, 10k samples against test). StudioGAN's
"deep conv" networks differ from these (3x3 convs between the strided ones), so compare the
protocol, not the architecture. Not yet run here (no GPU).
"""

from gen_jax.config_lib import evaluator, family_config


def get_config():
  config = family_config('gan')
  config.data.update(name='cifar10', image_size=32, channels=3, batch_size=64)
  config.train.num_steps = 100000
  config.evals.fid = evaluator('sample_quality', metrics=('fid', 'inception_score'),
                               features='inception_v3_fid')
  return config
