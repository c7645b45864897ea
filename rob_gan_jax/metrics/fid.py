"""Frechet Inception Distance and Inception Score of the generator.

FID (Heusel et al., 2017): ||mu_r - mu_g||^2 + tr(S_r + S_g - 2 (S_r S_g)^(1/2)) between Gaussians
fitted to the 2048-d pool features of real and generated images. Inception Score (Salimans et al.,
2016): exp(E_x KL(p(y|x) || p(y))) over 10 splits, mean and std, p(y|x) the softmax over the first
1000 of the 1008 logits, as the original code does. Images are quantised to uint8 u (generated
ones too, as if saved as PNG) and enter as (u - 128) / 128 (TF graph, torch-fidelity), so the
numbers compare with pytorch-fid, torch-fidelity and TF-Inception results; not with the official
Rob-GAN IS, which used torchvision's ImageNet Inception-v3.
"""

import hashlib
import json
import os
import re
from typing import Dict, Optional, Tuple

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from rob_gan_jax import parallel
from rob_gan_jax.metrics import inception
from rob_gan_jax.input_pipeline import splits


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray, tolerance: float = 1e-3) -> float:
  """Frechet distance between N(mu1 (D,), sigma1 (D, D)) and N(mu2, sigma2), in float64.

  tr((S1 S2)^(1/2)) sums the square roots of the eigenvalues of the PSD S1^(1/2) S2 S1^(1/2) (the
  spectrum of S1 S2): no general matrix square root. Negative eigenvalues down to -`tolerance`
  times the largest are rounding, set to 0 (cf. pytorch-fid's imaginary-part check).

  Raises:
    ValueError: shapes differ, or an eigenvalue is clearly negative (a covariance is not PSD).
  """
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
    raise ValueError(f'shapes differ: {mu1.shape}, {mu2.shape}, {sigma1.shape}, {sigma2.shape}')
  def check(eig, what):
    if eig.min() < -tolerance * max(eig.max(), 1e-12):
      raise ValueError(f'{what} has a negative eigenvalue {eig.min():.3g} (largest '
                       f'{eig.max():.3g}): a matrix square root would be complex')

  w, v = np.linalg.eigh((sigma1 + sigma1.T) / 2)
  check(w, 'sigma1')
  sqrt1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
  eig = np.linalg.eigvalsh(sqrt1 @ sigma2 @ sqrt1)
  check(eig, 'the product of the covariances')
  trace_sqrt = np.sum(np.sqrt(np.clip(eig, 0, None)))
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


def inception_score(logits: np.ndarray, num_splits: int = 10) -> Tuple[float, float]:
  """(mean, std) over splits of the IS of (N, >= 1000) logits; ValueError if N < `num_splits`."""
  logits = np.asarray(logits, np.float64)[:, :1000]
  if len(logits) < num_splits:
    raise ValueError(f'{len(logits)} examples cannot make {num_splits} splits')
  log_p = logits - logits.max(1, keepdims=True)
  log_p = log_p - np.log(np.sum(np.exp(log_p), 1, keepdims=True))
  scores = []
  for part in np.array_split(log_p, num_splits):
    log_marginal = np.log(np.mean(np.exp(part), 0))
    scores.append(np.exp(np.mean(np.sum(np.exp(part) * (part - log_marginal), 1))))
  return float(np.mean(scores)), float(np.std(scores))


