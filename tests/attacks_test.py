"""Tests of rob_gan_jax.attacks.pgd_linf."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from rob_gan_jax import attacks
from rob_gan_jax import losses
from rob_gan_jax import models


@pytest.fixture(scope='module', params=['batch_norm', 'spectral_norm'])
def discriminator_and_variables(request):
  config = tiny.get_config().model
  config.normalization = request.param
  discriminator = models.create_models(config)[1]
  x = jax.random.uniform(jax.random.PRNGKey(0), (8, 32, 32, 3), minval=-1, maxval=1)
  variables = discriminator.init(jax.random.PRNGKey(1), x, train=False)
  # Non-trivial running statistics, so inference mode differs from batch statistics.
  _, updates = discriminator.apply(variables, x, train=True, mutable=['batch_stats'])
  return discriminator, {**variables, **updates}, x


def real_loss_fn(discriminator, variables):
  def loss_fn(x, y):
    source, classes = discriminator.apply(variables, x, train=False)
    return losses.discriminator_real_loss(source_logits=source, class_logits=classes, labels=y)
  return loss_fn


@pytest.mark.parametrize('random_start', [False, True])
def test_pgd_stays_in_ball_and_pixel_range_and_increases_loss(discriminator_and_variables,
                                                              random_start):
  discriminator, variables, x = discriminator_and_variables
  x = x.at[:, :4].set(1.0).at[:, 4:8].set(-1.0)  # Pixels at the range limits.
  y = jnp.arange(8) % 10
  loss_fn = real_loss_fn(discriminator, variables)
  x_adv = attacks.pgd_linf(loss_fn, x, y, epsilon=0.03125, step_size=0.0078, num_steps=5,
                           random_start=random_start,
                           keys=jax.random.split(jax.random.PRNGKey(3), 8))
  assert x_adv.shape == x.shape
  assert float(jnp.max(jnp.abs(x_adv - x))) <= 0.03125 + 1e-6
  assert float(jnp.min(x_adv)) >= -1.0 and float(jnp.max(x_adv)) <= 1.0
  assert float(loss_fn(x_adv, y)) >= float(loss_fn(x, y))
  assert float(jnp.max(jnp.abs(x_adv - x))) > 0.0


def test_pgd_zero_steps_returns_input(discriminator_and_variables):
  discriminator, variables, x = discriminator_and_variables
  x_adv = attacks.pgd_linf(real_loss_fn(discriminator, variables), x, jnp.zeros(8, jnp.int32),
                           epsilon=0.1, step_size=0.01, num_steps=0)
  np.testing.assert_array_equal(x_adv, x)


@pytest.mark.parametrize('random_start', [False, True])
def test_pgd_changes_no_state_and_attacks_each_example_alone(discriminator_and_variables,
                                                            random_start):
  discriminator, variables, x = discriminator_and_variables
  before = jax.tree.map(np.array, variables)
  y = jnp.arange(8) % 10
  loss_fn = real_loss_fn(discriminator, variables)
  keys = jax.random.split(jax.random.PRNGKey(2), 8)
  kwargs = dict(epsilon=0.05, step_size=0.01, num_steps=3, random_start=random_start)
  # D runs in inference mode (flax raises if it tried to update statistics) ...
  x_adv = attacks.pgd_linf(loss_fn, x, y, keys=keys, **kwargs)
  jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.array, variables))
  # ... so an example's attack, its random start included (one key per example), does not
  # depend on the rest of the batch, e.g. on how a batch is split over devices.
  x_adv_last = attacks.pgd_linf(loss_fn, x[5:], y[5:], keys=keys[5:], **kwargs)
  np.testing.assert_allclose(x_adv_last, x_adv[5:], atol=1e-6)


def test_pgd_has_no_gradient_to_its_result(discriminator_and_variables):
  discriminator, variables, x = discriminator_and_variables
  loss_fn = real_loss_fn(discriminator, variables)
  y = jnp.zeros(8, jnp.int32)
  grad = jax.grad(lambda x: jnp.sum(attacks.pgd_linf(loss_fn, x, y, epsilon=0.1, step_size=0.01,
                                                     num_steps=2)))(x)
  assert float(jnp.max(jnp.abs(grad))) == 0.0


@pytest.mark.parametrize('kwargs, match', [
    (dict(epsilon=-0.1, step_size=0.01, num_steps=1), 'epsilon'),
    (dict(epsilon=0.1, step_size=0.0, num_steps=1), 'step_size'),
    (dict(epsilon=0.1, step_size=0.01, num_steps=-1), 'num_steps'),
    (dict(epsilon=0.1, step_size=0.01, num_steps=1, random_start=True), 'keys'),
])
def test_pgd_bad_arguments_raise(kwargs, match):
  with pytest.raises(ValueError, match=match):
    attacks.pgd_linf(lambda x, y: jnp.sum(x), jnp.zeros((1, 2, 2, 3)), None, **kwargs)
