"""Tests of rob_gan_jax.state: the learning-rate schedules at their boundaries, by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import default
from configs import tiny
from rob_gan_jax import checkpoints
from rob_gan_jax import models
from rob_gan_jax import state as state_lib
from rob_gan_jax import task as task_lib


def classifier_state(config, generator, discriminator, num_train_examples, cotrained=None):
  return state_lib.create_classifier_state(config, task_lib.Task.from_config(config), generator,
                                           discriminator, num_train_examples, cotrained)


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
  # The schedules alone: Adam's moments carry on over the boundaries.
  config.optim.restart_adam_at_decay = False
  config.finetune.restart_adam_at_stage = False
  generator, discriminator = models.create_models(config.model)
  # 10 * 8 * 2 examples: D makes 20 updates an epoch, G 10; decay every 50 epochs.
  gan = state_lib.create_gan_state(config, generator, discriminator, num_train_examples=160)
  for model_state, boundary in ((gan.discriminator, 1000), (gan.generator, 500)):
    before = adam_update_size(model_state, boundary - 1)
    after = adam_update_size(model_state, boundary)
    assert after == pytest.approx(before / 2, rel=1e-4)
  config.finetune.stage_epochs = (500.0, 1.0)  # Late enough for Adam's bias corrections to be 1.
  classifier = classifier_state(config, generator, discriminator, num_train_examples=160)
  # Batch 8: 20 updates an epoch, the second stage starts at update count 10,000.
  before = adam_update_size(classifier.discriminator, 9_999)
  after = adam_update_size(classifier.discriminator, 10_000)
  assert after == pytest.approx(before / 10, rel=1e-4)


def test_classifier_state_starts_from_given_weights():
  config = tiny.get_config()
  generator, discriminator = models.create_models(config.model)
  fresh = classifier_state(config, generator, discriminator, 160)
  assert int(fresh.generator_step) == -1
  shifted = jax.tree.map(lambda x: x + 1, (fresh.generator, fresh.discriminator.variables))
  loaded = classifier_state(config, generator, discriminator, 160,
                            checkpoints.Weights(config, 'cotrain', 7, *shifted))
  jax.tree.map(np.testing.assert_array_equal, (loaded.generator, loaded.discriminator.variables),
               shifted)
  assert int(loaded.generator_step) == 7
  config.method = 'madry'  # No generator.
  assert classifier_state(config, generator, discriminator, 160).generator is None


def run_updates(model_state, num_updates):
  """Applies `num_updates` updates with a gradient of ones to parameters starting at 0 (so float
  rounding stays far below the updates); returns the state after each and the size of each
  update of the first parameter."""
  model_state = model_state.replace(params=jax.tree.map(jnp.zeros_like, model_state.params))
  grads = jax.tree.map(jnp.ones_like, model_state.params)
  apply = jax.jit(lambda s: s.apply_gradients(grads=grads))
  states, sizes = [], []
  for _ in range(num_updates):
    before = jax.tree.leaves(model_state.params)[0]
    model_state = apply(model_state)
    states.append(model_state)
    sizes.append(float(jnp.abs(jax.tree.leaves(model_state.params)[0] - before).max()))
  return states, sizes


def adam_after(num_updates, b1, b2):
  """(count, mu, nu, |update|) of Adam after `num_updates` updates with gradient 1 (lr 1)."""
  mu, nu = 1 - b1**num_updates, 1 - b2**num_updates
  return num_updates, mu, nu, (mu / (1 - b1**num_updates)) / (
      np.sqrt(nu / (1 - b2**num_updates)) + 1e-8)


@pytest.mark.parametrize('restart', [True, False])
def test_adam_restarts_at_each_decay_and_stage_while_the_schedule_counts_on(restart):
  config = tiny.get_config()
  config.optim.decay_every_epochs = 1
  config.optim.restart_adam_at_decay = restart
  config.finetune.stage_epochs = (1.0, 1.0, 1.0)
  config.finetune.restart_adam_at_stage = restart
  generator, discriminator = models.create_models(config.model)
  # 24 examples, batch 8: D makes 3 updates an epoch (decay before update counts 3, 6), G 1.5
  # (T = round(1.5) = 2); classifier training 3 an epoch (stages start at counts 3 and 6).
  gan = state_lib.create_gan_state(config, generator, discriminator, num_train_examples=24)
  classifier = classifier_state(config, generator, discriminator, num_train_examples=24)
  o, f = config.optim, config.finetune
  for model_state, period, lr, factor, (b1, b2) in (
      (gan.discriminator, 3, o.learning_rate, o.decay_factor, (o.b1, o.b2)),
      (gan.generator, 2, o.learning_rate, o.decay_factor, (o.b1, o.b2)),
      (classifier.discriminator, 3, f.learning_rate, f.stage_factor, (f.b1, f.b2))):
    states, sizes = run_updates(model_state, 7)
    for done, (model_state, size) in enumerate(zip(states, sizes), start=1):
      adam_state, schedule_state = model_state.opt_state
      assert int(schedule_state.count) == done  # The schedule counts every update.
      # Updates made since Adam was last (re)built: the update of count c is the first of a new
      # Adam when c is a boundary.
      since = (done - 1) % period + 1 if restart else done
      count, mu, nu, step = adam_after(since, b1, b2)
      assert int(adam_state.count) == count, done
      np.testing.assert_allclose(jax.tree.leaves(adam_state.mu)[0], mu, rtol=1e-5)
      np.testing.assert_allclose(jax.tree.leaves(adam_state.nu)[0], nu, rtol=1e-5)
      # The rate of update count done - 1 follows the schedule; the step is Adam's.
      rate = lr * factor**((done - 1) // period)
      assert size == pytest.approx(rate * step, rel=1e-4), done
