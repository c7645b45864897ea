"""Tests of rob_gan_jax.cotrain: data parallelism, resumption, end-to-end runs, bad input."""

import functools
import os
import re
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from rob_gan_jax import checkpoints
from rob_gan_jax import cotrain
from rob_gan_jax import models
from rob_gan_jax import parallel
from rob_gan_jax import state as state_lib
from rob_gan_jax import workdir as workdir_lib
from rob_gan_jax import task as task_lib
from tests.conftest import assert_same_networks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def settings_of(config, generator, discriminator):
  """The step settings of `config` for these modules."""
  return cotrain.Settings.from_config(config, task_lib.Task.from_config(config), generator,
                                      discriminator)


def run_per_device(fn, mesh, state, *batch):
  sharded = jax.shard_map(fn, mesh=mesh, in_specs=(P(),) + (P(parallel.AXIS),) * len(batch),
                          out_specs=(P(), P()), check_vma=False)
  return jax.jit(sharded)(state, *batch)


@pytest.mark.parametrize('method, step, random_start', [
    pytest.param('robgan', 'discriminator', False, marks=pytest.mark.slow),
    ('robgan', 'discriminator', True),
    pytest.param('robgan', 'generator', False, marks=pytest.mark.slow),
    pytest.param('asgan', 'discriminator', False, marks=pytest.mark.slow),
    pytest.param('asgan', 'generator', False, marks=pytest.mark.slow)])
def test_step_on_4_devices_equals_1_device(tiny_config, tiny_asgan_config, method, step,
                                           random_start):
  assert jax.device_count() == 4
  config = tiny_config if method == 'robgan' else tiny_asgan_config
  config.attack.random_start = random_start
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
  settings = settings_of(config, generator, discriminator)
  if step == 'discriminator':
    fn = functools.partial(cotrain.discriminator_step, settings=settings)
    # Per-example keys of the random start, split like the batch.
    batch = (x, y, z, y[::-1], jax.random.split(key, b))
  else:
    fn = functools.partial(cotrain.generator_step, settings=settings)
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


def with_running_stats(batch_stats, mean, var):
  """BatchNorm statistics with every running mean `mean` and every running variance `var`."""
  return jax.tree_util.tree_map_with_path(
      lambda path, v: jnp.full_like(v, mean if path[-1].key == 'mean' else var), batch_stats)


def layer_outputs(module, variables, *inputs):
  """Outputs of every sub-module of `module` applied in training mode on one device."""
  _, state = module.clone(axis_name=None).apply(
      variables, *inputs, train=True, mutable=['batch_stats', 'intermediates'],
      capture_intermediates=True)
  return state['intermediates']


def updated(old, momentum, bn_input):
  """Running (mean, var) after one training pass: m * old + (1 - m) * the batch's (biased)
  per-channel moments of the (B, H, W, C) input, in float64."""
  h = np.asarray(bn_input, np.float64)
  return (momentum * old[0] + (1 - momentum) * h.mean((0, 1, 2)),
          momentum * old[1] + (1 - momentum) * h.var((0, 1, 2)))


