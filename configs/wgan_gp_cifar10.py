"""WGAN-GP on CIFAR-10 (Gulrajani et al. 2017) with the DCGAN-style 32 px networks.

  python -m gen_jax.main --config=configs/wgan_gp_cifar10.py --workdir=runs/wgan_gp_cifar10 \
      --config.data.manual_dir=DIR_WITH_cifar-10-python.tar.gz

Data: the CIFAR-10 python tarball from https://www.cs.toronto.edu/~kriz/cifar.html,
prepared once into data.data_dir (README, "Datasets"); or a tfds copy prepared
in array_record format there, without manual_dir.

Wasserstein loss, gradient penalty lambda = 10 on interpolates, 5 critic updates per
generator update, each on its own 64 real images (so data.batch_size = 5 x 64), Adam 1e-4
with beta = (0.5, 0.9), 100k generator steps with the learning rate decayed linearly in the
paper (cosine here). The critic uses layer norm, not BatchNorm (the penalty needs each
logit to depend on its own image). Not yet run here (no GPU).
Published: StudioGAN's CIFAR-10 WGAN-GP, FID 25.9 (10k samples against test).

Gulrajani et al.'s ResNet instead: add --config.model.arch=resnet
--config.model.g_channels="(128,128,128)" --config.model.d_channels="(128,128,128,128)"
--config.model.d_norm=none. That G is theirs exactly (1,204,483 parameters, counted from
igul222/improved_wgan_training gan_cifar_resnet.py); the D lacks only the bias of their last
linear layer (1,053,824 against 1,053,825), as in SN-GAN's reference.
"""

from gen_jax.config_lib import evaluator, family_config


def get_config():
  config = family_config('gan')
  config.data.update(name='cifar10', image_size=32, channels=3, batch_size=320)
  config.model.update(z_dim=128, d_norm='layer')
  config.gan.update(loss='wasserstein', n_critic=5, gp_weight=10.0)
  config.optim.update(learning_rate=1e-4, schedule='cosine', b2=0.9)
  config.optim_d.learning_rate = 1e-4
  config.train.num_steps = 100000
  config.evals.fid = evaluator('sample_quality', metrics=('fid', 'inception_score'),
                               features='inception_v3_fid')
  return config
