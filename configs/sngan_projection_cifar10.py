"""Class-conditional SN-GAN on CIFAR-10 with the projection discriminator (Miyato & Koyama
2018): the setting of their reference code's `configs/sn_cifar10.yml`
(pfnet-research/sngan_projection): the 32 px ResNets with conditional BatchNorm in G and a
spectrally normalized class embedding in D, hinge loss, Adam 2e-4 with beta = (0, 0.9),
5 discriminator updates of 64 real images per generator update, 50k generator updates.

  python -m gen_jax.main --config=configs/sngan_projection_cifar10.py \
      --workdir=runs/sngan_projection_cifar10 \
      --config.data.manual_dir=DIR_WITH_cifar-10-python.tar.gz

Parameters (`--mode=summary`): G 4,304,387, D 1,055,104, the reference's counted from its
code (tests/families/test_gan_conditional.py). Differences: the reference decays the
learning rate linearly to 0 and updates G on 128 fakes; this uses cosine decay and 64.
Not yet run here (accelerators).
"""

from gen_jax.config_lib import config_beside


def get_config():
  config = config_beside(__file__, 'sngan_resnet_cifar10')
  config.model.num_classes = 10
  return config
