"""Generator metrics in reference features (`metrics.sample_quality`): against independent
formulas, and moving the way they must on known inputs (two samples of one distribution, noise,
one repeated point, one class only)."""

import numpy as np
import pytest
import scipy.linalg

from rob_gan_jax.metrics import sample_quality


def _clusters(n, *, seed, classes=range(10), dim=16):
  """n features of a 10-cluster mixture in `dim` dimensions (cluster c = class c) and labels."""
  rng = np.random.default_rng(seed)
  centres = np.random.default_rng(123).normal(0, 3, (10, dim))
  labels = rng.choice(list(classes), n)
  return centres[labels] + rng.normal(size=(n, dim)), labels


def test_frechet_distance_equals_the_formula_with_scipy_sqrtm():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(300, 8)), rng.normal(1, 2, size=(400, 8)) @ rng.normal(size=(8, 8))
  mu_a, mu_b = a.mean(0), b.mean(0)
  s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  expected = (np.sum((mu_a - mu_b) ** 2) + np.trace(s_a) + np.trace(s_b)
              - 2 * np.trace(scipy.linalg.sqrtm(s_a @ s_b).real))
  assert sample_quality.frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)


def test_kid_equals_the_direct_quadratic_formula_on_one_subset():
  rng = np.random.default_rng(1)
  x, y = rng.normal(size=(30, 5)), rng.normal(0.5, 1, size=(30, 5))
  k = lambda a, b: (a @ b / 5 + 1) ** 3
  m = len(x)
  within = sum(k(x[i], x[j]) + k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
  across = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
  expected = within / (m * (m - 1)) - 2 * across / m ** 2
  # A subset of all rows drawn without replacement is a permutation: the same estimate.
  kid, std = sample_quality.kernel_distance(x, y, num_subsets=3, subset_size=30)
  assert kid == pytest.approx(expected, rel=1e-9)
  assert std == pytest.approx(0, abs=1e-9)


def test_two_samples_of_one_distribution_score_as_the_same():
  real, _ = _clusters(1000, seed=0)
  fake, _ = _clusters(1000, seed=1)
  m = sample_quality.metrics(real, fake, kid_subsets=20, kid_subset_size=500)
  assert m['fd_ref'] < 1  # Against 140-220 for noise, one point or one class (below).
  assert abs(m['kid_ref']) < 2 * m['kid_ref_std']
  # The k-NN estimate is below 1 even for one distribution (Kynkaanniemi et al.).
  assert 0.7 < m['precision_ref'] < 0.95 and 0.7 < m['recall_ref'] < 0.95


def test_sixteen_dimensional_gaussians_give_the_published_level_of_precision_and_recall():
  rng = np.random.default_rng(2)
  precision, recall = sample_quality.precision_recall(rng.normal(size=(1000, 16)),
                                                      rng.normal(size=(1000, 16)), k=3)
  assert precision == pytest.approx(0.8, abs=0.08) and recall == pytest.approx(0.8, abs=0.08)


def test_noise_one_repeated_point_and_one_class_move_each_metric_the_right_way():
  real, _ = _clusters(1000, seed=0)
  same = sample_quality.metrics(real, _clusters(1000, seed=1)[0], kid_subsets=10,
                                kid_subset_size=500)
  noise = sample_quality.metrics(real, np.random.default_rng(3).uniform(-8, 8, (1000, 16)),
                                 kid_subsets=10, kid_subset_size=500)
  repeated = sample_quality.metrics(real, np.repeat(real[:1], 1000, 0) + 1e-6, kid_subsets=10,
                                    kid_subset_size=500)
  one_class = sample_quality.metrics(real, _clusters(1000, seed=1, classes=[4])[0],
                                     kid_subsets=10, kid_subset_size=500)
  for bad in (noise, repeated, one_class):
    assert bad['fd_ref'] > 100 * same['fd_ref']
    assert bad['kid_ref'] > same['kid_ref'] + 5 * bad['kid_ref_std']
  # Noise lies off the real manifold (its wide balls still cover the real points: recall 1)...
  assert noise['precision_ref'] < 0.05
  assert repeated['precision_ref'] == 1.0  # ...a real point repeated lies on it,
  assert one_class['precision_ref'] > 0.7  # and so do the points of one real class.
  assert repeated['recall_ref'] < 0.01  # One point covers almost nothing,
  assert one_class['recall_ref'] < 0.2  # one class a tenth of the real points.


def test_gan_test_is_accuracy_overall_and_per_class_with_nan_for_absent_classes():
  logits = np.eye(4)[[0, 1, 2, 2, 0]]
  accuracy, per_class = sample_quality.gan_test(logits, np.array([0, 1, 1, 2, 0]), 4)
  assert accuracy == pytest.approx(0.8)
  np.testing.assert_allclose(per_class[:3], [1.0, 0.5, 1.0])
  assert np.isnan(per_class[3])


def test_too_few_points_are_refused_with_the_counts():
  with pytest.raises(ValueError, match='more than 3 points'):
    sample_quality.precision_recall(np.zeros((3, 2)), np.zeros((10, 2)))
  with pytest.raises(ValueError, match='at least 2'):
    sample_quality.kernel_distance(np.zeros((1, 2)), np.zeros((10, 2)))
