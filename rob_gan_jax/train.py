"""Rob-GAN step 1: co-training of the generator, the discriminator and the PGD attacker.

Paper: Liu & Hsieh, "Rob-GAN: Generator, Discriminator and Adversarial Attacker" (CVPR 2019),
Sec. 4 and Algorithm 1. Official code: `train.py` of github.com/xuanqing94/RobGAN.

One training step is one iteration in the SN-GAN sense: `n_dis` discriminator updates, each on a
new batch of real images attacked by PGD and a new batch of generated images, then one generator
update. The step runs data-parallel over all devices: per-device code with collectives over the
mesh axis 'batch' (`lax.pmean` of gradients and metrics, cross-replica BatchNorm), wrapped in
`jax.shard_map` over a 1-D mesh and jitted as a whole.
"""

import functools
import os
from typing import Any, Dict, Tuple

from absl import logging
from clu import metric_writers
from clu import periodic_actions
import flax
import flax.linen as nn
from flax.training import train_state
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp

from rob_gan_jax import attacks
from rob_gan_jax import checkpoints
from rob_gan_jax import evaluate
from rob_gan_jax import input_pipeline
from rob_gan_jax import losses
from rob_gan_jax import models
from rob_gan_jax.metrics import fid

AXIS = 'batch'


class ModelState(train_state.TrainState):
  """Params, optimizer state and BatchNorm / spectral-norm statistics of one network."""
  batch_stats: Any = None

  @property
  def variables(self) -> Dict[str, Any]:
    return {'params': self.params, 'batch_stats': self.batch_stats}


