"""flax.linen modules only."""
