"""The Quickstart VAE's KL weight against its latent size, on digits: 6 points, about 3 minutes
on 2 CPU cores.

  python -m gen_jax.sweep experiments/sweeps/vae_digits_beta.py --root=runs/sweep_vae_beta
"""

from gen_jax.sweep import product

CONFIG = 'configs/vae_digits.py'


def get_sweep():
  return product(**{'loss.beta': [0.5, 1.0, 2.0], 'model.latent_dim': [4, 16]})
