"""Tests of rob_gan_jax.metrics: the Inception network against torch-fidelity's, FID, IS.

The reference comparison needs torch and torch-fidelity (test-only; .ci/run installs them and sets
ROBGAN_REQUIRE_TORCH=1 so that the test fails rather than skips there).
"""

import functools
import math
import os
import sys
import types

import numpy as np
import pytest
import scipy.linalg

from rob_gan_jax import evaluate
from rob_gan_jax import workdir as workdir_lib
from rob_gan_jax import task as task_lib
from rob_gan_jax.metrics import convert_inception
from rob_gan_jax.metrics import fid
from rob_gan_jax.metrics import inception
from rob_gan_jax.input_pipeline import splits
from tests import conftest


def torch_fidelity_inception(weights_path):
  """torch-fidelity's FID Inception-v3, imported without its package __init__.

  The package __init__ imports torchvision (for data sets), which has no CPU wheel here; the
  Inception module itself needs only torch.
  """
  if 'torch_fidelity' not in sys.modules:
    spec = conftest.require('torch_fidelity', load=False)
    package = types.ModuleType('torch_fidelity')
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules['torch_fidelity'] = package
  from torch_fidelity import feature_extractor_inceptionv3  # pylint: disable=g-import-not-at-top
  return feature_extractor_inceptionv3.FeatureExtractorInceptionV3(
      'inception-v3-compat', ['2048', 'logits'], feature_extractor_weights_path=weights_path)


def random_state_dict(torch, seed=0):
  """Random weights in the standard file's names and shapes (He-scaled convs, sane BN stats)."""
  rng = np.random.default_rng(seed)
  state = {}
  for name, shape in inception.flat_shapes().items():
    collection, *path, leaf = name.split('/')
    prefix = '.'.join(path)
    if leaf == 'kernel' and len(shape) == 4:
      kh, kw, cin, cout = shape
      value = rng.normal(0, math.sqrt(2.0 / (kh * kw * cin)), (cout, cin, kh, kw))
      state[f'{prefix}.weight'] = value
    elif leaf == 'kernel':
      state['fc.weight'] = rng.normal(0, 0.02, shape[::-1])
    elif prefix == 'fc':
      state['fc.bias'] = rng.normal(0, 0.1, shape)
    else:
      torch_leaf = {'scale': 'weight', 'bias': 'bias', 'mean': 'running_mean',
                    'var': 'running_var'}[leaf]
      low, high = {'scale': (0.8, 1.2), 'var': (0.5, 1.5)}.get(leaf, (-0.1, 0.1))
      state[f'{prefix}.{torch_leaf}'] = rng.uniform(low, high, shape)
      if leaf == 'var':
        state[f'{prefix}.num_batches_tracked'] = np.array(0)
  return {k: torch.tensor(v, dtype=torch.float32 if v.dtype != np.int64 else torch.int64)
          for k, v in state.items()}


@pytest.fixture(scope='module')
def random_weights(tmp_path_factory):
  """(.pth in the standard format with random weights, its conversion to .npz)."""
  torch = conftest.require('torch')
  directory = tmp_path_factory.mktemp('inception')
  pth, npz = str(directory / 'random-inception.pth'), str(directory / 'random-inception.npz')
  torch.save(random_state_dict(torch), pth)
  assert convert_inception.main(['convert', pth, npz]) == 0
  return pth, npz


@pytest.mark.slow
def test_flax_inception_matches_torch_fidelity(random_weights):
  torch = conftest.require('torch')
  pth, npz = random_weights
  reference = torch_fidelity_inception(pth)
  images = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), np.uint8)
  with torch.no_grad():
    ref_pool, ref_logits = (t.numpy() for t in reference(torch.from_numpy(
        images.transpose(0, 3, 1, 2).copy())))
  pool, logits = fid.extract(inception.load_variables(npz), images, batch_size=4)
  assert pool.shape == (3, 2048) and logits.shape == (3, 1008)
  for ours, theirs in ((pool, ref_pool), (logits, ref_logits)):
    assert np.linalg.norm(ours - theirs) / np.linalg.norm(theirs) < 1e-4
    assert np.std(theirs) > 1e-3  # Activations are not degenerate.


def test_resize_matches_tensorflow1_rule():
  x = np.arange(4, dtype=np.float32)
  matrix = inception._resize_matrix(4, 6)  # pylint: disable=protected-access
  # Source coordinates i * 4/6 = 0, .667, 1.333, 2, 2.667, 3.333 (the last clamps to index 3).
  np.testing.assert_allclose(matrix @ x, [0, 2 / 3, 4 / 3, 2, 8 / 3, 3], atol=1e-6)


