"""The networks, written as their papers write them, on the layers of `gen_jax.nn`."""