class GANState(flax.struct.PyTreeNode):
  """The whole training state, one pytree (what a checkpoint holds).

  Attributes:
    step: () int32, generator updates done.
    generator: G's ModelState.
    discriminator: D's ModelState.
    key: (2,) uint32 PRNG key; the randomness of step s comes from `fold_in(key, s)`.
  """
  step: jax.Array
  generator: ModelState
  discriminator: ModelState
  key: jax.Array


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError, before any compute, for settings that cannot work."""
  attacks.check_attack_args(epsilon=config.attack.epsilon, step_size=config.attack.step_size,
                            num_steps=config.attack.num_steps)
  if config.train.loss not in losses.LOSS_TYPES:
    raise ValueError(f'train.loss must be one of {losses.LOSS_TYPES}, got {config.train.loss!r}')
  if config.model.normalization not in models.NORMALIZATIONS:
    raise ValueError(f'model.normalization must be one of {models.NORMALIZATIONS}, '
                     f'got {config.model.normalization!r}')
  for name in ('batch_size', 'n_dis', 'num_steps', 'log_every_steps', 'checkpoint_every_steps',
               'max_to_keep', 'eval_every_steps', 'sample_every_steps'):
    if config.train[name] < 1:
      raise ValueError(f'train.{name} must be >= 1, got {config.train[name]}')


def make_mesh(global_batch_size: int, devices=None) -> jax.sharding.Mesh:
  """A 1-D mesh with axis 'batch' over `devices` (default: all devices).

  Raises:
    ValueError: the global batch does not divide by the number of devices.
  """
  devices = jax.devices() if devices is None else devices
  if global_batch_size % len(devices):
    raise ValueError(f'the global batch size {global_batch_size} must divide by the number of '
                     f'devices ({len(devices)}); change train.batch_size')
  return jax.sharding.Mesh(np.asarray(devices), (AXIS,),
                           axis_types=(jax.sharding.AxisType.Auto,))


def make_optimizer(optim_config, steps_per_epoch: float) -> optax.GradientTransformation:
  """Adam whose learning rate is multiplied by `decay_factor` every `decay_every_epochs`.

  The official code rebuilds its optimizers at each decay, throwing the Adam moments away; here
  the decay is an optax schedule and the moments are kept.

  Args:
    optim_config: `config.optim`.
    steps_per_epoch: updates of this optimizer per epoch of training data.
  """
  schedule = optax.exponential_decay(
      init_value=optim_config.learning_rate,
      transition_steps=max(1, int(round(optim_config.decay_every_epochs * steps_per_epoch))),
      decay_rate=optim_config.decay_factor, staircase=True)
  return optax.adam(schedule, b1=optim_config.b1, b2=optim_config.b2)


def init_model_state(module: nn.Module, key: jax.Array, inputs, tx) -> ModelState:
  """Initialises a network (in inference mode, so without collectives) and its optimizer."""
  variables = module.init(key, *inputs, train=False)
  return ModelState.create(apply_fn=module.apply, params=variables['params'],
                           batch_stats=variables.get('batch_stats', {}), tx=tx)


def create_train_state(config, generator: nn.Module, discriminator: nn.Module,
                       num_train_examples: int) -> GANState:
  """Initial GANState from `config.seed`.

  Args:
    config: the full config.
    generator, discriminator: the modules (from `models.create_models`).
    num_train_examples: size of the training split, for the epoch-based learning-rate decay.
  """
  key = jax.random.PRNGKey(config.seed)
  g_key, d_key, state_key = jax.random.split(key, 3)
  m = config.model
  d_steps_per_epoch = num_train_examples / config.train.batch_size
  z = jnp.zeros((1, m.z_dim), jnp.float32)
  y = jnp.zeros((1,), jnp.int32)
  x = jnp.zeros((1, m.image_size, m.image_size, 3), jnp.float32)
  return GANState(
      step=jnp.zeros((), jnp.int32),
      generator=init_model_state(
          generator, g_key, (z, y),
          make_optimizer(config.optim, d_steps_per_epoch / config.train.n_dis)),
      discriminator=init_model_state(discriminator, d_key, (x,),
                                     make_optimizer(config.optim, d_steps_per_epoch)),
      key=state_key)


@functools.partial(jax.jit, static_argnums=0, static_argnames='train')
def generate(generator: nn.Module, variables, z, y, *, train: bool):
  """G(z, y) with G's {'params', 'batch_stats'}, keeping no BatchNorm update.

  Training mode uses batch statistics. Returns (B, S, S, 3) float32 images in [-1, 1]. In training mode (batch statistics, averaged
  over the generator's axis_name) it must run where that axis is bound.
  """
  if train:
    return generator.apply(variables, z, y, train=True, mutable=['batch_stats'])[0]
  return generator.apply(variables, z, y, train=False)


def discriminator_step(state: GANState, x_real, y_real, z, y_fake, attack_key, *,
                       generator: nn.Module, discriminator: nn.Module, attack_config,
                       loss_type: str) -> Tuple[GANState, Dict[str, jax.Array]]:
  """One D update (per-device code inside shard_map over axis 'batch').

  Real images are attacked by PGD on D's real-image loss (D in inference mode), then D minimises
  `discriminator_real_loss(D(x_adv)) + discriminator_fake_loss(D(G(z, y_fake)))` (paper eqs. 8/9).
  D sees the adversarial and the fake batch in separate training-mode passes, as the official
  code does, so each has its own BatchNorm statistics. G runs in training mode, as in the G step;
  its BatchNorm updates are not kept (the D step changes only D).

  Args:
    state: GANState (replicated).
    x_real: (b, H, W, 3) float32 augmented real images in [-1, 1] (this device's part).
    y_real: (b,) int32 labels.
    z: (b, z_dim) float32 latents; y_fake: (b,) int32 labels for G.
    attack_key: PRNG key for the attack's random start (used only if enabled).
    generator, discriminator: modules built with axis_name='batch'.
    attack_config: `config.attack`.
    loss_type: 'split' (eq. 9) or 'acgan' (eq. 8).

  Returns:
    The new state and a dict of scalar metrics averaged over devices.
  """
  d = state.discriminator
  x_fake = generate(generator, state.generator.variables, z, y_fake, train=True)

  def attack_loss(x, y):
    source, classes = discriminator.apply(d.variables, x, train=False)
    return losses.discriminator_real_loss(source_logits=source, class_logits=classes, labels=y)

  x_adv = attacks.pgd_linf(
      attack_loss, x_real, y_real, epsilon=attack_config.epsilon,
      step_size=attack_config.step_size, num_steps=attack_config.num_steps,
      random_start=attack_config.random_start,
      key=jax.random.fold_in(attack_key, jax.lax.axis_index(AXIS)))

  def loss_fn(params):
    (src_real, cls_real), updates = discriminator.apply(
        {'params': params, 'batch_stats': d.batch_stats}, x_adv, train=True,
        mutable=['batch_stats'])
    (src_fake, cls_fake), updates = discriminator.apply(
        {'params': params, **updates}, x_fake, train=True, mutable=['batch_stats'])
    loss_real = losses.discriminator_real_loss(source_logits=src_real, class_logits=cls_real,
                                               labels=y_real)
    loss_fake = losses.discriminator_fake_loss(source_logits=src_fake, class_logits=cls_fake,
                                               labels=y_fake, loss_type=loss_type)
    metrics = {
        'd_loss': loss_real + loss_fake,
        'd_loss_real': loss_real,
        'd_loss_fake': loss_fake,
        'd_source_accuracy_real': jnp.mean(src_real > 0),
        'd_source_accuracy_fake': jnp.mean(src_fake < 0),
        'd_class_accuracy_real': jnp.mean(jnp.argmax(cls_real, -1) == y_real),
    }
    return loss_real + loss_fake, (updates['batch_stats'], metrics)

  grads, (batch_stats, metrics) = jax.grad(loss_fn, has_aux=True)(d.params)
  grads, metrics = jax.lax.pmean((grads, metrics), AXIS)
  d = d.apply_gradients(grads=grads, batch_stats=batch_stats)
  return state.replace(discriminator=d), metrics


def generator_step(state: GANState, z, y_fake, *, generator: nn.Module,
                   discriminator: nn.Module) -> Tuple[GANState, Dict[str, jax.Array]]:
  """One G update (per-device code inside shard_map over axis 'batch').

  G minimises `generator_loss(D(G(z, y)))`: fool the source head and be classified as y. D runs
  in training mode (batch statistics) as in the official code, and only its input gradient is
  computed; its statistics updates are not kept (the G step changes only G).

  Args:
    state: GANState (replicated).
    z: (b, z_dim) float32 latents; y_fake: (b,) int32 labels.
    generator, discriminator: modules built with axis_name='batch'.

  Returns:
    The new state and a dict of scalar metrics averaged over devices.
  """
  g = state.generator

  def loss_fn(params):
    x_fake, updates = generator.apply({'params': params, 'batch_stats': g.batch_stats}, z,
                                      y_fake, train=True, mutable=['batch_stats'])
    (source, classes), _ = discriminator.apply(state.discriminator.variables, x_fake,
                                               train=True, mutable=['batch_stats'])
    loss = losses.generator_loss(source_logits=source, class_logits=classes, labels=y_fake)
    return loss, (updates['batch_stats'], {'g_loss': loss})

  grads, (batch_stats, metrics) = jax.grad(loss_fn, has_aux=True)(g.params)
  grads, metrics = jax.lax.pmean((grads, metrics), AXIS)
  g = g.apply_gradients(grads=grads, batch_stats=batch_stats)
  return state.replace(generator=g), metrics


def train_iteration(state: GANState, batch, attack_keys, *, generator, discriminator,
                    config) -> Tuple[GANState, Dict[str, jax.Array]]:
  """`n_dis` D steps (a `lax.scan`) then one G step; per-device code.

  Args:
    batch: dict of this device's data, leading axis n_dis (+1 for z and y_fake, whose last
      entry feeds the G step): 'images' (n_dis, b, H, W, 3) float32, 'labels' (n_dis, b),
      'z' (n_dis + 1, b, z_dim), 'y_fake' (n_dis + 1, b).
    attack_keys: (n_dis, 2) PRNG keys, one per D step.
  """
  n_dis = config.train.n_dis
  d_step = functools.partial(discriminator_step, generator=generator,
                             discriminator=discriminator, attack_config=config.attack,
                             loss_type=config.train.loss)
  state, d_metrics = jax.lax.scan(
      lambda s, xs: d_step(s, *xs), state,
      (batch['images'], batch['labels'], batch['z'][:n_dis], batch['y_fake'][:n_dis],
       attack_keys), unroll=True)  # XLA:CPU runs a `while` body ~3x slower; see pgd_linf.
  state, g_metrics = generator_step(state, batch['z'][n_dis], batch['y_fake'][n_dis],
                                    generator=generator, discriminator=discriminator)
  metrics = {**jax.tree.map(jnp.mean, d_metrics), **g_metrics}
  return state.replace(step=state.step + 1), metrics


def make_train_step(config, generator: nn.Module, discriminator: nn.Module,
                    mesh: jax.sharding.Mesh):
  """Returns the jitted `train_step(state, images, labels) -> (state, metrics)`.

  `images` (n_dis, B, H, W, 3) uint8 and `labels` (n_dis, B) int32 are the global batches of the
  step's D updates. Augmentation, latents and fake labels are drawn from `fold_in(state.key,
  state.step)` on the global batch before it is split over devices, so a step gives the same
  result on any number of devices. The state argument is donated.
  """
  m, d = config.model, config.dataset
  n_dis, batch_size = config.train.n_dis, config.train.batch_size
  per_device = functools.partial(train_iteration, generator=generator,
                                 discriminator=discriminator, config=config)
  # check_vma=False: gradients are averaged explicitly with lax.pmean (the style of flax's
  # examples); with VMA checking JAX would psum gradients of replicated params implicitly.
  sharded = jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(None, AXIS), P()),
                          out_specs=(P(), P()), check_vma=False)

  @functools.partial(jax.jit, donate_argnums=0)
  def train_step(state, images, labels):
    key = jax.random.fold_in(state.key, state.step)
    aug_key, z_key, y_key, attack_key = jax.random.split(key, 4)
    x = input_pipeline.augment(
        images.reshape((-1,) + images.shape[2:]), aug_key, crop_padding=d.crop_padding,
        random_flip=d.random_flip, dequantization_noise=d.dequantization_noise)
    batch = {
        'images': x.reshape(images.shape),
        'labels': labels,
        'z': jax.random.normal(z_key, (n_dis + 1, batch_size, m.z_dim)),
        'y_fake': jax.random.randint(y_key, (n_dis + 1, batch_size), 0, m.num_classes),
    }
    return sharded(state, batch, jax.random.split(attack_key, n_dis))

  return train_step


def load_subset(config, split: str, num_examples) -> Tuple[np.ndarray, np.ndarray]:
  """A fixed random subset (a function of the seed) of `num_examples` of a split; None = all."""
  images, labels = input_pipeline.load_split(config.dataset, split,
                                             image_size=config.model.image_size,
                                             num_classes=config.model.num_classes)
  subset = np.random.default_rng(config.seed).permutation(len(labels))[:num_examples]
  return images[subset], labels[subset]


def host_batch(train_images, train_labels, step: int, config) -> Tuple[np.ndarray, np.ndarray]:
  """The (n_dis, B, H, W, 3) uint8 images and (n_dis, B) labels of training step `step`."""
  n_dis, batch_size = config.train.n_dis, config.train.batch_size
  idx = np.stack([
      input_pipeline.batch_indices(config.seed, step * n_dis + i,
                                   num_examples=len(train_labels), batch_size=batch_size)
      for i in range(n_dis)])
  return train_images[idx], train_labels[idx]


def fixed_noise(config) -> Tuple[jax.Array, jax.Array]:
  """Latents and labels of the sample grid: `samples_per_class` per class, one row per class."""
  m, k = config.model, config.train.samples_per_class
  z = jax.random.normal(jax.random.PRNGKey(config.seed + 1), (m.num_classes * k, m.z_dim))
  y = jnp.repeat(jnp.arange(m.num_classes, dtype=jnp.int32), k)
  return z, y


def sample_latents(config, n: int, seed: int) -> jax.Array:
  """(n, z_dim) standard-normal latents from `seed`."""
  return jax.random.normal(jax.random.PRNGKey(seed), (n, config.model.z_dim))


def write_samples(writer, workdir: str, step: int, generator, g_state, config) -> None:
  """Writes the fixed-noise sample grid (G in inference mode) as image summary and PNG."""
  z, y = fixed_noise(config)
  images = generate(generator, g_state.variables, z, y, train=False)
  grid = input_pipeline.image_grid(images, rows=config.model.num_classes)
  writer.write_images(step, {'samples': grid[None]})
  os.makedirs(os.path.join(workdir, 'samples'), exist_ok=True)
  input_pipeline.save_png(grid, os.path.join(workdir, 'samples', f'step_{step:07d}.png'), scale=2)


def check_finite(metrics: Dict[str, float], step: int, manager: ocp.CheckpointManager) -> None:
  """Raises FloatingPointError if a loss is NaN or infinite."""
  bad = {k: v for k, v in metrics.items() if not np.isfinite(v)}
  if bad:
    manager.wait_until_finished()
    raise FloatingPointError(
        f'non-finite loss at step {step}: {bad}. The last good checkpoint is step '
        f'{manager.latest_step()} in {manager.directory}; lower the learning rate or check the '
        'data before resuming.')


def write_train_metrics(writer, step: int, pending, checkpoint_manager) -> None:
  """Averages the per-step metric dicts in `pending` (device arrays), checks them, writes them.

  Raises:
    FloatingPointError: a non-finite value (the last good checkpoint is kept).
  """
  summary = {k: float(v) for k, v in jax.tree.map(lambda *x: np.mean(x), *pending).items()}
  check_finite(summary, step, checkpoint_manager)
  writer.write_scalars(step, summary)


def write_test_accuracy(writer, step: int, discriminator, variables, images, labels, *,
                        epsilon: float, eval_config, mesh) -> Dict[str, float]:
  """Writes clean and PGD accuracy of D's classifier (PGD with `eval_config`'s steps)."""
  accuracy = {}
  for name, eps in (('clean', 0.0), ('pgd', epsilon)):
    accuracy[f'test_accuracy_{name}'] = evaluate.accuracy_under_attack(
        discriminator, variables, images, labels, epsilon=eps,
        step_size=eps * eval_config.step_size_factor, num_steps=eval_config.num_steps,
        key=jax.random.PRNGKey(step), mesh=mesh, batch_size=eval_config.batch_size)
  writer.write_scalars(step, accuracy)
  return accuracy


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> GANState:
  """Runs (or resumes) step-1 co-training in `workdir`.

  Writes `config.json`, TensorBoard summaries, `samples/step_*.png` and Orbax checkpoints under
  `checkpoints/`; starts from the latest checkpoint if there is one.

  Args:
    config: the full config (see configs/default.py).
    workdir: output directory.

  Returns:
    The final GANState.

  Raises:
    ValueError: invalid config, a batch that does not divide by the device count, a workdir of
      another model, wrong image size or class count.
    FileNotFoundError: missing data set.
    FloatingPointError: a non-finite loss (the last good checkpoint is kept).
  """
  validate_config(config)
  mesh = make_mesh(config.train.batch_size)
  checkpoints.check_and_write_config(config, workdir)
  m, t = config.model, config.train
  train_images, train_labels = input_pipeline.load_split(
      config.dataset, config.dataset.train_split, image_size=m.image_size,
      num_classes=m.num_classes)
  test_images, test_labels = load_subset(config, config.dataset.test_split, t.eval_num_examples)

  generator, discriminator = models.create_models(m, axis_name=AXIS)
  state = create_train_state(config, generator, discriminator, len(train_labels))
  manager = checkpoints.manager(os.path.join(workdir, checkpoints.COTRAIN), t.max_to_keep)
  state = checkpoints.restore_latest(manager, state)
  state = jax.device_put(state, NamedSharding(mesh, P()))
  initial_step = int(state.step)

  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  logging.info('Training on %d devices from step %d to %d; %d training examples.',
               mesh.size, initial_step, t.num_steps, len(train_labels))
  if t.inception_every_steps and not config.eval.inception_weights:
    logging.warning(fid.SKIPPED)
  train_step = make_train_step(config, generator, discriminator, mesh)
  batch_sharding = NamedSharding(mesh, P(None, AXIS))
  report_progress = periodic_actions.ReportProgress(num_train_steps=t.num_steps, writer=writer)
  pending = []
  for step in range(initial_step + 1, t.num_steps + 1):
    images, labels = host_batch(train_images, train_labels, step - 1, config)
    state, metrics = train_step(state, *jax.device_put((images, labels), batch_sharding))
    pending.append(metrics)
    last = step == t.num_steps
    if step % t.log_every_steps == 0 or step % t.checkpoint_every_steps == 0 or last:
      write_train_metrics(writer, step, pending, manager)  # Waits for the step to finish,
      pending = []
      report_progress(step)  # so steps/s counts computed steps, not dispatched ones.
    if step % t.eval_every_steps == 0 or last:
      with report_progress.timed('eval'):
        write_test_accuracy(writer, step, discriminator, state.discriminator.variables,
                            test_images, test_labels, epsilon=config.attack.epsilon,
                            eval_config=config.eval, mesh=mesh)
    if t.inception_every_steps and config.eval.inception_weights and (
        step % t.inception_every_steps == 0 or last):
      with report_progress.timed('inception'):
        sample_fn = lambda labels, seed, g=state.generator.variables: generate(
            generator, g, sample_latents(config, len(labels), seed), jnp.asarray(labels),
            train=False)
        writer.write_scalars(step, fid.generator_metrics(
            sample_fn, config, workdir, num_samples=t.inception_num_samples, mesh=mesh))
    if step % t.sample_every_steps == 0 or last:
      write_samples(writer, workdir, step, generator, state.generator, config)
    if step % t.checkpoint_every_steps == 0 or last:
      manager.save(step, args=ocp.args.StandardSave(state))
  manager.wait_until_finished()
  writer.flush()
  return state
