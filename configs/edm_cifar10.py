"""EDM on CIFAR-10 (Karras et al. 2022, config F of Table 2, unconditional): the DDPM++
network with EDM's preconditioning, loss and Heun sampler, and its training setting
(NVlabs/edm `train.py --arch=ddpmpp --precond=edm`).

  python -m gen_jax.main --config=configs/edm_cifar10.py --workdir=runs/edm_cifar10 \
      --config.data.manual_dir=DIR_WITH_cifar-10-python.tar.gz

Model: DDPM++ (`models/song_unet.py`), ch 128, ch_mult (2, 2, 2), 4 blocks per level,
attention at 16x16, dropout 0.13: 55,732,739 parameters (`--mode=summary`), EDM's 55.73M
less the 1,152 of the augmentation labels that gen_jax's pipeline does not give.
Class-conditional (EDM's FID 1.79): `--config.model.num_classes=10
--config.diffusion.label_dropout=0` (55,734,147).
Training: 200M images at batch 512 (390,625 steps), Adam 1e-3 (betas 0.9, 0.999, eps 1e-8)
after a linear ramp over 10M images, EMA half-life 0.5M images (decay 0.5^(512 / 500,000)
per step; EDM also ramps the half-life up early in training), sigma_data 0.5,
ln sigma ~ N(-1.2, 1.2^2). EDM trains with its non-leaking augmentation (probability 0.12,
the network conditioned on the augmentation); gen_jax has random flips only.
Sampling: Heun, 18 Karras levels (rho 7) from 80 to 0.002: 35 network evaluations.
Expected (paper): FID 1.97 on 50k samples (Inception, train statistics). Not yet run here:
it needs accelerators (EDM: about 2 days on 8 V100s).
"""

from gen_jax.config_lib import evaluator, family_config


def get_config():
  config = family_config('ddpm')
  config.data.update(name='cifar10', image_size=32, channels=3, random_flip=True,
                     batch_size=512)
  config.model.update(arch='ddpmpp', ch=128, ch_mult=(2, 2, 2), num_res_blocks=4,
                      attn_resolutions=(16,), dropout=0.13)
  config.diffusion.update(formulation='edm', sigma_data=0.5, p_mean=-1.2, p_std=1.2)
  config.sample.update(sampler='heun', spacing='karras', steps=18, rho=7.0, sigma_min=0.002,
                       sigma_max=80.0)
  config.optim.update(learning_rate=1e-3, warmup_steps=19_531, grad_clip=0.0,
                      ema_decay=0.5 ** (512 / 500_000))
  config.train.num_steps = 390_625
  config.train.log_every = 1000
  config.checkpoint.every_steps = 10_000
  config.sample.every_steps = 50_000
  config.eval.batch_size = 128
  config.evals.likelihood.num_examples = 10000  # EDM has no bound: this is its loss on test
  config.evals.fid = evaluator('sample_quality', metrics=('fid', 'inception_score'),
                               num_samples=50000, features='inception_v3_fid')
  return config