def assert_running_stats(stats, expected):
  np.testing.assert_allclose(stats['mean'], expected[0], rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(stats['var'], expected[1], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('keep', [True, pytest.param(False, marks=pytest.mark.slow)])
def test_running_statistics_after_one_step_by_hand(tiny_config, keep):
  # Official train.py: the D step's pass through G (train mode) updates G's statistics, with the
  # official conditional-BN momentum (running = 0.1 old + 0.9 batch); the G step's pass through D
  # updates D's. The D step's two passes (adversarial, fake) each update D's.
  config = tiny_config
  config.train.keep_all_bn_updates = keep
  config.attack.num_steps = 0  # x_adv = x, so D's input is known.
  generator, discriminator = models.create_models(config.model, axis_name=parallel.AXIS)
  state = state_lib.create_gan_state(config, generator, discriminator, num_train_examples=40)
  state = state.replace(
      generator=state.generator.replace(
          batch_stats=with_running_stats(state.generator.batch_stats, 0.5, 2.0)),
      discriminator=state.discriminator.replace(
          batch_stats=with_running_stats(state.discriminator.batch_stats, -0.2, 3.0)))
  key = jax.random.PRNGKey(7)
  x = jax.random.uniform(key, (8, 32, 32, 3), minval=-1, maxval=1)
  y = jnp.arange(8) % 10
  z = jax.random.normal(key, (8, config.model.z_dim))
  mesh = parallel.make_mesh(jax.devices()[:1])
  settings = settings_of(config, generator, discriminator)
  d_state, _ = run_per_device(functools.partial(cotrain.discriminator_step, settings=settings),
                              mesh, state, x, y, z, y[::-1], jax.random.split(key, 8))
  g_state, _ = run_per_device(functools.partial(cotrain.generator_step, settings=settings),
                              mesh, state, z, y)

  # G's pass in the D step, on (z, y[::-1]).
  g_outputs = layer_outputs(generator, state.generator.variables, z, y[::-1])
  width = config.model.generator_channel_multipliers[0] * config.model.generator_width
  bottom = config.model.bottom_width
  first_bn_input = np.transpose(np.reshape(g_outputs['linear']['__call__'][0],
                                           (8, width, bottom, bottom)), (0, 2, 3, 1))
  last_block = f'block{len(config.model.generator_channel_multipliers) - 1}'
  g_stats = d_state.generator.batch_stats
  for bn_input, stats, momentum in (
      (first_bn_input, g_stats['block1']['bn1']['BatchNorm_0'], 0.1),
      (g_outputs[last_block]['__call__'][0], g_stats['bn_out'], 0.9)):
    assert_running_stats(stats, updated((0.5, 2.0), momentum, bn_input) if keep else (0.5, 2.0))

  # D's first BatchNorm: in the D step the adversarial (= real) pass, then the fake pass.
  conv1 = lambda images: layer_outputs(discriminator, state.discriminator.variables,
                                       images)['block1']['conv1']['__call__'][0]
  x_fake = g_outputs['__call__'][0]
  assert_running_stats(d_state.discriminator.batch_stats['block1']['conv1_bn'],
                       updated(updated((-0.2, 3.0), 0.9, conv1(x)), 0.9, conv1(x_fake)))

  # D's first BatchNorm after the G step: G's pass on (z, y), then D's on its images.
  x_fake = layer_outputs(generator, state.generator.variables, z, y)['__call__'][0]
  assert_running_stats(g_state.discriminator.batch_stats['block1']['conv1_bn'],
                       updated((-0.2, 3.0), 0.9, conv1(x_fake)) if keep else (-0.2, 3.0))


@pytest.mark.slow  # Compiles the train step twice, with two settings.
def test_bfloat16_discriminator_step_is_close_to_float32(tiny_config, tmp_path):
  config = tiny_config
  # One float32 state (the variables are float32 whatever model.dtype).
  state = state_lib.create_gan_state(config, *models.create_models(config.model),
                                     num_train_examples=40)
  key = jax.random.PRNGKey(7)
  x = jax.random.uniform(key, (8, 32, 32, 3), minval=-1, maxval=1)
  y = jnp.arange(8) % 10
  z = jax.random.normal(key, (8, config.model.z_dim))
  mesh = parallel.make_mesh(jax.devices()[:1])
  results = {}
  for dtype in ('float32', 'bfloat16'):
    config.model.dtype = dtype
    generator, discriminator = models.create_models(config.model, axis_name=parallel.AXIS)
    results[dtype] = run_per_device(
        functools.partial(cotrain.discriminator_step,
                          settings=settings_of(config, generator, discriminator)),
        mesh, state, x, y, z, y[::-1], jax.random.split(key, 8))
  (new_state, metrics), (_, metrics32) = results['bfloat16'], results['float32']
  # The loss is ~115 (an untrained D's logits are large). Measured on seeds 0-9, bfloat16 moves
  # it by at most 0.16% (0.07% here); 1% leaves a margin of 6x.
  np.testing.assert_allclose(metrics['d_loss'], metrics32['d_loss'], rtol=0.01)
  assert not checkpoints.non_finite_arrays(new_state)
  assert {leaf.dtype for leaf in jax.tree.leaves(new_state.discriminator.variables)} == {
      jnp.dtype(jnp.float32)}
  # A tiny bfloat16 run (its loop checks every state array at each log step) stays finite.
  config.train.update(num_steps=2, n_dis=1)
  config.attack.num_steps = 1
  state = cotrain.train_and_evaluate(config, task_lib.Task.from_config(config), str(tmp_path))
  assert int(state.step) == 2 and not checkpoints.non_finite_arrays(state)


def train_step_per_setting(config, field, values):
  """One train step of the tiny models from the same state and batch for each value of the
  top-level config `field`: {value: ((state, metrics), compiled HLO text)}."""
  mesh = parallel.make_mesh()
  generator, discriminator = models.create_models(config.model, axis_name=parallel.AXIS)
  state = parallel.replicate(state_lib.create_gan_state(config, generator, discriminator, 40),
                             mesh)
  rng = np.random.default_rng(0)
  n_dis, b = config.train.n_dis, config.train.batch_size
  images = rng.integers(0, 256, (n_dis, b, 32, 32, 3), dtype=np.uint8)
  labels = rng.integers(0, 10, (n_dis, b), dtype=np.int32)
  results = {}
  for value in values:
    config[field] = value
    step = cotrain.make_train_step(config, settings_of(config, generator, discriminator), mesh)
    compiled = step.lower(state, images, labels).compile()
    # The state argument is donated: give each its own copy.
    results[value] = compiled(jax.tree.map(jnp.copy, state), images, labels), compiled.as_text()
  return results


def assert_same_step(a, b, metrics_rtol):
  (state_a, metrics_a), (state_b, metrics_b) = a, b
  assert_same_networks(state_a, state_b)
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=metrics_rtol, atol=1e-6),
               metrics_a, metrics_b)


