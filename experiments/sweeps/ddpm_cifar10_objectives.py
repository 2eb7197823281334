"""Paper-scale: Ho et al.'s CIFAR-10 DDPM with each prediction target and schedule, and
Nichol & Dhariwal's learned variance; 7 runs of 800k steps, for a cluster.

  python -m gen_jax.sweep experiments/sweeps/ddpm_cifar10_objectives.py \
      --root=gs://BUCKET/sweeps/ddpm_objectives --print_commands
"""

from gen_jax.sweep import product

CONFIG = 'configs/ddpm_cifar10.py'


def get_sweep():
  fixed = product(**{'diffusion.prediction': ['eps', 'x0', 'v'],
                     'diffusion.schedule': ['linear', 'cosine']})
  learned = [{'diffusion.schedule': 'cosine', 'diffusion.learn_variance': True,
              'sample.variance': 'learned'}]
  return fixed + learned
