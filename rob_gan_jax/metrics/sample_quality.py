"""Generator metrics in a reference classifier's features (`metrics.reference`), which need no
downloaded weights: Frechet distance, KID, improved precision and recall, GAN-test and CAS.

Features are (N, D) arrays, any float dtype, computed in float64 here. Names carry `_ref` where
the figure depends on the feature network (`fd_ref`, `kid_ref`, `precision_ref`, `recall_ref`):
they compare only between runs measured with one reference classifier, and are not FID or the
Inception KID.
"""

from typing import Dict, Tuple

import numpy as np

from rob_gan_jax.metrics import fid


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
  """Frechet distance between Gaussians fitted to (N, D) and (M, D) features (`fid`'s formula)."""
  return fid.frechet_distance(*fid.statistics(real), *fid.statistics(fake))


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  return (x @ y.T / x.shape[1] + 1) ** 3


def kernel_distance(real: np.ndarray, fake: np.ndarray, *, num_subsets: int = 100,
                    subset_size: int = 1000, seed: int = 0) -> Tuple[float, float]:
  """KID (Binkowski et al., ICLR 2018, eq. 3): the unbiased MMD^2 estimate with the kernel
  k(x, y) = (x.y / D + 1)^3, averaged over `num_subsets` random subsets of min(`subset_size`, N,
  M) rows of each set, drawn without replacement within a subset (as the authors' code and
  torch-fidelity do).

  Returns:
    (mean, standard deviation over subsets): the latter is the standard error of one
    subset-sized estimate, so a KID within it of 0 is no evidence of a difference.

  Raises:
    ValueError: fewer than 2 rows in either set.
  """
  real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
  m = min(subset_size, len(real), len(fake))
  if m < 2:
    raise ValueError(f'KID needs at least 2 features per set, got {len(real)} and {len(fake)}')
  rng = np.random.default_rng(seed)
  estimates = []
  for _ in range(num_subsets):
    x = real[rng.choice(len(real), m, replace=False)]
    y = fake[rng.choice(len(fake), m, replace=False)]
    k_xx, k_yy, k_xy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    estimates.append(within - 2 * k_xy.mean())
  return float(np.mean(estimates)), float(np.std(estimates))


def _squared_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  return np.maximum((x * x).sum(1)[:, None] + (y * y).sum(1)[None] - 2 * x @ y.T, 0)


def _knn_radii(x: np.ndarray, k: int, chunk: int) -> np.ndarray:
  """Squared distance of each row of `x` to its k-th nearest other row."""
  radii = [np.partition(_squared_distances(x[i:i + chunk], x), k, axis=1)[:, k]
           for i in range(0, len(x), chunk)]  # Column 0 after partition is the row itself.
  return np.concatenate(radii)


def _coverage(points: np.ndarray, centres: np.ndarray, radii: np.ndarray, chunk: int) -> float:
  """Share of `points` inside at least one ball (centre, squared radius)."""
  inside = [np.any(_squared_distances(points[i:i + chunk], centres) <= radii[None], axis=1)
            for i in range(0, len(points), chunk)]
  return float(np.mean(np.concatenate(inside)))


def precision_recall(real: np.ndarray, fake: np.ndarray, *, k: int = 3,
                     chunk: int = 1000) -> Tuple[float, float]:
  """Improved precision and recall (Kynkaanniemi et al., NeurIPS 2019): each set's manifold is the
  union of balls around its points reaching their k-th nearest neighbour; precision is the share
  of fake points inside the real manifold, recall the share of real points inside the fake one.
  Even two samples of one distribution score below 1 (about 0.8 for 1,000 points of a 16-D
  Gaussian, k = 3). A collapsing G keeps precision and loses recall.

  Raises:
    ValueError: a set has no more than k points.
  """
  real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
  if min(len(real), len(fake)) <= k:
    raise ValueError(f'precision and recall with k={k} need more than {k} points per set, got '
                     f'{len(real)} and {len(fake)}')
  precision = _coverage(fake, real, _knn_radii(real, k, chunk), chunk)
  recall = _coverage(real, fake, _knn_radii(fake, k, chunk), chunk)
  return precision, recall


def gan_test(logits: np.ndarray, labels: np.ndarray, num_classes: int
             ) -> Tuple[float, np.ndarray]:
  """GAN-test (Shmelkov et al., ECCV 2018): the reference classifier's accuracy on G's samples,
  from its (N, C) logits and the (N,) labels G was asked for; overall and per class ((C,), NaN for
  a class with no sample)."""
  correct = np.asarray(logits).argmax(1) == np.asarray(labels)
  per_class = np.array([correct[labels == c].mean() if np.any(labels == c) else np.nan
                        for c in range(num_classes)])
  return float(correct.mean()), per_class


def metrics(real_features: np.ndarray, fake_features: np.ndarray, *, k: int = 3,
            kid_subset_size: int = 1000, kid_subsets: int = 100) -> Dict[str, float]:
  """{'fd_ref', 'kid_ref', 'kid_ref_std', 'precision_ref', 'recall_ref'} of fake against real
  features."""
  kid, kid_std = kernel_distance(real_features, fake_features, num_subsets=kid_subsets,
                                 subset_size=kid_subset_size)
  precision, recall = precision_recall(real_features, fake_features, k=k)
  return {'fd_ref': frechet_distance(real_features, fake_features), 'kid_ref': kid,
          'kid_ref_std': kid_std, 'precision_ref': precision, 'recall_ref': recall}
