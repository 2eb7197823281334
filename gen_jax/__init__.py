"""gen_jax: GAN, VAE and DDPM image generation on one functional JAX core."""
