"""SN-GAN on CIFAR-10 with the ResNet networks (Miyato et al. 2018, the 32 px ResNet of their
reference code): hinge loss, spectral norm in every discriminator layer.

  python -m gen_jax.main --config=configs/sngan_resnet_cifar10.py \
      --workdir=runs/sngan_resnet_cifar10 --config.data.manual_dir=DIR_WITH_cifar-10-python.tar.gz

Data: the CIFAR-10 python tarball from https://www.cs.toronto.edu/~kriz/cifar.html,
prepared once into data.data_dir (README, "Datasets"); or a tfds copy prepared
in array_record format there, without manual_dir.

G: three up-blocks of width 256 (4,276,739 parameters); D: four blocks of width 128, the
first two downsampling (1,053,824 parameters). Adam 2e-4 with beta = (0, 0.9), 5
discriminator updates per generator update, each on its own 64 real images
(data.batch_size = 5 x 64), 50k generator updates. The paper decays the learning rate
linearly to 0; this uses cosine decay (gen_jax has no linear one). Not yet run here (no
GPU). Published: Miyato et al. (2018), table 2, FID 21.7 and Inception
score 8.22 for this model; compare only under the same FID protocol.
"""

from gen_jax.config_lib import evaluator, family_config


def get_config():
  config = family_config('gan')
  config.data.update(name='cifar10', image_size=32, channels=3, batch_size=320)
  config.model.update(arch='resnet', z_dim=128, g_channels=(256, 256, 256),
                      d_channels=(128, 128, 128, 128), d_norm='none', spectral_norm=True)
  config.gan.update(loss='hinge', n_critic=5)
  config.optim.update(schedule='cosine', b1=0.0, b2=0.9, ema_decay=0.9999)
  config.train.num_steps = 50000
  config.evals.fid = evaluator('sample_quality', metrics=('fid', 'inception_score'),
                               features='inception_v3_fid')
  return config
