"""Tests of rob_gan_jax.finetune: eq. 10 by hand, resumption, the Madry baseline, bad input."""

import json
import os
import re
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.special
from jax.sharding import PartitionSpec as P

import main
from configs import cifar10_madry
from rob_gan_jax import api
from rob_gan_jax import checkpoints
from rob_gan_jax import cotrain
from rob_gan_jax import finetune
from rob_gan_jax import models
from rob_gan_jax import parallel
from rob_gan_jax import state as state_lib
from rob_gan_jax import task as task_lib
from rob_gan_jax import workdir as workdir_lib
from rob_gan_jax.attacks import pgd

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log_softmax_ce(logits, labels):
  logits = np.asarray(logits, np.float64)
  logz = np.log(np.sum(np.exp(logits - logits.max(1, keepdims=True)), 1)) + logits.max(1)
  return np.mean(logz - logits[np.arange(len(labels)), labels])


def classifier_step_on(devices, config, generator, discriminator):
  """`finetune.classifier_step` jitted under shard_map on `devices`, the batch split over them."""
  settings = finetune.Settings.from_config(config, generator, discriminator)
  return jax.jit(jax.shard_map(
      lambda s, *b: finetune.classifier_step(s, *b, settings=settings),
      mesh=parallel.make_mesh(devices), in_specs=(P(),) + (P(parallel.AXIS),) * 6,
      out_specs=(P(), P()), check_vma=False))


@pytest.mark.parametrize('train_mode', [pytest.param(False, marks=pytest.mark.slow), True])
def test_classifier_step_loss_is_eq10_by_hand(tiny_config, train_mode):
  config = tiny_config
  config.finetune.fake_weight = 0.3
  config.finetune.discriminator_train_mode = train_mode
  generator, discriminator = models.create_models(config.model, axis_name=parallel.AXIS)
  gan = state_lib.create_gan_state(config, generator, discriminator, 40)
  # Running statistics far from the batches' (as after co-training), so the modes differ.
  d_vars = gan.discriminator.variables
  d_vars = {**d_vars, 'batch_stats': jax.tree_util.tree_map_with_path(
      lambda path, v: jnp.full_like(v, 0.2 if path[-1].key == 'mean' else 3.0),
      d_vars['batch_stats'])}
  state = state_lib.create_classifier_state(
      config, task_lib.Task.from_config(config), generator, discriminator, 40, checkpoints.Weights(
          config=config, stage='cotrain', step=2, generator=gan.generator.variables,
          discriminator=d_vars))
  key = jax.random.PRNGKey(3)
  x = jax.random.uniform(key, (4, 32, 32, 3), minval=-1, maxval=1)
  y, y_fake = jnp.array([0, 1, 2, 3]), jnp.array([5, 6, 7, 8])
  z = jax.random.normal(key, (4, config.model.z_dim))
  keys = jax.random.split(key, 4)  # Unused: no random start.
  step = classifier_step_on(jax.devices()[:1], config, generator, discriminator)
  new_state, metrics = step(state, x, y, z, y_fake, keys, keys)

  # By hand: attack both batches on the class CE with D in inference mode, then score them with
  # D in inference mode (official: running statistics, never updated) or in training mode (each
  # batch with its own statistics, both passes updating the running ones).
  a = config.finetune.attack
  ce = lambda x, y: -jnp.mean(jax.nn.log_softmax(
      discriminator.apply(d_vars, x, train=False)[1])[jnp.arange(4), y])
  adv = lambda x, y: pgd.pgd_linf(ce, x, y, epsilon=a.epsilon, step_size=a.step_size,
                                      num_steps=a.num_steps)
  x_fake = generator.clone(axis_name=None).apply(gan.generator.variables, z, y_fake, train=True,
                                                 mutable=['batch_stats'])[0]
  d_local = discriminator.clone(axis_name=None)
  if train_mode:
    (_, logits_real), updates = d_local.apply(d_vars, adv(x, y), train=True,
                                              mutable=['batch_stats'])
    (_, logits_fake), updates = d_local.apply({**d_vars, **updates}, adv(x_fake, y_fake),
                                              train=True, mutable=['batch_stats'])
    expected_stats = updates['batch_stats']
  else:
    logits_real = d_local.apply(d_vars, adv(x, y), train=False)[1]
    logits_fake = d_local.apply(d_vars, adv(x_fake, y_fake), train=False)[1]
    expected_stats = d_vars['batch_stats']
  expected = log_softmax_ce(logits_real, y) + 0.3 * log_softmax_ce(logits_fake, y_fake)
  assert float(metrics['loss']) == pytest.approx(expected, rel=1e-4)
  predicted = np.argmax(logits_real, -1)
  assert float(metrics['max_class_share']) == np.max(np.bincount(predicted)) / 4
  p = scipy.special.softmax(np.asarray(logits_real, np.float64), -1)
  entropy = lambda q: np.sum(scipy.special.entr(q), -1)
  information = (entropy(p.mean(0)) - np.mean(entropy(p))) / np.log(10)
  assert float(metrics['prediction_information']) == pytest.approx(information, abs=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               new_state.discriminator.batch_stats, expected_stats)


