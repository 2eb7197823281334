"""GAN, VAE and DDPM image generation on one functional JAX core.

`gen_jax.load(WORKDIR)` reloads a trained run (gen_jax/loaded.py); the CLI is gen_jax.main.
"""


def load(workdir: str, step: int | None = None, overrides: dict | None = None):
  """A trained run from its workdir: see gen_jax.loaded.load."""
  from gen_jax import loaded  # pylint: disable=g-import-not-at-top (jax starts only here)
  return loaded.load(workdir, step, overrides)
