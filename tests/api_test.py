"""Tests of rob_gan_jax.api, the notebook API."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rob_gan_jax import api
from rob_gan_jax import robustness
from rob_gan_jax.attacks import heads
from rob_gan_jax.input_pipeline import transforms


def test_api_loads_latest_stage_and_samples_classifies_attacks(trained_workdir):
  model = api.load(trained_workdir)
  assert model.stage == 'finetune' and model.step == 2
  assert api.load(trained_workdir, 'cotrain').stage == 'cotrain'
  assert api.load(trained_workdir, 'cotrain', step=2).step == 2  # Its one checkpoint.
  with pytest.raises(FileNotFoundError, match=r'no checkpoint of step 1 .*saved steps: \[2\]'):
    api.load(trained_workdir, 'cotrain', step=1)
  images = model.sample(jnp.arange(10))
  assert images.shape == (10, 32, 32, 3)
  # A function of the seed: the same images again, others for another seed.
  np.testing.assert_array_equal(model.sample(jnp.arange(10)), images)
  assert not np.allclose(model.sample(jnp.arange(10), seed=1), images)
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
  expected = heads.pgd_on(model.discriminator, model.discriminator_variables,
                          images.astype(np.float32) / 127.5 - 1, jnp.asarray(labels),
                          objective='class', epsilon=0.05,
                          step_size=0.05 * a.step_size / a.epsilon, num_steps=a.num_steps)
  np.testing.assert_allclose(model.attack(images, labels, epsilon=0.05), expected, atol=1e-6)


def test_api_strong_attack_returns_misclassified_images_where_not_robust(trained_workdir):
  model = api.load(trained_workdir)
  model.config.eval.attack_budgets.apgd_ce.num_steps = 5  # The run's budget: fewer steps.
  images, labels = model.load_data('test', 8)
  x_adv, robust = model.strong_attack(images, labels, attack='apgd-ce', epsilon=0.1)
  assert x_adv.shape == images.shape and robust.shape == (8,)
  assert float(jnp.max(jnp.abs(x_adv - transforms.to_float(images)))) <= 0.1 + 1e-6
  misclassified = np.asarray(model.predict(x_adv) != labels)
  assert np.all(misclassified[~np.asarray(robust)])
  with pytest.raises(ValueError, match="unknown strong attack 'fab'"):
    model.strong_attack(images, labels, attack='fab', epsilon=0.1)


@pytest.mark.parametrize('running_stats', [False, True])
def test_api_sample_uses_the_eval_sampling_mode(trained_workdir, running_stats):
  model = api.load(trained_workdir)
  model.config.eval.sample_with_running_stats = running_stats
  labels = jnp.arange(6) % 10
  z = jax.random.normal(jax.random.PRNGKey(3), (6, model.config.model.z_dim))
  # By hand: training mode on this batch (official: G never in eval mode), or inference mode.
  expected = model.generator.apply(model.generator_variables, z, labels, train=not running_stats,
                                   mutable=['batch_stats'])[0]
  np.testing.assert_allclose(model.sample(labels, seed=3), expected, atol=1e-5)


def test_api_accuracy_curve_reports_per_radius_and_cumulative(trained_workdir):
  model = api.load(trained_workdir)
  images, labels = model.load_data('test', 8)
  curve = model.accuracy_curve(images, labels, [0.05, 0.0], num_steps=2)
  assert isinstance(curve, robustness.AccuracyCurve)
  clean = float(np.mean(np.asarray(model.predict(images)) == labels))
  assert curve.per_radius[1] == curve.cumulative[1] == clean
  assert curve.cumulative[0] <= min(curve.per_radius)


def test_api_evaluate_runs_the_evaluators_of_eval_mode(trained_workdir):
  model = api.load(trained_workdir)
  result = model.evaluate(['accuracy_curve', 'sample_grid'])
  e = model.config.eval
  images, labels = model.load_data(e.split, e.num_examples)
  curve = model.accuracy_curve(images, labels, e.epsilons)
  assert result['test_accuracy'] == curve.per_radius  # The same attack as --mode=eval's.
  assert (result['stage'], result['step'], result['head']) == ('finetune', model.step, 'class')
  rows, per_row = 10, model.config.evals.sample_grid.samples_per_class
  assert result['images']['samples'].shape == (rows * 34 + 2, per_row * 34 + 2, 3)
  with pytest.raises(ValueError, match='unknown evaluator'):
    model.evaluate(['fid50k'])


def test_api_recalibrated_model_is_reported_beside_the_saved_one(trained_workdir):
  model = api.load(trained_workdir, 'cotrain')
  result = model.evaluate(['accuracy_curve', 'recalibrated_accuracy'])
  e = model.config.eval
  r = model.config.evals.recalibrated_accuracy
  recalibrated = model.recalibrated(r.mode, r.num_examples)
  images, labels = model.load_data(e.split, e.num_examples)
  assert result['test_accuracy'] == model.accuracy_curve(images, labels, e.epsilons).per_radius
  assert result['recalibrated_test_accuracy'] == recalibrated.accuracy_curve(
      images, labels, e.epsilons).per_radius
  assert result['recalibrated_batch_norm'] == 'clean'
  saved = api.load(trained_workdir, 'cotrain').discriminator_variables['batch_stats']
  jax.tree.map(np.testing.assert_array_equal, model.discriminator_variables['batch_stats'], saved)
  assert not all(jax.tree.leaves(jax.tree.map(
      np.array_equal, recalibrated.discriminator_variables['batch_stats'], saved)))
  with pytest.raises(ValueError, match='mode must be one of'):
    model.recalibrated('both')


def test_api_samples_and_attacks_an_unconditional_model(trained_asgan_workdir):
  model = api.load(trained_asgan_workdir)
  assert model.stage == 'cotrain' and model.head == 'source'
  images = model.sample(num_samples=4, seed=1)
  assert images.shape == (4, 32, 32, 3)
  assert not np.allclose(images[0], images[1])  # Latents differ within a call.
  with pytest.raises(ValueError, match='num_samples'):
    model.sample(jnp.arange(4))
  with pytest.raises(ValueError, match='no classifier'):
    model.classify(images)
  real, _ = model.load_data('test', 8)
  x = real.astype(np.float32) / 127.5 - 1
  x_adv = model.attack(real, epsilon=0.03, num_steps=3)
  assert float(jnp.max(jnp.abs(x_adv - x))) <= 0.03 + 1e-6
  assert float(jnp.mean(model.score(x_adv))) < float(jnp.mean(model.score(real)))  # To "fake".
  curve = model.accuracy_curve(*model.load_data('test', 8), epsilons=[0.0, 0.03])
  assert curve.per_radius[1] <= curve.per_radius[0]
