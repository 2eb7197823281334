"""Fréchet distance, intra-FID, KID, Inception Score and improved precision/recall on feature
arrays.

All take features [N, D] (or class probabilities [N, C]) as numpy arrays and compute in
float64. References: Heusel et al. 2017 (FID), Miyato & Koyama 2018 (intra-FID), Bińkowski
et al. 2018 (KID), Salimans et al. 2016 (IS), Kynkäänniemi et al. 2019 (precision/recall).
"""

import numpy as np


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Returns (mean [D], covariance [D, D]) of features [N, D], unbiased (N - 1)."""
  features = np.asarray(features, np.float64)
  return features.mean(axis=0), np.cov(features, rowvar=False)


def _sqrt_psd(sigma: np.ndarray) -> np.ndarray:
  """The symmetric square root of a positive semi-definite matrix (round-off negatives -> 0)."""
  w, v = np.linalg.eigh(sigma)
  return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray) -> float:
  """||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)), the squared Fréchet
  (2-Wasserstein) distance between two Gaussians.

  Tr((sigma1 sigma2)^(1/2)) is computed in the symmetric eigen form
  Tr((sigma1^(1/2) sigma2 sigma1^(1/2))^(1/2)) with `eigh`, which stays exact for the
  singular covariances of few samples or of features with dead units, where scipy's
  `sqrtm` of the non-symmetric product warns and loses accuracy (pytorch-fid adds 1e-6 to
  the diagonals instead).
  """
  mu1, mu2 = np.atleast_1d(np.float64(mu1)), np.atleast_1d(np.float64(mu2))
  sigma1, sigma2 = np.atleast_2d(np.float64(sigma1)), np.atleast_2d(np.float64(sigma2))
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
    raise ValueError(f'statistics of different sizes: {mu1.shape}/{sigma1.shape} vs '
                     f'{mu2.shape}/{sigma2.shape}')
  root = _sqrt_psd(sigma1)
  product = root @ sigma2 @ root
  trace_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((product + product.T) / 2), 0, None)).sum()
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_covmean)


def intra_fid(features: np.ndarray, labels: np.ndarray, reference_features: np.ndarray,
              reference_labels: np.ndarray) -> tuple[float, dict[int, float]]:
  """Returns (mean over classes, {class: distance}) of the Fréchet distance between the
  features [N, D] of the samples of each class in `labels` [N] and those of the reference
  examples [M, D] of that class in `reference_labels` [M]."""
  distances = {}
  for c in np.unique(labels):
    ours, theirs = features[labels == c], reference_features[reference_labels == c]
    if min(len(ours), len(theirs)) < 2:
      raise ValueError(f'intra-FID of class {c} needs 2 or more samples and reference '
                       f'examples of it, got {len(ours)} and {len(theirs)}')
    distances[int(c)] = frechet_distance(*gaussian_statistics(ours),
                                         *gaussian_statistics(theirs))
  return float(np.mean(list(distances.values()))), distances


def kernel_inception_distance(features1: np.ndarray, features2: np.ndarray,
                              num_subsets: int = 100, subset_size: int = 1000,
                              seed: int = 0) -> tuple[float, float]:
  """Returns (mean, std) over subsets of the unbiased MMD^2 with the cubic polynomial
  kernel k(x, y) = (x.y / D + 1)^3; subsets are drawn without replacement."""
  x_all, y_all = np.asarray(features1, np.float64), np.asarray(features2, np.float64)
  n = min(len(x_all), len(y_all), subset_size)
  if n < 2:
    raise ValueError(f'KID needs at least 2 features per set, got {len(x_all)}, {len(y_all)}')
  d = x_all.shape[1]
  rng = np.random.default_rng(seed)
  values = []
  for _ in range(num_subsets):
    x = x_all[rng.choice(len(x_all), n, replace=False)]
    y = y_all[rng.choice(len(y_all), n, replace=False)]
    kxx, kyy, kxy = ((a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
    off_diagonal = n * (n - 1)
    values.append((kxx.sum() - np.trace(kxx)) / off_diagonal
                  + (kyy.sum() - np.trace(kyy)) / off_diagonal - 2 * kxy.mean())
  return float(np.mean(values)), float(np.std(values))


def inception_score(probabilities: np.ndarray, num_splits: int = 10) -> tuple[float, float]:
  """Returns (mean, std) over splits of exp(E_x KL(p(y|x) || p(y))) for class
  probabilities [N, C]."""
  p = np.asarray(probabilities, np.float64)
  log = lambda x: np.log(np.clip(x, 1e-30, None))  # noqa: E731  (0 log 0 = 0)
  scores = []
  for part in np.array_split(p, num_splits):
    kl = np.sum(part * (log(part) - log(part.mean(axis=0, keepdims=True))), axis=1)
    scores.append(np.exp(kl.mean()))
  return float(np.mean(scores)), float(np.std(scores))


def _pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
  return np.sqrt(np.maximum(squared, 0.0))


def _knn_radii(features: np.ndarray, k: int, batch: int) -> np.ndarray:
  """Distance from each point to its k-th nearest other point in the same set: [N]."""
  radii = []
  for start in range(0, len(features), batch):
    d = _pairwise_distances(features[start:start + batch], features)
    radii.append(np.partition(d, k, axis=1)[:, k])  # column 0 is the point itself
  return np.concatenate(radii)


def _coverage(manifold: np.ndarray, radii: np.ndarray, queries: np.ndarray,
              batch: int) -> float:
  """Fraction of `queries` inside at least one ball (manifold point, its radius)."""
  inside = []
  for start in range(0, len(queries), batch):
    d = _pairwise_distances(queries[start:start + batch], manifold)
    inside.append((d <= radii[None, :]).any(axis=1))
  return float(np.concatenate(inside).mean())


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3,
                     batch: int = 1000) -> tuple[float, float]:
  """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN manifolds.

  Precision: the fraction of fake features inside the real manifold (the union of balls
  around each real feature with radius its k-th nearest real neighbour); recall: the
  fraction of real features inside the fake manifold.
  """
  real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
  if min(len(real), len(fake)) <= k:
    raise ValueError(f'precision/recall with k={k} needs more than {k} features per set')
  precision = _coverage(real, _knn_radii(real, k, batch), fake, batch)
  recall = _coverage(fake, _knn_radii(fake, k, batch), real, batch)
  return precision, recall
