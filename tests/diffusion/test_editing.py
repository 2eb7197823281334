"""Inpainting (RePaint) and SDEdit against ground truth. For correlated Gaussian data
N(MU, COV) the optimal denoiser is D(x, sigma) = MU + COV (COV + sigma^2 I)^-1 (x - MU), and
the pixels left to generate, given the known ones, are Gaussian in closed form (the
Schur complement)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.diffusion import editing, sigma_samplers
from gen_jax.diffusion.samplers import example_noise

_A = np.random.default_rng(0).normal(size=(4, 4))
COV = _A @ _A.T / 4 + 0.1 * np.eye(4)
MU = np.array([0.1, -0.1, 0.3, -0.3])
KNOWN = np.array([True, False, True, False])
GIVEN = np.array([0.5, 0.0, -0.3, 0.0])  # the known pixels' values; the others are unused


def gaussian_denoiser(x, sigma):
  """The optimal D(x, sigma) of N(MU, COV) data, x [B, 4], sigma [B] (all equal)."""
  shrink = jnp.linalg.solve(COV + sigma[0] ** 2 * jnp.eye(4), COV)  # symmetric: its own T
  return MU + (x - MU) @ shrink


def exact_conditional():
  """Mean and covariance of the generated pixels given the known ones."""
  u, k = ~KNOWN, KNOWN
  gain = COV[np.ix_(u, k)] @ np.linalg.inv(COV[np.ix_(k, k)])
  return (MU[u] + gain @ (GIVEN[k] - MU[k]),
          COV[np.ix_(u, u)] - gain @ COV[np.ix_(k, u)])


def gaussian_kl(mean0, cov0, mean1, cov1):
  """KL(N(mean0, cov0) || N(mean1, cov1))."""
  inv1, diff = np.linalg.inv(cov1), mean1 - mean0
  return 0.5 * (np.trace(inv1 @ cov0) + diff @ inv1 @ diff - len(mean0)
                + np.log(np.linalg.det(cov1) / np.linalg.det(cov0)))


def repaint_reference(n, jump, resample):
  """RePaint's `get_schedule_jump` as its paper's code writes it, over timesteps t = n - 1
  (the noise it starts from) down to -1 (the clean image), then as level pairs i = n - 1 - t."""
  jumps = {t: resample - 1 for t in range(0, n - jump, jump)}
  t, ts = n, []
  while t >= 1:
    t -= 1
    ts.append(t)
    if jumps.get(t, 0) > 0:
      jumps[t] -= 1
      for _ in range(jump):
        t += 1
        ts.append(t)
  ts.append(-1)
  levels = [n - 1 - t for t in ts]  # ts[0] = n - 1, the start: level 0
  return list(zip(levels[:-1], levels[1:]))


@pytest.mark.parametrize('n,jump,resample', [(250, 10, 10), (20, 5, 3), (7, 3, 2), (5, 1, 4),
                                             (6, 2, 1)])
def test_repaint_moves_follow_repaints_schedule(n, jump, resample):
  moves = editing.repaint_moves(n, jump, resample)
  reference = repaint_reference(n, jump, resample)
  # The reference goes back up one level at a time; each of its climbs is one move here.
  climbs, i = [], 0
  while i < len(reference):
    a, b = reference[i]
    if b > a:
      climbs.append((a, b))
      i += 1
    else:
      climbs.append((a, a - jump))
      i += jump
  assert [tuple(m) for m in moves] == climbs
  downs = sum(b > a for a, b in reference)
  assert editing.network_evaluations(n, 1.0, jump, resample) == downs
  assert downs == n + (resample - 1) * jump * len(range(0, n - jump, jump))


def test_a_jump_as_long_as_the_walk_is_an_error():
  with pytest.raises(ValueError, match='jump=8 with resample=2 on 8 steps'):
    editing.repaint_moves(8, 8, 2)
  assert len(editing.repaint_moves(8, 8, 1)) == 8  # without resampling the jump is unused


@pytest.mark.parametrize('strength,start', [(1.0, 0), (0.5, 5), (0.31, 7), (0.01, 9)])
def test_sdedit_strength_takes_that_share_of_the_steps(strength, start):
  assert editing.start_level(10, strength) == start


@pytest.mark.parametrize('strength', [0.0, -0.5, 1.5])
def test_a_strength_outside_its_range_is_an_error(strength):
  with pytest.raises(ValueError, match=f'strength={strength}'):
    editing.start_level(10, strength)


def test_inpainting_keeps_the_known_pixels_and_approaches_the_exact_conditional():
  num = 10_000
  sigmas = sigma_samplers.karras_sigmas(40, 0.002, 10.0)
  keys = jax.random.split(jax.random.key(0), num)
  mean, cov = exact_conditional()
  kl, mean_error, cov_error = [], [], []
  with jax.enable_x64(True):
    image = jnp.broadcast_to(jnp.asarray(GIVEN), (num, 4))
    for resample in (1, 4, 16, 64):
      out = np.asarray(jax.jit(lambda image, keys, r=resample: editing.edit_sample(
          gaussian_denoiser, sigmas, image, jnp.asarray(KNOWN, image.dtype), keys, jump=10,
          resample=r))(image, keys))
      assert np.array_equal(out[:, KNOWN], np.asarray(image)[:, KNOWN])
      generated = out[:, ~KNOWN]
      got_mean, got_cov = generated.mean(0), np.cov(generated.T)
      kl.append(gaussian_kl(got_mean, got_cov, mean, cov))
      mean_error.append(np.abs(got_mean - mean).max())
      cov_error.append(np.abs(got_cov - cov).max())
  # Replacement alone (resample 1) leaves the generated pixels near the prior; RePaint's
  # resampling pulls them toward the conditional. RePaint is not exact on a finite grid:
  # the mean converges, the covariance improves, then its variances fall below the exact
  # ones (under-dispersed), so the distance shrinks without reaching the sampling noise.
  assert np.all(np.diff(kl) < 0), kl
  assert kl[-1] < kl[0] / 5, kl
  assert np.all(np.diff(mean_error) < 0) and mean_error[-1] < mean_error[0] / 2, mean_error
  assert np.all(np.array(cov_error[1:]) < cov_error[0]), cov_error


def test_sdedit_of_one_step_is_the_denoiser_of_the_noised_image():
  sigmas = sigma_samplers.karras_sigmas(10, 0.002, 10.0)
  keys = jax.random.split(jax.random.key(1), 8)
  image = jax.random.normal(jax.random.key(2), (8, 4))
  with jax.enable_x64(True):
    image = image.astype(jnp.float64)
    out = editing.edit_sample(gaussian_denoiser, sigmas, image, jnp.zeros(4), keys,
                              strength=0.1)
    noised = image + sigmas[-2] * example_noise(keys, 0, (4,))
    expected = gaussian_denoiser(noised, jnp.full((8,), sigmas[-2]))
  np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


def constant_denoiser(value):
  return lambda x, sigma: jnp.full_like(x, value)


def test_the_ancestral_step_and_the_jump_back_have_the_exact_noise():
  """With D = c everywhere the walk is linear-Gaussian: one step from x ~ N(0, s^2) (the
  start: noise alone where nothing is kept) to t gives N(c (1 - t^2 / s^2), t^2); going
  back up and down again (resample 2, jump 1) multiplies the pull toward c and leaves the
  variance of the last level, both only if every added noise has the right scale."""
  num, c = 200_000, 0.7
  keys = jax.random.split(jax.random.key(3), num)
  image = jnp.full((num, 1), 5.0)  # unused: nothing is kept, the start is noise alone
  s0, s1, s2 = 3.0, 1.5, 0.5
  r1, r2 = s1 ** 2 / s0 ** 2, s2 ** 2 / s1 ** 2
  for sigmas, resample, mean in (([s0, s1], 1, c * (1 - r1)),
                                 ([s0, s1, s2], 1, c * (1 - r2 * r1)),
                                 ([s0, s1, s2], 2, c * (1 - r2 * r1 ** 2))):
    out = np.asarray(jax.jit(lambda image, keys, sigmas=sigmas, r=resample: editing.edit_sample(
        constant_denoiser(c), np.array(sigmas), image, jnp.zeros(1), keys, jump=1,
        resample=r))(image, keys))[:, 0]
    std = sigmas[-1]
    assert abs(out.mean() - mean) < 4 * std / np.sqrt(num), (sigmas, resample, out.mean())
    assert abs(out.var() - std ** 2) < 4 * std ** 2 * np.sqrt(2 / num), (sigmas, out.var())
