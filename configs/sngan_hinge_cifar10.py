"""SN-GAN on CIFAR-10 (Miyato et al. 2018): hinge loss, spectral norm in D, 32 px DCGAN-style
("standard CNN") networks.

  python -m gen_jax.main --config=configs/sngan_hinge_cifar10.py \
      --workdir=runs/sngan_hinge_cifar10 --config.data.manual_dir=DIR_WITH_cifar-10-python.tar.gz

Data: the CIFAR-10 python tarball from https://www.cs.toronto.edu/~kriz/cifar.html,
prepared once into data.data_dir (README, "Datasets"); or a tfds copy prepared
in array_record format there, without manual_dir.

The paper's setting (A) for the standard CNN: Adam 1e-4, beta = (0.5, 0.9), 5 discriminator
updates per generator update, each on its own 64 real images (data.batch_size = 5 x 64);
no BatchNorm in D. Not yet run here (no GPU). Published: Miyato et
al. (2018), table 2, for this network (their ResNet reaches FID 21.7); compare only under the
same FID protocol.
"""

from gen_jax.config_lib import evaluator, family_config


def get_config():
  config = family_config('gan')
  config.data.update(name='cifar10', image_size=32, channels=3, batch_size=320)
  config.model.update(z_dim=128, d_norm='none', spectral_norm=True)
  config.gan.update(loss='hinge', n_critic=5)
  config.optim.update(learning_rate=1e-4, b2=0.9)
  config.optim_d.learning_rate = 1e-4
  config.train.num_steps = 100000
  config.evals.fid = evaluator('sample_quality', metrics=('fid', 'inception_score'),
                               features='inception_v3_fid')
  return config