def test_classifier_step_with_random_start_on_4_devices_equals_1_device(tiny_config):
  assert jax.device_count() == 4
  config = tiny_config
  config.finetune.attack.random_start = True
  generator, discriminator = models.create_models(config.model, axis_name=parallel.AXIS)
  state = state_lib.create_classifier_state(config, task_lib.Task.from_config(config), generator,
                                            discriminator, 40)
  # SGD with lr 1: the update is the gradient itself (see cotrain_test).
  sgd = optax.sgd(1.0)
  state = state.replace(discriminator=state.discriminator.replace(
      tx=sgd, opt_state=sgd.init(state.discriminator.params)))
  key = jax.random.PRNGKey(6)
  x = jax.random.uniform(key, (8, 32, 32, 3), minval=-1, maxval=1)
  y = jnp.arange(8) % 10
  z = jax.random.normal(key, (8, config.model.z_dim))
  real_keys, fake_keys = jax.random.split(key, (2, 8))
  (state1, metrics1), (state4, metrics4) = [
      classifier_step_on(jax.devices()[:n], config, generator, discriminator)(
          state, x, y, z, y[::-1], real_keys, fake_keys)
      for n in (1, 4)]
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
               metrics1, metrics4)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4),
               state1.discriminator.variables, state4.discriminator.variables)


@pytest.mark.slow  # Co-training's resume test, in the fast lane, runs the same loop.
def test_finetune_resumes_exactly_and_keeps_its_own_checkpoints(trained_workdir, tiny_config,
                                                                 tmp_path):
  config = tiny_config
  config.finetune.stage_epochs = (0.4, 0.4)  # Batch 8, 5 steps an epoch: 2 + 2 steps.
  config.finetune.checkpoint_every_steps = 2
  config.finetune.init_workdir = trained_workdir
  straight = finetune.train_classifier(config, task_lib.Task.from_config(config), str(tmp_path / 'straight'))
  assert int(straight.step) == 4
  # The start it is compared with at the end: the co-trained D's test accuracy.
  with open(tmp_path / 'straight' / 'finetune' / 'start_accuracy.json') as f:
    start = json.load(f)
  model = api.load(trained_workdir, 'cotrain')
  images, labels = model.load_data('test', config.evals.pgd_accuracy.finetune_num_examples)
  assert start['test_accuracy_clean'] == np.mean(np.asarray(model.predict(images)) == labels)
  assert sorted(os.listdir(tmp_path / 'straight' / 'finetune' / 'checkpoints')) == ['2', '4']
  # A run killed after its checkpoint at step 2 resumes from there.
  shutil.copytree(tmp_path / 'straight', tmp_path / 'killed')
  shutil.rmtree(tmp_path / 'killed' / 'finetune' / 'checkpoints' / '4')
  resumed = finetune.train_classifier(config, task_lib.Task.from_config(config), str(tmp_path / 'killed'))
  for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed), strict=True):
    np.testing.assert_array_equal(a, b)
  # D started from the co-trained D; the co-training checkpoints are untouched.
  assert os.listdir(workdir_lib.checkpoint_dir(trained_workdir, 'cotrain')) == ['2']