def statistics(features: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """(mu (D,), sigma (D, D)) of (N, D) features, float64, unbiased covariance (as pytorch-fid)."""
  features = np.asarray(features, np.float64)
  return features.mean(0), np.cov(features, rowvar=False)


def network_input(images: jax.Array) -> jax.Array:
  """(N, H, W, C) uint8 images, or float images in [-1, 1] quantised to uint8, -> (u - 128) / 128
  float32 with 3 channels: grayscale (C = 1) is repeated, as torchvision's `Grayscale(3)`."""
  if images.dtype != jnp.uint8:
    images = jnp.round((jnp.clip(images, -1, 1) + 1) * 127.5).astype(jnp.uint8)
  images = jnp.broadcast_to(images, images.shape[:-1] + (3,))
  return (images.astype(jnp.float32) - 128.0) / 128.0


@parallel.jit
def _features(variables, images):
  pool, logits = inception.InceptionV3().apply(variables, network_input(images))
  return jnp.concatenate([pool, logits], -1)


def extract(variables, images: np.ndarray, *, batch_size: int = 200,
            mesh: Optional[jax.sharding.Mesh] = None) -> Tuple[np.ndarray, np.ndarray]:
  """Pool (N, 2048) and logits (N, 1008), float32, of (N, H, W, C) images (uint8, or float in
  [-1, 1]), in jitted batches, each split over `mesh` if given."""
  if mesh is not None:
    variables = parallel.replicate(variables, mesh)
  out = parallel.map_batches(lambda x, y, start: _features(variables, x), np.asarray(images),
                             np.zeros(len(images), np.int32), batch_size, mesh)
  return out[:, :2048], out[:, 2048:]


def real_statistics(config, split: str, variables, weights_path: str, cache_dir: str, *,
                    batch_size: int, mesh) -> Tuple[np.ndarray, np.ndarray]:
  """(mu, sigma) of a split's pool features, cached in `cache_dir` (atomically, by process 0),
  keyed by data set, split, image view (`dataset.classes`, `dataset.augmentation`,
  `model.image_size`, `model.image_channels`) and weights. Chunks (`splits.split_chunks`) accumulate sum and outer
  products in float64, so an ImageNet-size split needs one chunk's host memory."""
  d = config.dataset
  source = d.image_folder or d.name
  key = re.sub(r'[^A-Za-z0-9_.-]+', '_', os.path.abspath(source) if d.image_folder
               else source).strip('_')
  m = config.model
  view = hashlib.sha256(json.dumps([d.classes, d.augmentation, m.image_size,
                                    m.image_channels]).encode())
  path = os.path.join(cache_dir, f'{key}-{split}-{view.hexdigest()[:8]}-'
                      f'{inception.sha256(weights_path)[:12]}.npz')
  if os.path.exists(path):
    with np.load(path) as data:
      return data['mu'], data['sigma']
  logging.info('Computing Inception statistics of %s/%s into %s', source, split, path)
  n, total, outer = 0, 0.0, 0.0
  for images in splits.split_chunks(config, split):
    pool = extract(variables, images, batch_size=batch_size, mesh=mesh)[0].astype(np.float64)
    n, total, outer = n + len(pool), total + pool.sum(0), outer + pool.T @ pool
  mu = total / n
  sigma = (outer - n * np.outer(mu, mu)) / (n - 1)
  if parallel.is_main_process():
    os.makedirs(cache_dir, exist_ok=True)
    np.savez(path + '.tmp.npz', mu=mu, sigma=sigma)
    os.replace(path + '.tmp.npz', path)
  return mu, sigma


def generator_metrics(samples: np.ndarray, config, workdir: str, *,
                      mesh: Optional[jax.sharding.Mesh] = None) -> Dict[str, float]:
  """{'inception_score', 'inception_score_std', 'fid'} of G's (N, H, W, C) uint8 `samples`
  against `evals.inception.split` (statistics cached in `<workdir>/../fid_stats/`); raises
  FileNotFoundError / ValueError for a missing or wrong `evals.inception.weights` .npz."""
  s = config.evals.inception
  variables = inception.load_variables(s.weights)
  cache_dir = os.path.join(os.path.dirname(os.path.abspath(workdir)), 'fid_stats')
  mu_real, sigma_real = real_statistics(config, s.split, variables, s.weights, cache_dir,
                                        batch_size=s.batch_size, mesh=mesh)
  pool, logits = extract(variables, samples, batch_size=s.batch_size, mesh=mesh)
  score, score_std = inception_score(logits)
  return {'inception_score': score, 'inception_score_std': score_std,
          'fid': frechet_distance(*statistics(pool), mu_real, sigma_real)}


SKIPPED = ('Inception Score and FID are skipped: evals.inception.weights is not set. Convert '
           'the standard weights with python -m rob_gan_jax.metrics.convert_inception (README) '
           'and pass --config.evals.inception.weights=PATH.npz.')
