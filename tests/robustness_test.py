"""Tests of rob_gan_jax.robustness: accuracy under PGD and the local Lipschitz value."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rob_gan_jax import api
from rob_gan_jax import robustness
from rob_gan_jax.input_pipeline import transforms


@pytest.fixture(scope='module')
def model_and_data(trained_workdir):
  model = api.load(trained_workdir)
  images, labels = model.load_data('test')
  return model, images, labels


def target(model, batch_size=8):
  return robustness.Target(model.discriminator, model.discriminator_variables,
                           batch_size=batch_size)


def test_zero_epsilon_gives_plain_accuracy(model_and_data):
  model, images, labels = model_and_data
  plain = float(np.mean(np.asarray(model.predict(images)) == labels))
  accuracy = robustness.accuracy_under_attack(
      target(model), images, labels, epsilon=0.0, step_size=0.0, num_steps=20,
      key=jax.random.PRNGKey(0))
  assert accuracy == plain
  both = robustness.clean_and_pgd_accuracy(target(model), images, labels,
                                           attack_config=model.config.eval.attack,
                                           key=jax.random.PRNGKey(0))
  assert both['test_accuracy_clean'] == plain
  assert both['test_accuracy_pgd'] <= plain
  counts = np.bincount(np.asarray(model.predict(images)))
  assert both['test_max_class_share'] == pytest.approx(np.max(counts) / len(images))
  assert 0 < both['test_prediction_information'] <= 1


@pytest.mark.parametrize('collapse', ['one class', 'uniform'])
def test_prediction_statistics_of_a_classifier_that_ignores_its_input(model_and_data, collapse):
  model, images, _ = model_and_data
  variables = jax.tree.map(np.array, model.discriminator_variables)
  head = variables['params']['class_head']
  if collapse == 'one class':
    head['bias'][3] = 1e6  # Every input is class 3, with certainty.
  else:
    head['kernel'][:] = 0  # The same (uniform) distribution for every input.
  statistics = robustness.clean_prediction_statistics(
      robustness.Target(model.discriminator, variables, batch_size=8), images)
  assert statistics['prediction_information'] == pytest.approx(0, abs=1e-6)
  if collapse == 'one class':
    assert statistics['max_class_share'] == 1.0


def test_prediction_information_of_a_perfect_balanced_classifier():
  logits = 50.0 * np.eye(10)[np.arange(40) % 10]
  statistics = robustness.prediction_statistics(robustness.prediction_means(logits))
  assert float(statistics['prediction_information']) == pytest.approx(1.0, abs=1e-6)
  assert float(statistics['max_class_share']) == pytest.approx(0.1)


def test_cumulative_accuracy_is_non_increasing_and_restarts_never_help(model_and_data):
  model, images, labels = model_and_data
  kwargs = dict(epsilons=[0.0, 0.02, 0.05, 0.1, 0.3], step_size_factor=0.25, num_steps=3,
                key=jax.random.PRNGKey(1))
  curve = robustness.accuracy_curve(target(model), images, labels, **kwargs)
  assert all(a >= b for a, b in zip(curve.cumulative, curve.cumulative[1:]))
  assert all(c <= p for c, p in zip(curve.cumulative, curve.per_radius))
  assert curve.per_radius[0] == curve.cumulative[0]  # Clean accuracy.
  with_restarts = robustness.accuracy_curve(target(model), images, labels, num_restarts=3,
                                            **kwargs)
  for field in ('per_radius', 'cumulative'):
    assert all(r <= a for r, a in zip(getattr(with_restarts, field), getattr(curve, field)))


def test_per_radius_and_cumulative_accuracy_from_one_attack_per_radius(monkeypatch):
  # Example i is correct under the attack at eps when correct[eps][i]; example 1 fails at 0.01
  # but survives 0.02, which the per-radius figure counts and the cumulative one does not.
  correct = {0.0: [True, True, True, True], 0.01: [True, False, True, False],
             0.02: [True, True, False, False]}
  attacked = []

  def fake_correct_under_attack(target, images, labels, *, epsilon, step_size, **kwargs):
    assert step_size == pytest.approx(epsilon * 0.2)
    attacked.append(epsilon)
    return np.array(correct[epsilon])

  monkeypatch.setattr(robustness, 'correct_under_attack', fake_correct_under_attack)
  curve = robustness.accuracy_curve(None, np.zeros((4, 2, 2, 3), np.uint8), np.zeros(4),
                                    epsilons=[0.02, 0.0, 0.01, 0.02], step_size_factor=0.2,
                                    num_steps=3, key=jax.random.PRNGKey(0))
  assert sorted(attacked) == [0.0, 0.01, 0.02]  # Each radius attacked once.
  assert curve.per_radius == [0.5, 1.0, 0.5, 0.5]
  assert curve.cumulative == [0.25, 1.0, 0.5, 0.25]


def test_strong_attack_runs_only_on_clean_correct_examples(model_and_data, monkeypatch):
  model, images, labels = model_and_data
  clean = np.asarray(model.predict(images)) == labels
  assert 0 < clean.sum() < len(labels)  # The tiny model gets some right and some wrong.
  seen = []

  def fake_attack(discriminator, variables, x, y, epsilon, key, *, attack, budget):
    seen.append(np.asarray(x))
    return None, jnp.arange(len(y)) % 2 == 0  # Every other attacked example stays robust.

  monkeypatch.setattr(robustness, 'strong_attack_classifier', fake_attack)
  correct = robustness.correct_under_strong_attack(
      target(model), images, labels, attack='square', epsilon=0.03,
      budget=dict(num_queries=1), key=jax.random.PRNGKey(0))
  attacked = np.concatenate([x[:n] for x, n in zip(
      seen, np.diff(np.minimum(np.arange(0, len(seen) + 1) * 8, clean.sum())))])
  np.testing.assert_array_equal(attacked, images[clean])
  expected = np.zeros(len(labels), bool)
  expected[np.flatnonzero(clean)[::2]] = True
  np.testing.assert_array_equal(correct, expected)


def test_local_lipschitz_value_is_mean_input_gradient_norm(model_and_data):
  model, images, labels = model_and_data
  llv = robustness.local_lipschitz_value(target(model, batch_size=2), images[:3], labels[:3])
  norms = []
  for x, y in zip(images[:3], labels[:3]):
    loss = lambda x: -jax.nn.log_softmax(model.classify(x[None])[0])[y]
    norms.append(float(jnp.linalg.norm(jax.grad(loss)(transforms.to_float(x)))))
  assert llv == pytest.approx(np.mean(norms), rel=1e-4)


def test_step_size_factor_of_an_attack_config(tiny_config):
  assert robustness.step_size_factor(tiny_config.eval.attack) == pytest.approx(0.2)
  tiny_config.eval.attack.epsilon = 0.0
  with pytest.raises(ValueError, match='eval.attack.epsilon must be > 0'):
    robustness.step_size_factor(tiny_config.eval.attack)
