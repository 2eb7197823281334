"""The train state's EMA: the closed form of repeated updates, and no pass when it is off."""

import jax.numpy as jnp
import numpy as np

from gen_jax import state as state_lib


def test_ema_of_a_constant_sequence_is_the_closed_form():
  ema, params = {'w': jnp.zeros(3)}, {'w': jnp.array([1.0, -2.0, 4.0])}
  for _ in range(10):
    ema = state_lib.ema_update(ema, params, 0.9)
  # e_n = (1 - 0.9^n) * p when e_0 = 0 and p is held fixed.
  np.testing.assert_allclose(ema['w'], (1 - 0.9 ** 10) * params['w'], rtol=1e-6)


def test_ema_off_returns_the_params_themselves():
  params = {'w': jnp.arange(3.0)}
  assert state_lib.ema_update({'w': jnp.zeros(3)}, params, 0.0) is params
