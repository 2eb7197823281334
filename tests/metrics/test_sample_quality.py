"""Sample-quality metrics against closed forms and hand-made point sets."""

import numpy as np
import pytest
from scipy import linalg

from gen_jax.metrics import sample_quality as sq


def random_covariance(rng, d):
  a = rng.normal(size=(d, d))
  return a @ a.T / d + 0.1 * np.eye(d)


def test_frechet_distance_closed_form_for_diagonal_and_commuting_covariances():
  mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
  s1, s2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
  expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))  # = 5 + 4 + 1
  assert sq.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected)
  assert expected == pytest.approx(10.0)
  # Commuting covariances (same eigenvectors): sqrt(S1 S2) = Q sqrt(L1 L2) Q^T.
  q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
  c1, c2 = q @ np.diag(s1) @ q.T, q @ np.diag(s2) @ q.T
  assert sq.frechet_distance(mu1, c1, mu2, c2) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_equals_the_wasserstein_formula_for_general_covariances():
  """W2^2 = ||dmu||^2 + Tr(S1) + Tr(S2) - 2 Tr((S1^1/2 S2 S1^1/2)^1/2) (symmetric form)."""
  rng = np.random.default_rng(1)
  s1, s2 = random_covariance(rng, 6), random_covariance(rng, 6)
  mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
  root = linalg.sqrtm(s1).real
  expected = (np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2)
              - 2 * np.trace(linalg.sqrtm(root @ s2 @ root).real))
  assert sq.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)
  assert sq.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_of_samples_converges_and_survives_singular_covariances():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(20000, 4))
  y = rng.normal(loc=0.5, scale=2.0, size=(20000, 4))
  expected = 4 * 0.25 + 4 * (1 + 4 - 2 * 2)  # per dimension: 0.25 + (1 - 2)^2
  got = sq.frechet_distance(*sq.gaussian_statistics(x), *sq.gaussian_statistics(y))
  assert got == pytest.approx(expected, rel=0.05)
  few = rng.normal(size=(3, 8))  # rank-2 covariances in 8 dimensions
  mu, sigma = sq.gaussian_statistics(few)
  # A pure shift of a singular Gaussian: the distance is exactly ||shift||^2 = 8.
  assert sq.frechet_distance(mu, sigma, mu + 1.0, sigma) == pytest.approx(8.0, abs=1e-6)
  assert sq.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-6)


def test_kid_is_near_zero_for_one_distribution_and_grows_with_a_shift():
  rng = np.random.default_rng(3)
  base = rng.normal(size=(2000, 16))
  same = rng.normal(size=(2000, 16))
  mean, std = sq.kernel_inception_distance(base, same, num_subsets=20, subset_size=500)
  assert abs(mean) < 3 * std + 1e-3
  values = [sq.kernel_inception_distance(base, same + shift, num_subsets=20,
                                         subset_size=500)[0] for shift in (0.25, 0.5, 1.0)]
  assert values[0] > mean + 3 * std and values[0] < values[1] < values[2]


def test_kid_matches_a_brute_force_mmd():
  rng = np.random.default_rng(4)
  x, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 3)) + 0.3
  k = lambda a, b: (a @ b / 3 + 1) ** 3  # noqa: E731
  brute = (sum(k(x[i], x[j]) for i in range(6) for j in range(6) if i != j) / 30
           + sum(k(y[i], y[j]) for i in range(6) for j in range(6) if i != j) / 30
           - 2 * sum(k(x[i], y[j]) for i in range(6) for j in range(6)) / 36)
  mean, std = sq.kernel_inception_distance(x, y, num_subsets=3, subset_size=6)
  assert mean == pytest.approx(brute) and std == pytest.approx(0.0, abs=1e-12)


def test_inception_score_extremes():
  uniform = np.full((100, 10), 0.1)
  assert sq.inception_score(uniform, num_splits=5)[0] == pytest.approx(1.0)
  confident = np.eye(10)[np.arange(100) % 10]  # every class equally often, each certain
  assert sq.inception_score(confident, num_splits=5)[0] == pytest.approx(10.0)


def test_precision_recall_on_hand_made_sets():
  grid = np.stack(np.meshgrid(np.arange(10.0), np.arange(10.0)), -1).reshape(-1, 2)
  assert sq.precision_recall(grid, grid.copy(), k=3) == (1.0, 1.0)
  assert sq.precision_recall(grid, grid + 100.0, k=3) == (0.0, 0.0)
  # Fakes cover only the left half (x <= 4): all inside the real manifold, half the reals
  # outside the fake one (real points with x >= 6 are more than a k-NN radius away).
  left = grid[grid[:, 0] <= 4]
  precision, recall = sq.precision_recall(grid, left, k=3)
  assert precision == 1.0
  assert recall == pytest.approx(np.mean(grid[:, 0] <= 5))


def test_intra_fid_by_hand_in_one_dimension():
  """1-D Fréchet distance: (m1 - m2)^2 + (s1 - s2)^2 (unbiased variances)."""
  features = np.array([[-1.0], [1.0], [0.0], [2.0]])  # class 0: mean 0, var 2; class 1: 1, 2
  reference = np.array([[0.0], [2.0], [1.0], [5.0]])  # class 0: mean 1, var 2; class 1: 3, 8
  labels = np.array([0, 0, 1, 1])
  mean, per_class = sq.intra_fid(features, labels, reference, labels)
  assert per_class == pytest.approx({0: 1.0, 1: 4.0 + 2.0})
  assert mean == pytest.approx(3.5)


def test_intra_fid_sees_classes_swapped_where_fid_does_not():
  rng = np.random.default_rng(0)
  reference = np.concatenate([rng.normal(c, 1.0, (500, 3)) for c in range(3)])
  labels = np.repeat(np.arange(3), 500)
  assert sq.intra_fid(reference, labels, reference, labels)[0] == pytest.approx(0.0, abs=1e-9)
  swapped, _ = sq.intra_fid(reference, (labels + 1) % 3, reference, labels)
  assert swapped > 1.0  # the features are the same set: their FID is 0
  with pytest.raises(ValueError, match='class 0 needs 2 or more samples and reference '
                                       'examples of it, got 1 and 500'):
    sq.intra_fid(reference[:3], np.array([0, 1, 2]), reference, labels)
