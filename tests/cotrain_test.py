"""Tests of rob_gan_jax.cotrain: data parallelism, resumption, end-to-end runs, bad input."""

import functools
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from rob_gan_jax import cotrain
from rob_gan_jax import models
from rob_gan_jax import parallel
from rob_gan_jax import state as state_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_per_device(fn, mesh, state, *batch):
  sharded = jax.shard_map(fn, mesh=mesh, in_specs=(P(),) + (P(parallel.AXIS),) * len(batch),
                          out_specs=(P(), P()), check_vma=False)
  return jax.jit(sharded)(state, *batch)


@pytest.mark.parametrize('step', ['discriminator', 'generator'])
def test_step_on_4_devices_equals_1_device(tiny_config, step):
  assert jax.device_count() == 4
  config = tiny_config
  # With tiny's 8-channel D, some BatchNorm channels have a near-zero batch variance, which
  # amplifies float rounding (different for 8 or 2 examples a device) to percent-level gradient
  # differences; 32 channels keep the comparison well conditioned.
  config.model.discriminator_width = 16
  generator, discriminator = models.create_models(config.model, axis_name=parallel.AXIS)
  state = state_lib.create_gan_state(config, generator, discriminator, num_train_examples=40)
  # SGD with lr 1 makes the update the gradient itself. (Adam's first step is lr * sign(grad),
  # which blows float noise up on biases that feed BatchNorm, whose true gradient is 0.)
  sgd = lambda m: m.replace(tx=optax.sgd(1.0), opt_state=optax.sgd(1.0).init(m.params))
  state = state.replace(generator=sgd(state.generator), discriminator=sgd(state.discriminator))
  key = jax.random.PRNGKey(5)
  b = config.train.batch_size
  x = jax.random.uniform(key, (b, 32, 32, 3), minval=-1, maxval=1)
  y = jnp.arange(b) % 10
  z = jax.random.normal(key, (b, config.model.z_dim))
  if step == 'discriminator':
    keys = jnp.tile(key, (b, 1))  # Unused (no random start); sharded like the batch.
    fn = lambda s, x, y, z, yf, k: cotrain.discriminator_step(
        s, x, y, z, yf, k[0], generator=generator, discriminator=discriminator,
        attack_config=config.attack, loss_type='split')
    batch = (x, y, z, y[::-1], keys)
  else:
    fn = functools.partial(cotrain.generator_step, generator=generator,
                           discriminator=discriminator)
    batch = (z, y)
  results = [run_per_device(fn, parallel.make_mesh(jax.devices()[:n]), state, *batch)
             for n in (1, 4)]
  (state1, metrics1), (state4, metrics4) = results
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-5),
               metrics1, metrics4)
  for name in ('generator', 'discriminator'):
    jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-4),
                 getattr(state1, name).variables, getattr(state4, name).variables)
  changed = 'discriminator' if step == 'discriminator' else 'generator'
  before = jax.tree.leaves(getattr(state, changed).params)
  after = jax.tree.leaves(getattr(state4, changed).params)
  assert any(not np.allclose(a, b) for a, b in zip(before, after))


def test_resume_equals_uninterrupted_run(tiny_config, tmp_path):
  tiny_config.train.num_steps = 4
  tiny_config.train.checkpoint_every_steps = 2
  straight = cotrain.train_and_evaluate(tiny_config, str(tmp_path / 'straight'))
  tiny_config.train.num_steps = 2
  cotrain.train_and_evaluate(tiny_config, str(tmp_path / 'resumed'))
  tiny_config.train.num_steps = 4
  resumed = cotrain.train_and_evaluate(tiny_config, str(tmp_path / 'resumed'))
  assert int(resumed.step) == int(straight.step) == 4
  for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed), strict=True):
    np.testing.assert_array_equal(a, b)
  assert sorted(os.listdir(tmp_path / 'resumed' / 'samples')) == [
      'step_0000002.png', 'step_0000004.png']


def test_main_trains_and_writes_checkpoints_and_samples(image_folder, tmp_path):
  workdir = tmp_path / 'run'
  result = subprocess.run(
      [sys.executable, 'main.py', '--config=configs/tiny.py', f'--workdir={workdir}',
       f'--config.dataset.image_folder={image_folder}', '--config.train.num_steps=2'],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert os.listdir(workdir / 'checkpoints') == ['2']
  assert os.listdir(workdir / 'samples') == ['step_0000002.png']
  assert any(f.startswith('events.out.tfevents') for f in os.listdir(workdir))
  assert 'test_accuracy_pgd' in result.stderr


def test_main_rejects_unknown_config_key(tmp_path):
  result = subprocess.run(
      [sys.executable, 'main.py', '--config=configs/tiny.py', f'--workdir={tmp_path}',
       '--config.train.num_stepz=2'], cwd=REPO, capture_output=True, text=True, timeout=120)
  assert result.returncode != 0 and 'num_stepz' in result.stderr


def test_config_files_are_locked():
  from configs import default  # pylint: disable=g-import-not-at-top
  with pytest.raises(AttributeError):
    default.get_config().attack.epsiIon = 0.1


@pytest.mark.parametrize('field, value, match', [
    ('attack.epsilon', -0.01, 'epsilon'),
    ('attack.step_size', 0.0, 'step_size'),
    ('train.loss', 'hinge', 'train.loss'),
    ('train.batch_size', 6, 'divide'),
    ('train.n_dis', 0, 'n_dis'),
])
def test_bad_configs_raise_before_compute(tiny_config, tmp_path, field, value, match):
  group, name = field.split('.')
  tiny_config[group][name] = value
  with pytest.raises(ValueError, match=match):
    cotrain.train_and_evaluate(tiny_config, str(tmp_path))
  assert not os.path.exists(tmp_path / 'checkpoints')


def test_missing_dataset_raises(tiny_config, tmp_path):
  tiny_config.dataset.image_folder = str(tmp_path / 'missing')
  with pytest.raises(FileNotFoundError, match='image_folder'):
    cotrain.train_and_evaluate(tiny_config, str(tmp_path / 'run'))
