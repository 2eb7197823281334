"""EDM (Karras et al. 2022) on MNIST for 2 CPU cores: `ddpm_mnist`'s small UNet as EDM's
preconditioned denoiser, trained at log-normal noise levels with EDM's loss weight, and
sampled with EDM's Heun sampler over 18 Karras levels (35 network evaluations). Its
`likelihood` evaluator reports EDM's loss on test images (there is no bound for EDM).

  python -m gen_jax.main --config=configs/edm_mnist.py --workdir=runs/edm_mnist \
      --config.data.manual_dir=PATH/TO/MNIST_IDX_FILES

7,000 steps of batch 64, Adam 1e-3 with a cosine decay, EMA 0.999: 39 minutes on 2 cores
of an AMD EPYC Zen 5, classifier-space FID 44.2 on 10,000 samples (38.4 with EDM's
stochastic step), still falling with training. The curve, and the FID against network
evaluations per sample for Euler, DPM-Solver++ and Heun, are in experiments/BASELINES.md
("The CPU diffusion showcase"); the grid is docs/edm_mnist_samples.png. Checkpoints every
1,000 steps, all kept, for that curve.
"""

from gen_jax.config_lib import config_beside


def get_config():
  config = config_beside(__file__, 'ddpm_mnist')
  config.diffusion.update(formulation='edm', sigma_data=0.5, p_mean=-1.2, p_std=1.2)
  config.sample.update(sampler='heun', spacing='karras', steps=18, rho=7.0, sigma_min=0.002,
                       sigma_max=80.0)
  config.train.num_steps = 7000
  config.checkpoint.every_steps = config.sample.every_steps = 1000
  config.checkpoint.max_to_keep = 7
  return config
