"""Class-conditional CIFAR-10 DDPM with classifier-free guidance: Ho et al. (2020)'s model
and training setting (configs/ddpm_cifar10.py) with a class embedding added to the timestep
embedding, trained with 10% label dropout, and guided sampling (Ho & Salimans 2022, whose
p_uncond of 0.1 and 0.2 both worked; small w gave their best FID, larger w their best
Inception score and precision).

  python -m gen_jax.main --config=configs/ddpm_cifar10_cond.py --workdir=runs/ddpm_cifar10_cond \
      --config.data.manual_dir=DIR_WITH_cifar-10-python.tar.gz

Parameters (`--mode=summary`): 35,751,939, the unconditional model's 35,746,307 and the
embedding of 10 classes and the null class (11 x 512). Sampling: `--config.sample.guidance=W`;
the default 0.3 is a starting point for a sweep, not a measured optimum. Not yet run here
(accelerators).
"""

from gen_jax.config_lib import config_beside


def get_config():
  config = config_beside(__file__, 'ddpm_cifar10')
  config.model.num_classes = 10
  config.diffusion.label_dropout = 0.1
  config.sample.guidance = 0.3
  return config
