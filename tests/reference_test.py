"""The reference classifier (`metrics.reference`): whitening, training to high accuracy on a small
image folder, its cache (reused, checked, shared by runs of any seed) and clear errors."""

import os

import numpy as np
import pytest

from configs import tiny
from rob_gan_jax import checkpoints
from rob_gan_jax import evaluators
from rob_gan_jax import models
from rob_gan_jax import task as task_lib
from rob_gan_jax.metrics import reference
from rob_gan_jax.input_pipeline import splits
from tests import conftest


@pytest.fixture(scope='module')
def config(tmp_path_factory):
  root = conftest.write_image_folder(tmp_path_factory.mktemp('data'),
                                     per_class={'train': 20, 'test': 10, 'held_out': 10})
  config = tiny.get_config()
  config.dataset.image_folder = root
  r = config.reference
  r.num_examples, r.num_epochs, r.batch_size = None, 48.0, 50
  return config


@pytest.fixture(scope='module')
def trained(config, tmp_path_factory):
  cache_dir = str(tmp_path_factory.mktemp('cache'))
  return cache_dir, reference.load_or_train(config, cache_dir)


@pytest.mark.parametrize('channels', [3, 1])
def test_whitening_kernel_makes_patch_covariance_the_identity(channels):
  rng = np.random.default_rng(0)
  mixing = np.eye(channels) + 0.5 * rng.normal(size=(channels, channels))
  images = np.tanh(rng.normal(size=(64, 8, 8, channels)) @ mixing * 0.3)
  images[:, 1:] += 0.5 * images[:, :-1]  # Correlated neighbours.
  kernel = reference.whitening_kernel(images)
  n = 4 * channels  # Values of a 2x2 patch.
  assert kernel.shape == (2, 2, channels, 2 * n)
  patches = np.stack([images[:, i:7 + i, j:7 + j] for i in range(2) for j in range(2)], 3)
  out = patches.reshape(-1, n) @ kernel[:, :, :, :n].reshape(n, n)
  covariance = np.cov(out, rowvar=False)
  np.testing.assert_allclose(covariance - np.diag(np.diag(covariance)), 0, atol=1e-6)
  # Variances are eigenvalue / (eigenvalue + 5e-4): 1 but for the faintest directions.
  assert np.all(np.diag(covariance) <= 1) and np.median(np.diag(covariance)) > 0.95
  np.testing.assert_array_equal(kernel[..., n:], -kernel[..., :n])


def test_trains_to_high_accuracy_and_records_it_with_its_identity(config, trained):
  _, classifier = trained
  info = classifier.info
  # Classes differ by brightness (conftest.write_image_folder); 0.9 measured, chance 0.1.
  assert info['test_accuracy'] > 0.8
  assert info['num_classes'] == 10 and info['settings']['widths'] == [8, 16, 16]
  images, labels = reference.test_split(config)
  assert classifier.accuracy(images, labels) == pytest.approx(info['test_accuracy'])
  logits, features = classifier.outputs(images[:7])
  assert logits.shape == (7, 10) and features.shape == (7, 16)


def test_cache_is_reused_by_runs_of_any_seed_and_of_an_unconditional_gan(config, trained,
                                                                          monkeypatch):
  cache_dir, classifier = trained
  monkeypatch.setattr(reference, 'train', lambda *a, **k: pytest.fail('trained again'))
  other = config.copy_and_resolve_references()
  other.seed = 7
  assert reference.load_or_train(other, cache_dir).info == classifier.info
  unconditional = other.copy_and_resolve_references()
  unconditional.model.num_classes, unconditional.reference.num_classes = 0, 10
  assert reference.cache_path(unconditional, cache_dir) == reference.cache_path(config, cache_dir)
  wider = other.copy_and_resolve_references()
  wider.reference.widths = (8, 16, 32)
  assert reference.cache_path(wider, cache_dir) != reference.cache_path(config, cache_dir)


def test_a_damaged_cached_classifier_is_named_not_used(config, trained, tmp_path):
  cache_dir, _ = trained
  path = reference.cache_path(config, cache_dir)
  copy = reference.cache_path(config, str(tmp_path))
  for suffix in ('.json', '.msgpack'):
    with open(path + suffix, 'rb') as f:
      data = f.read()
    with open(copy + suffix, 'wb') as f:
      f.write(data[:-10] if suffix == '.msgpack' else data)
  with pytest.raises(ValueError, match=os.path.basename(copy) + '.msgpack does not match'):
    reference.load_or_train(config, str(tmp_path))


def test_an_unconditional_config_without_its_classes_is_refused(config, tmp_path):
  unconditional = config.copy_and_resolve_references()
  unconditional.model.num_classes = 0
  with pytest.raises(ValueError, match='reference.num_classes'):
    reference.load_or_train(unconditional, str(tmp_path))


def _score_as_samples(config, cache_dir, images, labels, monkeypatch):
  """reference_metrics' `--mode=eval` figures with `images` standing in for G's samples."""
  generator, discriminator = models.create_models(config.model)
  context = evaluators.Context(config, task_lib.Task.from_config(config), cache_dir,
                               stage='cotrain', training=False, generator=generator,
                               discriminator=discriminator, mesh=None)
  monkeypatch.setattr(context, 'generated', lambda networks, n: (images[:n], labels[:n]))
  networks = checkpoints.Weights(config=config, stage='cotrain', step=0, generator={},
                                 discriminator={})
  return evaluators.create('reference_metrics', context).run(networks).metrics


@pytest.mark.slow
def test_held_out_real_images_score_as_real_and_noise_does_not(config, trained, monkeypatch):
  cache_dir, classifier = trained
  config = config.copy_and_resolve_references()
  config.reference.cache_dir = cache_dir
  config.evals.reference_metrics.eval_num_samples = 100
  config.evals.reference_metrics.eval_cas_num_samples = 100
  # Images of the same distribution as the real side (the test split), none of them in it.
  images, labels = splits.load_subset(reference.labelled(config), 'held_out', None)
  real = _score_as_samples(config, cache_dir, images, labels, monkeypatch)
  noise_images = np.random.default_rng(0).integers(0, 256, images.shape, dtype=np.uint8)
  noise = _score_as_samples(config, cache_dir, noise_images, labels, monkeypatch)
  assert real['reference_test_accuracy'] == classifier.info['test_accuracy']
  # Within 2 standard errors of 100 images' accuracy.
  assert real['gan_test_accuracy'] == pytest.approx(classifier.info['test_accuracy'], abs=0.1)
  assert real['cas_accuracy'] > real['cas_real_accuracy'] - 0.15
  assert real['fd_ref'] < 0.1 * noise['fd_ref'] and real['kid_ref'] < 0.1 * noise['kid_ref']
  assert real['precision_ref'] > 0.5 and real['recall_ref'] > 0.5
  assert noise['precision_ref'] < 0.2 and noise['gan_test_accuracy'] < 0.3
  assert len(real['gan_test_per_class']) == 10
  assert real['reference_classifier']['num_classes'] == 10
