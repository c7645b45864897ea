"""Tests of rob_gan_jax.evaluate, robustness (--mode=eval) and the notebook API."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from rob_gan_jax import api
from rob_gan_jax import evaluate
from rob_gan_jax import input_pipeline
from rob_gan_jax import robustness
from rob_gan_jax import train


@pytest.fixture(scope='module')
def model_and_data(trained_workdir):
  model = api.load(trained_workdir)
  config = model.config
  images, labels = input_pipeline.load_split(config.dataset, 'test', image_size=32,
                                             num_classes=10)
  return model, images, labels


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


def test_zero_epsilon_gives_plain_accuracy(model_and_data):
  model, images, labels = model_and_data
  plain = float(np.mean(np.asarray(model.predict(images)) == labels))
  accuracy = evaluate.accuracy_under_attack(
      model.discriminator, model.discriminator_variables, images, labels, epsilon=0.0,
      step_size=0.0, num_steps=20, key=jax.random.PRNGKey(0), batch_size=8)
  assert accuracy == plain


def test_accuracy_is_non_increasing_in_epsilon_and_restarts_never_help(model_and_data):
  model, images, labels = model_and_data
  kwargs = dict(epsilons=[0.0, 0.02, 0.05, 0.1, 0.3], step_size_factor=0.25, num_steps=3,
                key=jax.random.PRNGKey(1), batch_size=8)
  curve = evaluate.accuracy_curve(model.discriminator, model.discriminator_variables, images,
                                  labels, **kwargs)
  assert all(a >= b for a, b in zip(curve, curve[1:]))
  with_restarts = evaluate.accuracy_curve(model.discriminator, model.discriminator_variables,
                                          images, labels, num_restarts=3, **kwargs)
  assert all(r <= a for r, a in zip(with_restarts, curve))


def test_local_lipschitz_value_is_mean_input_gradient_norm(model_and_data):
  model, images, labels = model_and_data
  llv = evaluate.local_lipschitz_value(model.discriminator, model.discriminator_variables,
                                       images[:3], labels[:3], batch_size=2)
  norms = []
  for x, y in zip(images[:3], labels[:3]):
    loss = lambda x: -jax.nn.log_softmax(model.classify(x[None])[0])[y]
    norms.append(float(jnp.linalg.norm(jax.grad(loss)(input_pipeline.to_float(x)))))
  assert llv == pytest.approx(np.mean(norms), rel=1e-4)


def eval_config(workdir):
  config = api.load(workdir).config
  config.eval.epsilons = [0.0, 0.05]
  config.eval.num_steps = 2
  config.eval.train_num_examples = 8
  return config


def test_eval_mode_writes_results_table_and_plots(trained_workdir):
  config = eval_config(trained_workdir)
  result = robustness.evaluate_robustness(config, trained_workdir)
  with open(os.path.join(trained_workdir, 'eval', 'robustness.json')) as f:
    saved = json.load(f)
  assert saved == result
  assert saved['stage'] == 'finetune' and saved['epsilons'] == [0.0, 0.05]
  assert len(saved['test_accuracy']) == len(saved['train_accuracy']) == 2
  assert saved['num_test_examples'] == 20 and saved['num_train_examples'] == 8
  assert saved['llv_train'] > 0 and saved['llv_test'] > 0
  for name in ('accuracy_vs_epsilon.png', 'local_lipschitz.png'):
    assert os.path.getsize(os.path.join(trained_workdir, 'eval', name)) > 1000
  config.eval.stage = 'cotrain'
  assert robustness.evaluate_robustness(config, trained_workdir)['stage'] == 'cotrain'


@pytest.mark.parametrize('field, value, error, match', [
    ('epsilons', [0.0, -0.01], ValueError, 'epsilon'),
    ('step_size_factor', 0.0, ValueError, 'step_size'),
    ('split', 'validation', ValueError, 'validation'),
    ('stage', 'best', ValueError, 'stage'),
])
def test_bad_eval_input_raises(trained_workdir, field, value, error, match):
  config = eval_config(trained_workdir)
  config.eval[field] = value
  with pytest.raises(error, match=match):
    robustness.evaluate_robustness(config, trained_workdir)


def test_eval_without_checkpoint_or_with_other_architecture_raises(trained_workdir, tmp_path):
  config = eval_config(trained_workdir)
  with pytest.raises(FileNotFoundError, match='config.json'):
    robustness.evaluate_robustness(config, str(tmp_path))
  config.model.discriminator_width = 8
  with pytest.raises(ValueError, match='another architecture'):
    robustness.evaluate_robustness(config, trained_workdir)
  empty = tiny.get_config()
  train.checkpoints.check_and_write_config(empty, str(tmp_path / 'empty'))
  with pytest.raises(FileNotFoundError, match='no co-training checkpoint'):
    robustness.evaluate_robustness(empty, str(tmp_path / 'empty'))
