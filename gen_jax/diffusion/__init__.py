"""Diffusion maths in pure jnp (no Flax): schedules, forward process, posteriors, samplers."""