@pytest.mark.slow  # Compiles the train step twice, with two settings.
def test_rolled_loops_give_the_unrolled_step(tiny_config):
  """config.unroll=False (the GPU/TPU default: the PGD steps in a while loop, the n_dis D updates
  in lax.scan) computes the step that unrolling does."""
  results = train_step_per_setting(tiny_config, 'unroll', (True, False))
  assert_same_step(results[True][0], results[False][0], metrics_rtol=1e-5)


def ynn_fused_convolutions(hlo_text: str) -> int:
  """How many of compiled HLO's fusions that XLA:CPU hands to YNNPACK contain a convolution."""
  called = re.findall(r'calls=%([\w.\-]+)[^\n]*"kind":"__ynn_fusion"', hlo_text)
  bodies = [hlo_text[hlo_text.index(f'%{c} ('):].split('\n}', 1)[0] for c in called]
  return sum('convolution(' in body for body in bodies)


@pytest.mark.slow  # Compiles the train step twice, with two settings.
@pytest.mark.skipif(jax.default_backend() != 'cpu', reason='a switch of the CPU backend')
def test_cpu_eigen_convolutions_moves_convolutions_off_ynnpack_and_keeps_the_step(tiny_config):
  """config.cpu_eigen_convolutions (the default) leaves no convolution in a YNNPACK fusion of
  the compiled train step, XLA's default puts some there, and both compute the same step."""
  results = train_step_per_setting(tiny_config, 'cpu_eigen_convolutions', (True, False))
  assert ynn_fused_convolutions(results[True][1]) == 0
  assert ynn_fused_convolutions(results[False][1]) > 0
  assert_same_step(results[True][0], results[False][0], metrics_rtol=1e-4)


def test_resume_equals_uninterrupted_run(tiny_config, tmp_path):
  tiny_config.train.num_steps = 4
  tiny_config.train.checkpoint_every_steps = 2
  straight = cotrain.train_and_evaluate(tiny_config, task_lib.Task.from_config(tiny_config), str(tmp_path / 'straight'))
  tiny_config.train.num_steps = 2
  cotrain.train_and_evaluate(tiny_config, task_lib.Task.from_config(tiny_config), str(tmp_path / 'resumed'))
  tiny_config.train.num_steps = 4
  resumed = cotrain.train_and_evaluate(tiny_config, task_lib.Task.from_config(tiny_config), str(tmp_path / 'resumed'))
  assert int(resumed.step) == int(straight.step) == 4
  for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed), strict=True):
    np.testing.assert_array_equal(a, b)
  assert sorted(os.listdir(tmp_path / 'resumed' / 'samples')) == [
      'step_0000002.png', 'step_0000004.png']
  # Resuming with another n_dis is refused, and so is a second run while one holds the workdir.
  tiny_config.train.n_dis = 1
  with pytest.raises(ValueError, match='train.n_dis: saved 2, requested 1'):
    cotrain.train_and_evaluate(tiny_config, task_lib.Task.from_config(tiny_config), str(tmp_path / 'resumed'))
  with workdir_lib.lock(str(tmp_path / 'resumed'), 'train'):
    with pytest.raises(workdir_lib.WorkdirInUseError, match='in use'):
      cotrain.train_and_evaluate(tiny_config, task_lib.Task.from_config(tiny_config), str(tmp_path / 'resumed'))


