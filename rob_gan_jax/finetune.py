"""Step 2 of Rob-GAN (fine-tuning D's classifier) and the Madry adversarial-training baseline.

Fine-tuning, paper eq. 10: starting from the co-trained D, minimise
    CE(f(x_real_adv), y) + lambda * CE(f(x_fake_adv), y_fake),
with x_fake = G(z, y_fake) from the frozen co-trained G and both adversarial batches from PGD on
the class cross-entropy alone (official `finetune.py` and `attack_label_Linf_PGD`: 5 steps of
eps / 5). Only D changes.

Madry baseline (`config.method = 'madry'`): the same update with lambda = 0 and no generator,
starting from a randomly initialised D, i.e. Madry et al.'s adversarial training of the same
network as a classifier only (the source head gets no gradient).

Checkpoints go to `workdir/finetune/checkpoints`, with the same resume guarantees as step 1.
Augmentation is crop and flip without the dequantization noise, as in the official `finetune.py`.
"""

import functools
import os
from typing import Dict, Optional, Tuple

from absl import logging
from clu import metric_writers
from clu import periodic_actions
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp

from rob_gan_jax import attacks
from rob_gan_jax import checkpoints
from rob_gan_jax import input_pipeline
from rob_gan_jax import losses
from rob_gan_jax import models
from rob_gan_jax import train

METHODS = ('robgan', 'madry')