@pytest.mark.slow  # End-to-end runs of both stages.
def test_finetune_keeps_the_generator_it_started_with(trained_workdir, tiny_config, tmp_path):
  """Co-training that continues after fine-tuning started changes neither the resumed
  fine-tuning's G nor the G that load_weights pairs with the fine-tuned D."""
  workdir = str(tmp_path / 'run')
  shutil.copytree(trained_workdir, workdir)
  shutil.rmtree(os.path.join(workdir, 'finetune'))
  config = tiny_config
  config.train.num_steps = 2
  config.finetune.stage_epochs = (0.2, 0.2)  # As trained_workdir: 1 + 1 steps.
  config.finetune.num_steps = 1
  finetune.train_classifier(config, task_lib.Task.from_config(config), workdir)
  g_before = workdir_lib.load_weights(workdir, 'cotrain').generator
  config.train.num_steps = 3
  cotrain.train_and_evaluate(config, task_lib.Task.from_config(config), workdir)  # Co-training goes on to step 3.
  config.finetune.num_steps = 2
  state = finetune.train_classifier(config, task_lib.Task.from_config(config), workdir)
  assert int(state.generator_step) == 2
  g_after = workdir_lib.load_weights(workdir, 'cotrain').generator
  assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(g_before),
                                                     jax.tree.leaves(g_after)))
  jax.tree.map(np.testing.assert_array_equal, state.generator, g_before)
  jax.tree.map(np.testing.assert_array_equal,
               workdir_lib.load_weights(workdir, 'finetune').generator, g_before)


def test_diverging_finetuning_stops_and_saves_no_non_finite_state(trained_workdir, tiny_config,
                                                                  tmp_path):
  """Resumed at lr 1e30 from its step-2 checkpoint: the run stops, and that checkpoint stays the
  last one."""
  workdir = str(tmp_path / 'workdir')
  shutil.copytree(trained_workdir, workdir)
  config = tiny_config
  config.finetune.stage_epochs = (0.2, 1.4)  # The fixture's 1 + 1 steps, then 6 more.
  config.finetune.learning_rate = 1e30
  config.allow_changes = ('finetune',)
  with pytest.raises(FloatingPointError, match='non-finite.*last good checkpoint is step 2'):
    finetune.train_classifier(config, task_lib.Task.from_config(config), workdir)
  manager = checkpoints.manager(workdir_lib.checkpoint_dir(workdir, 'finetune'))
  assert list(manager.all_steps()) == [2]
  assert not checkpoints.non_finite_arrays(manager.restore(2))


def test_madry_baseline_trains_a_classifier_only(image_folder, tmp_path):
  config = cifar10_madry.get_config()
  tiny = __import__('configs.tiny', fromlist=['get_config']).get_config()
  config.model = tiny.model
  config.dataset.image_folder = image_folder
  config.finetune.batch_size = 8
  config.finetune.stage_epochs = (0.4,)
  config.evals.pgd_accuracy.finetune_num_examples = 8
  config.eval.attack.num_steps = 2
  state = main.run(config, str(tmp_path), 'train')
  assert int(state.step) == 2
  assert os.listdir(tmp_path / 'madry' / 'checkpoints') == ['2']
  model = api.load(str(tmp_path))
  assert model.stage == 'madry' and model.generator is None
  assert model.classify(np.zeros((2, 32, 32, 3), np.uint8)).shape == (2, 10)
  with pytest.raises(ValueError, match='no generator'):
    model.sample(jnp.arange(2))
  with pytest.raises(ValueError, match='--mode=train'):
    main.run(config, str(tmp_path), 'finetune')
  config.finetune.recalibrate_batch_norm = 'clean'
  with pytest.raises(ValueError, match='random D, which has no statistics to recalibrate'):
    finetune.validate_config(config, task_lib.Task.from_config(config))


def test_finetune_without_cotraining_checkpoint_raises_and_writes_nothing(tiny_config, tmp_path):
  with pytest.raises(FileNotFoundError, match='--mode=train first'):
    finetune.train_classifier(tiny_config, task_lib.Task.from_config(tiny_config), str(tmp_path))
  assert not os.listdir(tmp_path)