@pytest.mark.slow  # An end-to-end run of the stage.
def test_diverging_run_stops_and_keeps_only_finite_checkpoints(tiny_config, tmp_path):
  """lr 1e30 gives finite losses from non-finite weights; the state check stops the run, and
  the checkpoint saved before (step 2, of a sane learning rate) is the last one."""
  tiny_config.train.num_steps = 2
  tiny_config.evals.pgd_accuracy.every_steps = tiny_config.evals.sample_grid.every_steps = 0
  cotrain.train_and_evaluate(tiny_config, task_lib.Task.from_config(tiny_config), str(tmp_path))
  tiny_config.optim.learning_rate = 1e30
  tiny_config.allow_changes = ('optim.learning_rate',)
  tiny_config.train.num_steps = 8
  with pytest.raises(FloatingPointError, match='non-finite.*last good checkpoint is step 2'):
    cotrain.train_and_evaluate(tiny_config, task_lib.Task.from_config(tiny_config), str(tmp_path))
  manager = checkpoints.manager(workdir_lib.checkpoint_dir(str(tmp_path), 'cotrain'))
  assert list(manager.all_steps()) == [2]
  assert not checkpoints.non_finite_arrays(manager.restore(2))


@pytest.mark.slow
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
  # The console: a progress line per logged step with the time left, the evaluators' results,
  # one line per checkpoint; no INFO chatter of the libraries (Orbax, CLU, TensorFlow, JAX).
  console = result.stderr
  assert re.search(r'co-training step 2/2 \(100\.0%\), [\d.]+ steps/s, elapsed \S+, left 0s; '
                   r'd_loss [\d.]+, g_loss [\d.]+', console), console[-3000:]
  assert 'test_accuracy_pgd' in console
  assert console.count('Saving checkpoint 2 in') == 1
  info = [line for line in console.splitlines() if re.match(r'I\d{4} ', line)]
  ours = {'main.py'} | set(os.listdir(os.path.join(REPO, 'rob_gan_jax')))
  assert info and all(re.search(r' (\w+\.py):\d+\]', line)[1] in ours for line in info), info
  for chatter in ('checkpoint_manager.py', 'async_checkpointer.py', 'logging_writer.py',
                  'xla_bridge.py', 'oneDNN'):
    assert chatter not in console


@pytest.mark.slow
def test_main_on_sigterm_saves_the_step_reached_and_resumes_exactly(image_folder, tmp_path):
  command = lambda workdir: [
      sys.executable, 'main.py', '--config=configs/tiny.py', f'--workdir={workdir}',
      f'--config.dataset.image_folder={image_folder}', '--config.train.num_steps=60',
      '--config.train.log_every_steps=1', '--config.train.checkpoint_every_steps=1000',
      '--config.evals.pgd_accuracy.every_steps=0', '--config.evals.sample_grid.every_steps=0']
  log = tmp_path / 'run.log'
  with open(log, 'w') as f:
    run = subprocess.Popen(command(tmp_path / 'run'), cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
    try:
      deadline = time.monotonic() + 240
      while 'co-training step 2/60' not in log.read_text():  # Training, past compilation.
        assert time.monotonic() < deadline and run.poll() is None, log.read_text()[-3000:]
        time.sleep(0.05)
      run.send_signal(signal.SIGTERM)  # As a scheduler before it kills.
      run.wait(timeout=120)
    finally:
      run.kill()
  text = log.read_text()
  stopped = re.search(r'stopped by SIGTERM after step (\d+) and saved step \1.*exit status 75',
                      text)
  assert run.returncode == 75 and stopped, text[-3000:]
  assert 2 <= int(stopped[1]) < 60
  for workdir in ('run', 'straight'):  # Resumed, and uninterrupted.
    result = subprocess.run(command(tmp_path / workdir), cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
  resumed, straight = (workdir_lib.load_weights(str(tmp_path / w), 'cotrain')
                       for w in ('run', 'straight'))
  assert resumed.step == straight.step == 60
  for net in ('generator', 'discriminator'):
    jax.tree.map(np.testing.assert_array_equal, getattr(resumed, net), getattr(straight, net))


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
    ('train.gan_loss', 'wasserstein', 'train.gan_loss'),
    ('train.generator_class_weight', -0.1, 'train.generator_class_weight'),
    ('model.num_classes', 0, "method 'robgan' needs model.num_classes >= 1"),
    ('method', 'madry', 'co-training is method robgan'),
])
def test_bad_configs_raise_before_compute(tiny_config, tmp_path, field, value, match):
  *groups, name = field.split('.')
  (tiny_config[groups[0]] if groups else tiny_config)[name] = value
  with pytest.raises(ValueError, match=match):
    cotrain.train_and_evaluate(tiny_config, task_lib.Task.from_config(tiny_config), str(tmp_path))
  assert not os.path.exists(tmp_path / 'checkpoints')


