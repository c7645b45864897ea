"""Tests of rob_gan_jax.finetune: eq. 10 by hand, resumption, the Madry baseline, bad input."""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import main
from configs import cifar10_madry
from rob_gan_jax import api
from rob_gan_jax import attacks
from rob_gan_jax import checkpoints
from rob_gan_jax import finetune
from rob_gan_jax import models
from rob_gan_jax import parallel
from rob_gan_jax import state as state_lib


def log_softmax_ce(logits, labels):
  logits = np.asarray(logits, np.float64)
  logz = np.log(np.sum(np.exp(logits - logits.max(1, keepdims=True)), 1)) + logits.max(1)
  return np.mean(logz - logits[np.arange(len(labels)), labels])


def test_classifier_step_loss_is_eq10_by_hand(tiny_config):
  config = tiny_config
  config.finetune.fake_weight = 0.3
  generator, discriminator = models.create_models(config.model, axis_name=parallel.AXIS)
  gan = state_lib.create_gan_state(config, generator, discriminator, 40)
  state = state_lib.create_classifier_state(config, discriminator, 40)
  key = jax.random.PRNGKey(3)
  x = jax.random.uniform(key, (4, 32, 32, 3), minval=-1, maxval=1)
  y, y_fake = jnp.array([0, 1, 2, 3]), jnp.array([5, 6, 7, 8])
  z = jax.random.normal(key, (4, config.model.z_dim))
  step = jax.jit(jax.shard_map(
      lambda s, g, *b: finetune.classifier_step(s, g, *b, generator=generator,
                                                discriminator=discriminator,
                                                finetune_config=config.finetune),
      mesh=parallel.make_mesh(jax.devices()[:1]), in_specs=(P(),) * 7, out_specs=(P(), P()),
      check_vma=False))
  _, metrics = step(state, gan.generator.variables, x, y, z, y_fake, key)

  # By hand: attack both batches on the class CE with D in inference mode, then score them
  # with D in training mode (each batch with its own statistics).
  d_vars = state.discriminator.variables
  a = config.finetune.attack
  ce = lambda x, y: -jnp.mean(jax.nn.log_softmax(
      discriminator.apply(d_vars, x, train=False)[1])[jnp.arange(4), y])
  adv = lambda x, y: attacks.pgd_linf(ce, x, y, epsilon=a.epsilon, step_size=a.step_size,
                                      num_steps=a.num_steps)
  x_fake = generator.clone(axis_name=None).apply(gan.generator.variables, z, y_fake, train=True,
                                                 mutable=['batch_stats'])[0]
  d_train = discriminator.clone(axis_name=None)
  logits_real = d_train.apply(d_vars, adv(x, y), train=True, mutable=['batch_stats'])[0][1]
  logits_fake = d_train.apply(d_vars, adv(x_fake, y_fake), train=True,
                              mutable=['batch_stats'])[0][1]
  expected = log_softmax_ce(logits_real, y) + 0.3 * log_softmax_ce(logits_fake, y_fake)
  assert float(metrics['loss']) == pytest.approx(expected, rel=1e-4)


def test_finetune_resumes_exactly_and_keeps_its_own_checkpoints(trained_workdir, tiny_config,
                                                                 tmp_path):
  config = tiny_config
  config.finetune.stage_epochs = (0.4, 0.4)  # Batch 8, 5 steps an epoch: 2 + 2 steps.
  config.finetune.checkpoint_every_steps = 2
  config.finetune.init_workdir = trained_workdir
  straight = finetune.train_classifier(config, str(tmp_path / 'straight'))
  assert int(straight.step) == 4
  assert sorted(os.listdir(tmp_path / 'straight' / 'finetune' / 'checkpoints')) == ['2', '4']
  # A run killed after its checkpoint at step 2 resumes from there.
  shutil.copytree(tmp_path / 'straight', tmp_path / 'killed')
  shutil.rmtree(tmp_path / 'killed' / 'finetune' / 'checkpoints' / '4')
  resumed = finetune.train_classifier(config, str(tmp_path / 'killed'))
  for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed), strict=True):
    np.testing.assert_array_equal(a, b)
  # D started from the co-trained D; the co-training checkpoints are untouched.
  assert os.listdir(checkpoints.checkpoint_dir(trained_workdir, 'cotrain')) == ['2']


def test_madry_baseline_trains_a_classifier_only(image_folder, tmp_path):
  config = cifar10_madry.get_config()
  tiny = __import__('configs.tiny', fromlist=['get_config']).get_config()
  config.model = tiny.model
  config.dataset.image_folder = image_folder
  config.finetune.batch_size = 8
  config.finetune.stage_epochs = (0.4,)
  config.finetune.eval_num_examples = 8
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


def test_finetune_without_cotraining_checkpoint_raises(tiny_config, tmp_path):
  with pytest.raises(FileNotFoundError, match='--mode=train first'):
    finetune.train_classifier(tiny_config, str(tmp_path))


@pytest.mark.parametrize('field, value, match', [
    ('attack.epsilon', -0.1, 'finetune.attack.epsilon'),
    ('attack.step_size', 0.0, 'finetune.attack.step_size'),
    ('fake_weight', -1.0, 'fake_weight'),
    ('num_steps', 0, 'finetune.num_steps'),
    ('batch_size', 6, 'divide'),
])
def test_bad_finetune_configs_raise(tiny_config, tmp_path, field, value, match):
  group = tiny_config.finetune
  *path, name = field.split('.')
  for part in path:
    group = group[part]
  group[name] = value
  with pytest.raises(ValueError, match=match):
    finetune.train_classifier(tiny_config, str(tmp_path))