@pytest.mark.parametrize('field, value, match', [
    ('attack.epsilon', -0.1, 'finetune.attack.epsilon'),
    ('attack.step_size', 0.0, 'finetune.attack.step_size'),
    ('fake_weight', -1.0, 'fake_weight'),
    ('num_steps', 0, 'finetune.num_steps'),
    ('batch_size', 6, 'divide'),
    ('recalibrate_batch_norm', 'sometimes', 'finetune.recalibrate_batch_norm must be one of'),
    ('recalibration_examples', 4, 'recalibration_examples \\(4\\) must be at least'),
    ('collapse_guard.patience', -1, 'finetune.collapse_guard.patience must be >= 0'),
    ('collapse_guard.min_information', 1.5, 'min_information must be in \\[0, 1\\]'),
])
def test_bad_finetune_configs_raise(tiny_config, tmp_path, field, value, match):
  tiny_config.finetune.recalibrate_batch_norm = 'clean'
  group = tiny_config.finetune
  *path, name = field.split('.')
  for part in path:
    group = group[part]
  group[name] = value
  with pytest.raises(ValueError, match=match):
    finetune.train_classifier(tiny_config, task_lib.Task.from_config(tiny_config), str(tmp_path))


@pytest.mark.slow
def test_a_collapsing_finetuning_run_exits_non_zero_and_keeps_its_last_good_checkpoint(
    trained_workdir, image_folder, tmp_path):
  # In the official mode at learning rate 0.1 the tiny D's classifier soon ignores its input.
  result = subprocess.run(
      [sys.executable, 'main.py', '--config=configs/tiny.py', f'--workdir={tmp_path}',
       '--mode=finetune', f'--config.dataset.image_folder={image_folder}',
       f'--config.finetune.init_workdir={trained_workdir}', '--config.finetune.learning_rate=0.1',
       '--config.finetune.discriminator_train_mode=False',
       '--config.finetune.num_steps=40', '--config.finetune.collapse_guard.patience=3'],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 1, result.stderr[-3000:]
  message = re.search(r'ClassifierCollapseError: (.*)', result.stderr).group(1)
  steps = [int(s) for s in re.findall(r'at step (\d+)', message)]
  assert len(steps) == 3 and steps[-1] < 40
  kept = int(re.search(r'last good checkpoint is step (\d+)', message).group(1))
  directory = workdir_lib.checkpoint_dir(str(tmp_path), 'finetune')
  assert sorted(map(int, checkpoints.manager(directory).all_steps()))[-1] == kept < steps[0]
  assert workdir_lib.load_weights(str(tmp_path), 'finetune').step == kept
  assert 'finetune.recalibrate_batch_norm' in message


@pytest.mark.slow
def test_a_classifier_ending_on_one_class_fails_the_run_whatever_it_started_from(
    trained_workdir, image_folder, tmp_path):
  """configs/tiny.py fine-tuned 60 updates at learning rate 0.1 in inference mode gives every test
  image one class from step 10 on: an error naming the collapse and the start, not a silent exit
  0. (In training mode the 16 test images' share can end just under the bound.)"""
  result = subprocess.run(
      [sys.executable, 'main.py', '--config=configs/tiny.py', f'--workdir={tmp_path}',
       '--mode=finetune', f'--config.dataset.image_folder={image_folder}',
       f'--config.finetune.init_workdir={trained_workdir}', '--config.finetune.learning_rate=0.1',
       '--config.finetune.discriminator_train_mode=False',
       '--config.finetune.num_steps=60', '--config.finetune.log_every_steps=20',
       '--config.finetune.collapse_guard.patience=1000'],  # Judged at the last step only.
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 1, result.stderr[-3000:]
  message = re.search(r'ClassifierCollapseError: (.*)', result.stderr).group(1)
  assert re.search(r'(max_class_share|prediction_information) was ', message), message
  assert re.findall(r'at step (\d+)', message)[-1] == '60', message
  assert 'When fine-tuning started, its test_max_class_share was' in message