def test_missing_dataset_raises(tiny_config, tmp_path):
  tiny_config.dataset.image_folder = str(tmp_path / 'missing')
  with pytest.raises(FileNotFoundError, match='image_folder'):
    cotrain.train_and_evaluate(tiny_config, task_lib.Task.from_config(tiny_config),
                               str(tmp_path / 'run'))


def test_asgan_attack_raises_the_real_loss_and_stays_in_the_ball(tiny_asgan_config):
  config = tiny_asgan_config
  config.attack.update(epsilon=0.05, step_size=0.02, num_steps=3)
  generator, discriminator = models.create_models(config.model)
  state = state_lib.create_gan_state(config, generator, discriminator, num_train_examples=40)
  d = state.discriminator.variables
  x = jax.random.uniform(jax.random.PRNGKey(1), (8, 32, 32, 3), minval=-1, maxval=1)
  y = jnp.zeros((8,), jnp.int32)
  x_adv = cotrain.attack_real_images(settings_of(config, generator, discriminator), d, x, y,
                                     jax.random.split(jax.random.PRNGKey(2), 8))
  real_loss = lambda x: optax.sigmoid_binary_cross_entropy(
      discriminator.apply(d, x, train=False)[0], 1.0)  # D's loss for calling x real, by example.
  assert np.all(real_loss(x_adv) > real_loss(x))
  assert float(jnp.max(jnp.abs(x_adv - x))) <= 0.05 + 1e-6
  assert float(jnp.min(x_adv)) >= -1 and float(jnp.max(x_adv)) <= 1


@pytest.mark.slow  # AS-GAN's step with an attack is in the fast lane (test_step_on_4_devices...).
def test_vanilla_gan_step_is_the_plain_gan_step(tiny_asgan_config):
  """AS-GAN with 0 attack steps is a plain GAN D step: D's hinge loss (SN-GAN's; the other GAN
  losses are tested by hand in losses_test) on the untouched real batch plus on G's batch, each
  in its own training-mode pass, one Adam update."""
  config = tiny_asgan_config
  config.train.gan_loss = 'hinge'
  config.attack.num_steps = 0
  generator, discriminator = models.create_models(config.model, axis_name=parallel.AXIS)
  state = state_lib.create_gan_state(config, generator, discriminator, num_train_examples=40)
  key = jax.random.PRNGKey(3)
  x = jax.random.uniform(key, (8, 32, 32, 3), minval=-1, maxval=1)
  z = jax.random.normal(key, (8, config.model.z_dim))
  zeros = jnp.zeros((8,), jnp.int32)
  step = functools.partial(cotrain.discriminator_step,
                           settings=settings_of(config, generator, discriminator))
  mesh = parallel.make_mesh(jax.devices()[:1])
  new_state, _ = run_per_device(step, mesh, state, x, zeros, z, zeros, jax.random.split(key, 8))

  plain_d = discriminator.clone(axis_name=None)
  x_fake = generator.clone(axis_name=None).apply(state.generator.variables, z, train=True,
                                                  mutable=['batch_stats'])[0]
  def plain_loss(params):
    real = plain_d.apply({'params': params}, x, train=True)[0]
    fake = plain_d.apply({'params': params}, x_fake, train=True)[0]
    return jnp.mean(jax.nn.relu(1 - real)) + jnp.mean(jax.nn.relu(1 + fake))
  d = state.discriminator
  expected = d.apply_gradients(grads=jax.grad(plain_loss)(d.params))
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6),
               new_state.discriminator.params, expected.params)
