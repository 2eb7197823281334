"""Ho et al. (2020)'s CIFAR-10 DDPM: the paper's model and training setting.

  python -m gen_jax.main --config=configs/ddpm_cifar10.py --workdir=runs/ddpm_cifar10 \
      --config.data.manual_dir=DIR_WITH_cifar-10-python.tar.gz

Data: the CIFAR-10 python tarball from https://www.cs.toronto.edu/~kriz/cifar.html,
prepared once into data.data_dir (README, "Datasets"); or a tfds copy prepared
in array_record format there, without manual_dir.

Model: UNet ch 128, ch_mult (1, 2, 2, 2), 2 res blocks, attention at 16x16, dropout 0.1:
35,746,307 parameters (the paper's 35.7M; `--mode=summary` prints it). Training: Adam 2e-4,
5,000 warm-up steps, batch 128, grad-norm clip 1, EMA 0.9999, random flips, 800k steps,
linear betas 1e-4..0.02 over T = 1000, eps-prediction with L_simple.
Expected (paper): FID 3.17 (50k samples, Inception), <= 3.75 bits/dim on the test set.
Not yet run here: 800k steps need accelerators (the paper: 21 steps/s on a TPU v3-8,
10.6 hours in all).
"""

from gen_jax.config_lib import evaluator, family_config


def get_config():
  config = family_config('ddpm')
  config.data.update(name='cifar10', image_size=32, channels=3, random_flip=True)
  config.train.num_steps = 800_000
  config.train.log_every = 1000
  config.checkpoint.every_steps = 10_000
  config.sample.every_steps = 50_000
  config.eval.batch_size = 128
  config.evals.likelihood.num_examples = 10000
  config.evals.fid = evaluator('sample_quality', metrics=('fid', 'inception_score'),
                               num_samples=50000, features='inception_v3_fid')
  return config
