"""Tests of rob_gan_jax.state: the learning-rate schedules at their boundaries, by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import default
from configs import tiny
from rob_gan_jax import models
from rob_gan_jax import state as state_lib


def test_cotrain_schedule_halves_every_50_epochs_of_its_own_updates():
  optim = default.get_config().optim
  # CIFAR-10, batch 64: D makes 781.25 updates an epoch -> T = round(39062.5) = 39062.
  schedule = state_lib.cotrain_schedule(optim, 50_000 / 64)
  for count, lr in ((0, 2e-4), (39_061, 2e-4), (39_062, 1e-4), (78_123, 1e-4), (78_124, 5e-5)):
    assert float(schedule(count)) == pytest.approx(lr, rel=1e-6), count
  # G makes n_dis = 5 times fewer: T = round(7812.5) = 7812.
  schedule = state_lib.cotrain_schedule(optim, 50_000 / 64 / 5)
  for count, lr in ((7_811, 2e-4), (7_812, 1e-4), (15_624, 5e-5)):
    assert float(schedule(count)) == pytest.approx(lr, rel=1e-6), count


def test_classifier_schedule_divides_by_10_after_each_stage():
  finetune = default.get_config().finetune
  # Batch 128: 390 updates an epoch; stages of 20, 20, 10, 10 epochs end at 7800, 15600, 19500.
  schedule = state_lib.classifier_schedule(finetune, 390)
  for count, lr in ((0, 1e-3), (7_799, 1e-3), (7_800, 1e-4), (15_599, 1e-4), (15_600, 1e-5),
                    (19_499, 1e-5), (19_500, 1e-6), (23_399, 1e-6)):
    assert float(schedule(count)) == pytest.approx(lr, rel=1e-6), count


def adam_update_size(model_state, count):
  """|update| of the first parameter for a gradient of ones, the optimizer at update `count`."""
  opt_state = optax.tree_utils.tree_set(model_state.opt_state, count=jnp.int32(count))
  grads = jax.tree.map(jnp.ones_like, model_state.params)
  updates, _ = jax.jit(model_state.tx.update)(grads, opt_state, model_state.params)
  return float(jnp.abs(jax.tree.leaves(updates)[0]).max())


def test_states_use_each_net_s_own_update_count():
  config = tiny.get_config()
  generator, discriminator = models.create_models(config.model)
  # 10 * 8 * 2 examples: D makes 20 updates an epoch, G 10; decay every 50 epochs.
  gan = state_lib.create_gan_state(config, generator, discriminator, num_train_examples=160)
  for model_state, boundary in ((gan.discriminator, 1000), (gan.generator, 500)):
    before = adam_update_size(model_state, boundary - 1)
    after = adam_update_size(model_state, boundary)
    assert after == pytest.approx(before / 2, rel=1e-4)
  config.finetune.stage_epochs = (500.0, 1.0)  # Late enough for Adam's bias corrections to be 1.
  classifier = state_lib.create_classifier_state(config, discriminator, num_train_examples=160)
  # Batch 8: 20 updates an epoch, the second stage starts at update count 10,000.
  before = adam_update_size(classifier.discriminator, 9_999)
  after = adam_update_size(classifier.discriminator, 10_000)
  assert after == pytest.approx(before / 10, rel=1e-4)


def test_classifier_state_starts_from_given_weights():
  config = tiny.get_config()
  _, discriminator = models.create_models(config.model)
  fresh = state_lib.create_classifier_state(config, discriminator, 160)
  shifted = jax.tree.map(lambda x: x + 1, fresh.discriminator.variables)
  loaded = state_lib.create_classifier_state(config, discriminator, 160, shifted)
  jax.tree.map(np.testing.assert_array_equal, loaded.discriminator.variables, shifted)
