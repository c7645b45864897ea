"""Tests of rob_gan_jax.recalibration: re-estimated BatchNorm statistics and their settings."""

import jax
import numpy as np
import pytest

from rob_gan_jax import models
from rob_gan_jax import recalibration
from rob_gan_jax import state as state_lib
from rob_gan_jax import task as task_lib


@pytest.fixture
def discriminator_and_variables(tiny_config):
  _, discriminator = models.create_models(tiny_config.model, axis_name='batch')
  variables = state_lib.init_variables(discriminator, jax.random.PRNGKey(0),
                                       np.zeros((1, 32, 32, 3), np.float32))
  return discriminator, variables


def images(n, seed=0):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n)


def recalibrate(discriminator, variables, x, y, batch_size, attack_config=None):
  return recalibration.recalibrate_batch_norm(discriminator, variables, x, y,
                                              batch_size=batch_size, attack_config=attack_config,
                                              key=jax.random.PRNGKey(1))


def test_inference_mode_after_recalibration_on_a_batch_is_training_mode_on_it(
    discriminator_and_variables):
  discriminator, variables = discriminator_and_variables
  x, y = images(16)
  recalibrated = recalibrate(discriminator, variables, x, y, batch_size=16)
  x_float = x.astype(np.float32) / 127.5 - 1
  inference = discriminator.apply(recalibrated, x_float, train=False)
  # Training mode normalises by the batch's own statistics (no axis outside shard_map).
  training, _ = discriminator.clone(axis_name=None).apply(variables, x_float, train=True,
                                                          mutable=['batch_stats'])
  np.testing.assert_allclose(inference[1], training[1], rtol=1e-4, atol=1e-4)
  jax.tree.map(np.testing.assert_array_equal, recalibrated['params'], variables['params'])
  before = discriminator.apply(variables, x_float, train=False)
  assert np.max(np.abs(before[1] - training[1])) > 1e-2  # The statistics did change.


def test_statistics_are_the_average_over_batches(discriminator_and_variables):
  discriminator, variables = discriminator_and_variables
  x, y = images(40)  # 2 batches of 16; the 8 left over are not used.
  both = recalibrate(discriminator, variables, x, y, batch_size=16)
  first, second = (recalibrate(discriminator, variables, x[s:s + 16], y[s:s + 16], 16)
                   for s in (0, 16))
  jax.tree.map(lambda b, f, s: np.testing.assert_allclose(b, (f + s) / 2, rtol=1e-5, atol=1e-6),
               both['batch_stats'], first['batch_stats'], second['batch_stats'])


def test_attacked_recalibration_uses_the_attacked_images(discriminator_and_variables,
                                                         tiny_config):
  discriminator, variables = discriminator_and_variables
  x, y = images(16)
  clean = recalibrate(discriminator, variables, x, y, 16)
  attacked = recalibrate(discriminator, variables, x, y, 16,
                         attack_config=tiny_config.finetune.attack)
  differences = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))),
                             clean['batch_stats'], attacked['batch_stats'])
  assert max(jax.tree.leaves(differences)) > 1e-4


def test_too_few_images_raise(discriminator_and_variables):
  discriminator, variables = discriminator_and_variables
  with pytest.raises(ValueError, match='at least one batch of 16 images, got 8'):
    recalibrate(discriminator, variables, *images(8), batch_size=16)


@pytest.mark.parametrize('mode, normalization, match', [
    ('sometimes', 'batch_norm', "must be one of \\('none', 'clean', 'attacked'\\)"),
    ('clean', 'spectral_norm', "model.normalization='spectral_norm' has none"),
])
def test_bad_modes_raise(tiny_config, mode, normalization, match):
  tiny_config.model.normalization = normalization
  task = task_lib.Task.from_config(tiny_config)
  with pytest.raises(ValueError, match=match):
    recalibration.check_mode(mode, tiny_config.model, task, 'finetune.recalibrate_batch_norm')
  recalibration.check_mode('none', tiny_config.model, task, 'finetune.recalibrate_batch_norm')