def test_converter_rejects_truncated_renamed_and_wrong_files(random_weights, tmp_path):
  torch = conftest.require('torch')
  pth, npz = random_weights
  data = open(pth, 'rb').read()
  truncated = tmp_path / 'truncated.pth'
  truncated.write_bytes(data[:len(data) // 2])
  with pytest.raises(ValueError, match='could not be read'):
    convert_inception.convert(str(truncated), str(tmp_path / 'out.npz'))
  mislabelled = tmp_path / 'pt_inception-2015-12-05-6726825d.pth'
  mislabelled.write_bytes(data)
  with pytest.raises(ValueError, match='sha256'):
    convert_inception.convert(str(mislabelled), str(tmp_path / 'out.npz'))
  state = random_state_dict(torch)
  del state['Mixed_6b.branch1x1.conv.weight']
  state['fc.weight'] = state['fc.weight'][:1000]
  wrong = tmp_path / 'wrong.pth'
  torch.save(state, wrong)
  with pytest.raises(ValueError, match=r'missing.*Mixed_6b|fc/kernel'):
    convert_inception.convert(str(wrong), str(tmp_path / 'out.npz'))
  assert not os.path.exists(tmp_path / 'out.npz')
  broken = tmp_path / 'broken.npz'
  broken.write_bytes(open(npz, 'rb').read()[:1000])
  with pytest.raises(ValueError, match='not a readable .npz'):
    inception.load_variables(str(broken))


def test_grayscale_images_enter_inception_as_three_equal_channels():
  gray = np.arange(8, dtype=np.uint8).reshape(2, 2, 2, 1) * 30
  x = np.asarray(fid.network_input(gray))
  assert x.shape == (2, 2, 2, 3)
  np.testing.assert_array_equal(x, np.repeat((gray - 128.0) / 128.0, 3, axis=-1))


def test_frechet_distance_matches_scipy_sqrtm():
  rng = np.random.default_rng(0)
  a = rng.normal(size=(500, 16))
  b = rng.normal(size=(400, 16)) @ rng.normal(size=(16, 16)) * 0.5 + 0.3
  (mu1, s1), (mu2, s2) = fid.statistics(a), fid.statistics(b)
  covmean = scipy.linalg.sqrtm(s1 @ s2).real
  expected = np.sum((mu1 - mu2)**2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
  assert fid.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-6)
  assert fid.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_of_known_gaussians():
  mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
  var1, var2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
  # ||mu1 - mu2||^2 + sum(var1 + var2 - 2 sqrt(var1 var2)) = 5 + (1 + 1 + 4) = 11.
  assert fid.frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(11.0)
  with pytest.raises(ValueError, match='negative eigenvalue'):
    fid.frechet_distance(mu1, np.diag([1.0, 1.0, -1.0]), mu2, np.eye(3))


def test_inception_score_by_hand():
  logits = np.zeros((4, 1008))
  logits[0, 0] = logits[1, 0] = logits[2, 1] = logits[3, 2] = math.log(9.0)
  logits[:, 1000:] = 50.0  # Ignored: only the first 1000 logits count.
  score, std = fid.inception_score(logits, num_splits=2)
  # Split 1: both rows p = (9, 1, 1, ...)/1008 on class 0: KL = 0, score 1.
  # Split 2: rows peaked on classes 1 and 2, marginal q = their mean.
  p1 = np.full(1000, 1.0) / 1008
  p1[1] = 9.0 / 1008
  p2 = np.full(1000, 1.0) / 1008
  p2[2] = 9.0 / 1008
  q = (p1 + p2) / 2
  kl = (np.sum(p1 * np.log(p1 / q)) + np.sum(p2 * np.log(p2 / q))) / 2
  assert score == pytest.approx((1.0 + math.exp(kl)) / 2, rel=1e-9)
  assert std == pytest.approx(abs(math.exp(kl) - 1.0) / 2, rel=1e-9)


@pytest.mark.slow
def test_eval_mode_reports_is_and_fid_with_weights(trained_workdir, random_weights):
  _, npz = random_weights
  config = workdir_lib.load_config(trained_workdir)
  config.eval.epsilons = [0.0]
  config.eval.train_num_examples = 4
  config.evals.inception.eval_num_samples = 20
  config.evals.inception.batch_size = 12
  result = evaluate.evaluate(config, task_lib.Task.from_config(config), trained_workdir)
  assert 'fid' not in result  # No weights given: skipped.
  config.evals.inception.weights = npz
  result = evaluate.evaluate(config, task_lib.Task.from_config(config), trained_workdir)
  assert result['fid'] > 0 and 1.0 <= result['inception_score'] <= 1000
  cache = os.path.join(os.path.dirname(trained_workdir), 'fid_stats')
  assert len(os.listdir(cache)) == 1  # Real statistics of the train split, cached.
  again = evaluate.evaluate(config, task_lib.Task.from_config(config), trained_workdir)
  assert again['fid'] == pytest.approx(result['fid'])


@pytest.mark.slow
def test_real_statistics_in_chunks_equal_those_of_the_whole_split(tiny_config, random_weights,
                                                                   tmp_path, monkeypatch):
  _, npz = random_weights
  variables = inception.load_variables(npz)
  d = tiny_config.dataset
  images, _ = splits.load_split(d, 'test', image_size=32, num_classes=10)
  expected = fid.statistics(fid.extract(variables, images, batch_size=8)[0])
  chunks = functools.partial(splits.split_chunks, chunk_size=7)  # 20 images: 7, 7, 6.
  monkeypatch.setattr(splits, 'split_chunks', chunks)
  mu, sigma = fid.real_statistics(tiny_config, 'test', variables, npz, str(tmp_path),
                                  batch_size=8, mesh=None)
  # Equal up to float32 rounding of the features (the chunks are extracted in other batches).
  np.testing.assert_allclose(mu, expected[0], rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(sigma, expected[1], rtol=1e-6, atol=1e-6)
  # Another view of the same folder (here: resized and centre-cropped) gets its own cache file.
  tiny_config.dataset.augmentation = 'random_resized_crop'
  fid.real_statistics(tiny_config, 'test', variables, npz, str(tmp_path), batch_size=8, mesh=None)
  assert len(os.listdir(tmp_path)) == 2