class ClassifierState(flax.struct.PyTreeNode):
  """State of classifier training: D (params, optimizer, statistics), step and key.

  Attributes:
    step: () int32, updates done.
    discriminator: D's ModelState.
    key: (2,) uint32 PRNG key; step s uses `fold_in(key, s)`.
  """
  step: jax.Array
  discriminator: train.ModelState
  key: jax.Array


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError, before any compute, for settings that cannot work."""
  f = config.finetune
  if config.method not in METHODS:
    raise ValueError(f'method must be one of {METHODS}, got {config.method!r}')
  attacks.check_attack_args(epsilon=f.epsilon, step_size=f.step_size, num_steps=f.num_steps)
  if f.fake_weight < 0:
    raise ValueError(f'finetune.fake_weight (lambda) must be >= 0, got {f.fake_weight}')
  if config.method == 'madry' and f.fake_weight:
    raise ValueError('the Madry baseline uses no generated data: set finetune.fake_weight=0')
  if not f.stage_epochs or min(f.stage_epochs) <= 0:
    raise ValueError(f'finetune.stage_epochs must be positive, got {f.stage_epochs}')
  for name in ('batch_size', 'log_every_steps', 'checkpoint_every_steps', 'max_to_keep'):
    if f[name] < 1:
      raise ValueError(f'finetune.{name} must be >= 1, got {f[name]}')


def steps_per_epoch(config, num_train_examples: int) -> int:
  return num_train_examples // config.finetune.batch_size


def make_optimizer(finetune_config, epoch_steps: int) -> optax.GradientTransformation:
  """Adam whose learning rate is multiplied by `stage_factor` at the end of each stage."""
  boundaries = np.cumsum(finetune_config.stage_epochs)[:-1] * epoch_steps
  schedule = optax.piecewise_constant_schedule(
      finetune_config.learning_rate,
      {int(round(b)): finetune_config.stage_factor for b in boundaries})
  return optax.adam(schedule, b1=finetune_config.b1, b2=finetune_config.b2)


def num_train_steps(config, num_train_examples: int) -> int:
  return int(round(sum(config.finetune.stage_epochs) * steps_per_epoch(config,
                                                                       num_train_examples)))


def classifier_step(state: ClassifierState, generator_variables, x_real, y_real, z, y_fake, *,
                    generator: nn.Module, discriminator: nn.Module,
                    finetune_config) -> Tuple[ClassifierState, Dict[str, jax.Array]]:
  """One update of D's classifier on eq. 10 (per-device code inside shard_map over 'batch').

  Args:
    state: ClassifierState (replicated).
    generator_variables: frozen G's {'params', 'batch_stats'}, or None when fake_weight is 0.
    x_real: (b, H, W, 3) float32 augmented real images in [-1, 1]; y_real: (b,) int32.
    z: (b, z_dim) latents; y_fake: (b,) int32 labels for G (unused when fake_weight is 0).
    generator, discriminator: modules built with axis_name='batch'.
    finetune_config: `config.finetune` (attack settings and lambda = fake_weight).

  Returns:
    The new state and scalar metrics averaged over devices.
  """
  f = finetune_config
  d = state.discriminator
  logits_fn = lambda x: discriminator.apply(d.variables, x, train=False)[1]
  attack = functools.partial(
      attacks.pgd_linf, lambda x, y: losses.class_loss(logits=logits_fn(x), labels=y),
      epsilon=f.epsilon, step_size=f.step_size, num_steps=f.num_steps)
  x_real_adv = attack(x_real, y_real)
  use_fake = f.fake_weight > 0
  if use_fake:
    # Frozen G in training mode (batch statistics), as in co-training; nothing of G changes.
    x_fake = generator.apply(generator_variables, z, y_fake, train=True,
                             mutable=['batch_stats'])[0]
    x_fake_adv = attack(x_fake, y_fake)

  def loss_fn(params):
    (_, logits_real), updates = discriminator.apply(
        {'params': params, 'batch_stats': d.batch_stats}, x_real_adv, train=True,
        mutable=['batch_stats'])
    metrics = {'accuracy_real_adv': jnp.mean(jnp.argmax(logits_real, -1) == y_real)}
    if use_fake:
      (_, logits_fake), updates = discriminator.apply(
          {'params': params, **updates}, x_fake_adv, train=True, mutable=['batch_stats'])
      loss = losses.finetune_loss(real_logits=logits_real, real_labels=y_real,
                                  fake_logits=logits_fake, fake_labels=y_fake,
                                  fake_weight=f.fake_weight)
      metrics['accuracy_fake_adv'] = jnp.mean(jnp.argmax(logits_fake, -1) == y_fake)
    else:  # lambda = 0: the fake term is not computed at all.
      loss = losses.class_loss(logits=logits_real, labels=y_real)
    return loss, (updates['batch_stats'], {'loss': loss, **metrics})

  grads, (batch_stats, metrics) = jax.grad(loss_fn, has_aux=True)(d.params)
  grads, metrics = jax.lax.pmean((grads, metrics), train.AXIS)
  d = d.apply_gradients(grads=grads, batch_stats=batch_stats)
  return state.replace(step=state.step + 1, discriminator=d), metrics


def make_classifier_step(config, generator: nn.Module, discriminator: nn.Module,
                         mesh: jax.sharding.Mesh):
  """Returns jitted `step(state, generator_variables, images, labels) -> (state, metrics)`.

  `images` (B, H, W, 3) uint8 and `labels` (B,) int32 are the global batch; augmentation,
  latents and fake labels come from `fold_in(state.key, state.step)`. The state is donated.
  """
  m, d = config.model, config.dataset
  per_device = lambda state, g_vars, batch: classifier_step(
      state, g_vars, *batch, generator=generator, discriminator=discriminator,
      finetune_config=config.finetune)
  sharded = jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(), P(train.AXIS)),
                          out_specs=(P(), P()), check_vma=False)

  @functools.partial(jax.jit, donate_argnums=0)
  def step(state, generator_variables, images, labels):
    aug_key, z_key, y_key = jax.random.split(jax.random.fold_in(state.key, state.step), 3)
    x = input_pipeline.augment(images, aug_key, crop_padding=d.crop_padding,
                               random_flip=d.random_flip, dequantization_noise=0.0)
    n = labels.shape[0]
    batch = (x, labels, jax.random.normal(z_key, (n, m.z_dim)),
             jax.random.randint(y_key, (n,), 0, m.num_classes))
    return sharded(state, generator_variables, batch)

  return step


def load_cotrained(config, workdir: str, generator: nn.Module,
                   discriminator: nn.Module) -> train.GANState:
  """The latest co-training GANState of `workdir`.

  Raises:
    FileNotFoundError: no co-training checkpoint there.
    ValueError: the checkpoint is of another architecture.
  """
  checkpoint_manager = checkpoints.manager(os.path.join(workdir, checkpoints.COTRAIN))
  if checkpoint_manager.latest_step() is None:
    raise FileNotFoundError(
        f'no co-training checkpoint in {os.path.join(workdir, checkpoints.COTRAIN)}: run '
        '--mode=train first, or point --config.finetune.init_workdir at a co-training workdir')
  abstract = jax.eval_shape(lambda: train.create_train_state(config, generator, discriminator,
                                                             num_train_examples=1))
  return checkpoints.restore_latest(checkpoint_manager, abstract)


def create_state(config, discriminator: nn.Module, num_train_examples: int) -> ClassifierState:
  """A ClassifierState with a randomly initialised D (the Madry baseline's start)."""
  tx = make_optimizer(config.finetune, steps_per_epoch(config, num_train_examples))
  x = jnp.zeros((1, config.model.image_size, config.model.image_size, 3))
  d_state = train.init_model_state(discriminator, jax.random.PRNGKey(config.seed), (x,), tx)
  return ClassifierState(step=jnp.zeros((), jnp.int32), discriminator=d_state,
                         key=jax.random.fold_in(jax.random.PRNGKey(config.seed), 2))


def initial_state(config, workdir: str, generator: nn.Module, discriminator: nn.Module,
                  num_train_examples: int) -> Tuple[ClassifierState, Optional[dict]]:
  """(ClassifierState before any classifier update, frozen G variables or None).

  Fine-tuning starts D from the latest co-training checkpoint, Madry training from scratch.
  """
  state = create_state(config, discriminator, num_train_examples)
  if config.method == 'madry':
    return state, None
  gan = load_cotrained(config, config.finetune.init_workdir or workdir, generator,
                       discriminator)
  d_state = state.discriminator.replace(params=gan.discriminator.params,
                                        batch_stats=gan.discriminator.batch_stats)
  g_variables = gan.generator.variables if config.finetune.fake_weight > 0 else None
  return state.replace(discriminator=d_state), g_variables


def train_classifier(config: ml_collections.ConfigDict, workdir: str) -> ClassifierState:
  """Runs (or resumes) fine-tuning (method 'robgan') or Madry training (method 'madry').

  Logs the training loss and accuracies on adversarial batches, and after each epoch the clean
  and PGD accuracy (attack radius `finetune.epsilon`, `eval.num_steps` steps of eps *
  `eval.step_size_factor`) on `finetune.eval_num_examples` test examples.

  Args:
    config: the full config.
    workdir: output directory; for fine-tuning also where the co-training checkpoint is, unless
      `finetune.init_workdir` is set.

  Returns:
    The final ClassifierState.

  Raises:
    ValueError: invalid config or a checkpoint of another architecture.
    FileNotFoundError: no co-training checkpoint (fine-tuning) or no data.
    FloatingPointError: a non-finite loss (the last good checkpoint is kept).
  """
  validate_config(config)
  train.validate_config(config)
  f = config.finetune
  mesh = train.make_mesh(f.batch_size)
  checkpoints.check_and_write_config(config, workdir)
  train_images, train_labels = input_pipeline.load_split(
      config.dataset, config.dataset.train_split, image_size=config.model.image_size,
      num_classes=config.model.num_classes)
  test_images, test_labels = train.load_subset(config, config.dataset.test_split,
                                               f.eval_num_examples)
  generator, discriminator = models.create_models(config.model, axis_name=train.AXIS)
  state, g_variables = initial_state(config, workdir, generator, discriminator,
                                     len(train_labels))
  manager = checkpoints.manager(os.path.join(workdir, checkpoints.FINETUNE), f.max_to_keep)
  state = checkpoints.restore_latest(manager, state)
  replicated = NamedSharding(mesh, P())
  state, g_variables = jax.device_put((state, g_variables), replicated)
  epoch_steps = steps_per_epoch(config, len(train_labels))
  total = num_train_steps(config, len(train_labels))
  initial_step = int(state.step)
  logging.info('%s: %d devices, steps %d to %d (%d per epoch).',
               'Madry training' if config.method == 'madry' else 'Fine-tuning', mesh.size,
               initial_step, total, epoch_steps)

  writer = metric_writers.create_default_writer(os.path.join(workdir, 'finetune'),
                                                just_logging=jax.process_index() > 0)
  step_fn = make_classifier_step(config, generator, discriminator, mesh)
  report_progress = periodic_actions.ReportProgress(num_train_steps=total, writer=writer)
  batch_sharding = NamedSharding(mesh, P(train.AXIS))
  pending = []
  for step in range(initial_step + 1, total + 1):
    idx = input_pipeline.batch_indices(config.seed, step - 1, num_examples=len(train_labels),
                                       batch_size=f.batch_size)
    batch = jax.device_put((train_images[idx], train_labels[idx]), batch_sharding)
    state, metrics = step_fn(state, g_variables, *batch)
    pending.append(metrics)
    last = step == total
    if step % f.log_every_steps == 0 or step % f.checkpoint_every_steps == 0 or last:
      train.write_train_metrics(writer, step, pending, manager)  # Waits for the step.
      pending = []
      report_progress(step)
    if step % epoch_steps == 0 or last:
      with report_progress.timed('eval'):
        accuracy = train.write_test_accuracy(
            writer, step, discriminator, state.discriminator.variables, test_images,
            test_labels, epsilon=f.epsilon, eval_config=config.eval, mesh=mesh)
      logging.info('epoch %.2f: %s', step / epoch_steps, accuracy)
    if step % f.checkpoint_every_steps == 0 or last:
      manager.save(step, args=ocp.args.StandardSave(state))
  manager.wait_until_finished()
  writer.flush()
  return state
