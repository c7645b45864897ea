"""Tests of rob_gan_jax.api, the notebook API."""

import jax.numpy as jnp
import numpy as np
import pytest

from rob_gan_jax import api
from rob_gan_jax import attacks


def test_api_loads_latest_stage_and_samples_classifies_attacks(trained_workdir):
  model = api.load(trained_workdir)
  assert model.stage == 'finetune' and model.step == 2
  assert api.load(trained_workdir, 'cotrain').stage == 'cotrain'
  images = model.sample(jnp.arange(10))
  assert images.shape == (10, 32, 32, 3) and float(jnp.abs(images).max()) <= 1.0
  assert model.predict(images).shape == (10,)
  x_adv = model.attack(images, jnp.arange(10), epsilon=0.0627, num_steps=3)
  assert float(jnp.max(jnp.abs(x_adv - images))) <= 0.0627 + 1e-6
  with pytest.raises(ValueError, match='epsilon'):
    model.attack(images, jnp.arange(10), epsilon=-1.0)


def test_api_attack_defaults_are_the_eval_attack(trained_workdir):
  model = api.load(trained_workdir)
  images, labels = model.load_data('test', 6)
  assert images.shape == (6, 32, 32, 3) and images.dtype == np.uint8
  a = model.config.eval.attack  # 2 steps of eps / 5 in the tiny config.
  expected = attacks.pgd_class(model.discriminator, model.discriminator_variables,
                               images.astype(np.float32) / 127.5 - 1, jnp.asarray(labels),
                               epsilon=0.05, step_size=0.05 * a.step_size / a.epsilon,
                               num_steps=a.num_steps)
  np.testing.assert_allclose(model.attack(images, labels, epsilon=0.05), expected, atol=1e-6)
