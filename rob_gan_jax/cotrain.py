"""Co-training of the generator, the discriminator and the PGD attacker: Rob-GAN and AS-GAN.

Rob-GAN step 1 (`method='robgan'`): Liu & Hsieh, "Rob-GAN: Generator, Discriminator and
Adversarial Attacker" (CVPR 2019), Sec. 4 and Algorithm 1; official code `train.py` of
github.com/xuanqing94/RobGAN. G(z, y) is class-conditional, D has a source and a class head.

AS-GAN (`method='asgan'`): Liu, Xu, Li, Pei, Shi, Zhao, "Adversarial symmetric GANs: bridging
adversarial samples and adversarial networks" (Neural Networks 2021, arXiv 1912.09670). An
unconditional GAN (`model.num_classes=0`: G(z), D with the source head only) whose D is also
trained adversarially on real images: before each D update the real batch is perturbed by PGD to
maximise D's loss on it (towards "fake"). The official Rob-GAN repository had the same idea in
its removed `train_cifar_nosup.py` (`attack_Linf_PGD_bin`); its notes record one- and three-step
attacks at eps 0.01 with step 0.0078, which are our defaults (configs/cifar10_asgan.py: one
step, the cheap setting). The attack settings of the AS-GAN paper were not available to us; it
reports about 25 % more compute than the vanilla GAN, which one step matches.
`attack.num_steps=0` is the vanilla GAN: the same step with the real images untouched.

The D loss is that of `config.train.gan_loss` ('non_saturating', the official code's; 'hinge';
'minimax'), with the class terms of `losses` when D has a class head. Whatever the GAN loss, the
attack ascends D's non-saturating real loss (the official code's loss; for the source head alone
its sign gradient is that of -logit, so it also moves the images a hinge D is confident about,
where the hinge loss is flat).

One training step is one iteration in the SN-GAN sense: `n_dis` discriminator updates, each on a
new batch of real images attacked by PGD and a new batch of generated images, then one generator
update. The step runs data-parallel over all devices: per-device code with collectives over the
mesh axis 'batch' (`lax.pmean` of gradients and metrics, cross-replica BatchNorm), wrapped in
`jax.shard_map` over a 1-D mesh and jitted as a whole. All randomness, the attack's random starts
included, is drawn for the global batch before it is split, so a step gives the same result on
any number of devices.

BatchNorm statistics, as in the official `train.py` (`train.keep_all_bn_updates=True`): every
training-mode pass updates the running statistics of the net it runs through, so the D step's
pass through G (`with torch.no_grad(): gen(z)` in train mode there) updates G's and the G step's
pass through D updates D's; in the D step D's are updated by the adversarial and by the fake
pass. With `keep_all_bn_updates=False` a step keeps only the updates of the net it trains.
"""

import functools
from typing import Dict, Optional, Tuple

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import ml_collections

from rob_gan_jax import attacks
from rob_gan_jax import checkpoints
from rob_gan_jax import evaluators
from rob_gan_jax import input_pipeline
from rob_gan_jax import loop
from rob_gan_jax import losses
from rob_gan_jax import models
from rob_gan_jax import parallel
from rob_gan_jax import state as state_lib
from rob_gan_jax import task as task_lib
from rob_gan_jax import workdir as workdir_lib

AXIS = parallel.AXIS


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError, before any compute, for co-training settings that cannot work."""
  if task_lib.Task.from_config(config).program('train') != 'cotrain':
    raise ValueError(f'co-training is method robgan (step 1) or asgan, got method '
                     f'{config.method!r}')
  input_pipeline.check_dataset_config(config.dataset)
  attacks.check_attack_config(config.attack, 'attack')
  attacks.check_attack_config(config.eval.attack, 'eval.attack')
  loop.check_loop_config(config.train, 'train')
  loop.check_evaluator_periods(config.train.evaluators, 'train.evaluators')
  if config.train.loss not in losses.LOSS_TYPES:
    raise ValueError(f'train.loss must be one of {losses.LOSS_TYPES}, got {config.train.loss!r}')
  losses.check_gan_loss(config.train.gan_loss)
  for name in ('n_dis', 'num_steps'):
    if config.train[name] < 1:
      raise ValueError(f'train.{name} must be >= 1, got {config.train[name]}')


def attack_real_images(discriminator: nn.Module, variables, x_real: jax.Array, y_real: jax.Array,
                       attack_keys: jax.Array, *, attack_config,
                       unroll: Optional[bool] = None) -> jax.Array:
  """PGD on real images ascending D's non-saturating real-image loss (D in inference mode),
  whatever `train.gan_loss` D is trained with (official `attack_Linf_PGD`; `attack_Linf_PGD_bin`
  for a D without class head, AS-GAN). `attack_config.num_steps` 0 returns x_real (AC-GAN or
  vanilla GAN). `attack_keys` (b,) are the per-example keys of the random start.

  Returns:
    (b, H, W, C) float32 x_adv in [-1, 1], ||x_adv - x_real||_inf <= attack_config.epsilon.
  """
  def attack_loss(x, y):
    source, classes = discriminator.apply(variables, x, train=False)
    return losses.discriminator_real_loss(source_logits=source, class_logits=classes, labels=y)

  return attacks.pgd_linf(
      attack_loss, x_real, y_real, epsilon=attack_config.epsilon,
      step_size=attack_config.step_size, num_steps=attack_config.num_steps,
      random_start=attack_config.random_start, keys=attack_keys, unroll=unroll)


def discriminator_step(state: state_lib.GANState, x_real, y_real, z, y_fake, attack_keys, *,
                       generator: nn.Module, discriminator: nn.Module, attack_config,
                       loss_type: str, gan_loss: str, keep_all_bn_updates: bool,
                       unroll: Optional[bool] = None) -> Tuple[state_lib.GANState,
                                                               Dict[str, jax.Array]]:
  """One D update (paper eqs. 8/9; AS-GAN's source terms alone for an unconditional D).

  D minimises `discriminator_real_loss(D(x_adv)) + discriminator_fake_loss(D(G(z, y_fake)))`.
  It sees the adversarial and the fake batch in separate training-mode passes, as the official
  code does, so each has its own BatchNorm statistics. G runs in training mode and does not
  change (its running statistics do with `keep_all_bn_updates`).

  Args:
    state: the replicated GANState.
    x_real: (b, H, W, C) float32 augmented real images; y_real: (b,) int32 labels.
    z: (b, z_dim) latents; y_fake: (b,) int32 labels for G (zeros when unconditional).
    attack_keys: (b,) PRNG keys of the attack's random start, drawn for the global batch.
    loss_type: 'split' (eq. 9) or 'acgan' (eq. 8); gan_loss: one of `losses.GAN_LOSSES`.

  Returns:
    The new state and scalar metrics averaged over devices.
  """
  d, g = state.discriminator, state.generator
  x_fake, g_updates = generator.apply(g.variables, z, y_fake, train=True,
                                      mutable=['batch_stats'])
  if keep_all_bn_updates:
    g = g.replace(batch_stats=g_updates['batch_stats'])

  x_adv = attack_real_images(discriminator, d.variables, x_real, y_real, attack_keys,
                             attack_config=attack_config, unroll=unroll)

  def loss_fn(params):
    (src_real, cls_real), updates = discriminator.apply(
        {'params': params, 'batch_stats': d.batch_stats}, x_adv, train=True,
        mutable=['batch_stats'])
    (src_fake, cls_fake), updates = discriminator.apply(
        {'params': params, **updates}, x_fake, train=True, mutable=['batch_stats'])
    loss_real = losses.discriminator_real_loss(source_logits=src_real, class_logits=cls_real,
                                               labels=y_real, gan_loss=gan_loss)
    loss_fake = losses.discriminator_fake_loss(source_logits=src_fake, class_logits=cls_fake,
                                               labels=y_fake, loss_type=loss_type,
                                               gan_loss=gan_loss)
    metrics = {
        'd_loss': loss_real + loss_fake,
        'd_loss_real': loss_real,
        'd_loss_fake': loss_fake,
        'd_source_accuracy_real': jnp.mean(src_real > 0),
        'd_source_accuracy_fake': jnp.mean(src_fake < 0),
    }
    if cls_real.shape[-1]:
      metrics['d_class_accuracy_real'] = jnp.mean(jnp.argmax(cls_real, -1) == y_real)
    return loss_real + loss_fake, (updates['batch_stats'], metrics)

  grads, (batch_stats, metrics) = jax.grad(loss_fn, has_aux=True)(d.params)
  grads, metrics = jax.lax.pmean((grads, metrics), AXIS)
  d = d.apply_gradients(grads=grads, batch_stats=batch_stats)
  return state.replace(generator=g, discriminator=d), metrics


def generator_step(state: state_lib.GANState, z, y_fake, *, generator: nn.Module,
                   discriminator: nn.Module, gan_loss: str,
                   keep_all_bn_updates: bool) -> Tuple[state_lib.GANState, Dict[str, jax.Array]]:
  """One G update: G minimises `generator_loss(D(G(z, y)))`, fooling the source head (and,
  with a class head, being classified as y). D runs in training mode as in the official code;
  only its input gradient is computed, its running statistics (and spectral-norm vectors)
  change with `keep_all_bn_updates`.

  Returns:
    The new state and scalar metrics averaged over devices.
  """
  g, d = state.generator, state.discriminator

  def loss_fn(params):
    x_fake, g_updates = generator.apply({'params': params, 'batch_stats': g.batch_stats}, z,
                                        y_fake, train=True, mutable=['batch_stats'])
    (source, classes), d_updates = discriminator.apply(d.variables, x_fake, train=True,
                                                       mutable=['batch_stats'])
    loss = losses.generator_loss(source_logits=source, class_logits=classes, labels=y_fake,
                                 gan_loss=gan_loss)
    return loss, (g_updates['batch_stats'], d_updates['batch_stats'], {'g_loss': loss})

  grads, (batch_stats, d_batch_stats, metrics) = jax.grad(loss_fn, has_aux=True)(g.params)
  grads, metrics = jax.lax.pmean((grads, metrics), AXIS)
  g = g.apply_gradients(grads=grads, batch_stats=batch_stats)
  if keep_all_bn_updates:
    d = d.replace(batch_stats=d_batch_stats)
  return state.replace(generator=g, discriminator=d), metrics


def train_iteration(state: state_lib.GANState, batch, *, generator, discriminator,
                    config) -> Tuple[state_lib.GANState, Dict[str, jax.Array]]:
  """`n_dis` D steps then one G step (per-device code).

  The D steps are unrolled at trace time, or with `config.unroll=False` (the default on GPU and
  TPU, `parallel.unroll_loops`) one compiled D step runs in a `lax.scan`; the results are the
  same. `batch` holds this device's 'images' (n_dis, b, H, W, C) float32, 'labels' (n_dis, b),
  'z' (n_dis + 1, b, z_dim), 'y_fake' (n_dis + 1, b) (the last entries feed the G step) and
  'attack_keys' (n_dis, b).
  """
  t = config.train
  n_dis, common = t.n_dis, dict(gan_loss=t.gan_loss, keep_all_bn_updates=t.keep_all_bn_updates)
  unroll = parallel.unroll_loops(config.unroll)
  d_step = functools.partial(discriminator_step, generator=generator,
                             discriminator=discriminator, attack_config=config.attack,
                             loss_type=t.loss, unroll=unroll, **common)
  d_batches = (batch['images'], batch['labels'], batch['z'][:n_dis], batch['y_fake'][:n_dis],
               batch['attack_keys'])
  if unroll:
    # A Python loop, unrolled at trace time: XLA:CPU runs convolutions inside a `while` body ~3x
    # slower (see pgd_linf), and a `lax.scan(..., unroll=True)` made the cnn_32 iteration 20x
    # slower than its D and G steps on their own (16 s vs 0.8 s at batch 64, ngf = ndf = 32).
    d_metrics = []
    for i in range(n_dis):
      state, metrics = d_step(state, *(x[i] for x in d_batches))
      d_metrics.append(metrics)
    d_metrics = jax.tree.map(lambda *m: jnp.stack(m), *d_metrics)
  else:  # One compiled D step in a loop (accelerators).
    state, d_metrics = jax.lax.scan(lambda s, b: d_step(s, *b), state, d_batches)
  state, g_metrics = generator_step(state, batch['z'][n_dis], batch['y_fake'][n_dis],
                                    generator=generator, discriminator=discriminator, **common)
  metrics = {**jax.tree.map(jnp.mean, d_metrics), **g_metrics}
  return state.replace(step=state.step + 1), metrics


def make_train_step(config, generator: nn.Module, discriminator: nn.Module,
                    mesh: jax.sharding.Mesh):
  """The jitted `train_step(state, images, labels) -> (state, metrics)`, state donated.

  `images` (n_dis, B, H, W, C) uint8 and `labels` (n_dis, B) int32 are the global batches of the
  step's D updates. Augmentation, latents, fake labels and the attack's per-example keys come
  from `fold_in(state.key, state.step)` and are drawn for the global batch before it is split,
  so a step gives the same result on any number of devices.
  """
  m, data = config.model, config.dataset
  n_dis, batch_size = config.train.n_dis, config.train.batch_size
  label_range = task_lib.Task.from_config(config).label_range
  per_device = functools.partial(train_iteration, generator=generator,
                                 discriminator=discriminator, config=config)
  # check_vma=False: gradients are averaged explicitly with lax.pmean (the style of flax's
  # examples); with VMA checking JAX would psum gradients of replicated params implicitly.
  sharded = jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(None, AXIS)),
                          out_specs=(P(), P()), check_vma=False)

  @functools.partial(jax.jit, donate_argnums=0,
                     compiler_options=parallel.compiler_options(config.cpu_eigen_convolutions))
  def train_step(state, images, labels):
    key = jax.random.fold_in(state.key, state.step)
    aug_key, z_key, y_key, attack_key = jax.random.split(key, 4)
    x = input_pipeline.augment(images.reshape((-1,) + images.shape[2:]), aug_key, data,
                               dequantization_noise=data.dequantization_noise)
    batch = {
        'images': x.reshape(images.shape),
        'labels': labels,
        'z': jax.random.normal(z_key, (n_dis + 1, batch_size, m.z_dim)),
        'y_fake': jax.random.randint(y_key, (n_dis + 1, batch_size), 0, label_range),
        'attack_keys': jax.random.split(attack_key, (n_dis, batch_size)),
    }
    return sharded(state, batch)

  return train_step


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> state_lib.GANState:
  """Runs (or resumes) Rob-GAN step-1 co-training or AS-GAN training in `workdir`.

  Writes `config.json`, TensorBoard summaries, the outputs of `train.evaluators` (e.g.
  `samples/step_*.png`) and Orbax checkpoints under `checkpoints/`; starts from the latest
  checkpoint if there is one.

  Returns:
    The final GANState.

  Raises:
    ValueError: invalid config, a batch that does not divide by the device count, settings that
      differ from those of the workdir's checkpoints (`workdir.check_and_write_config`),
      wrong image size or class count.
    workdir.WorkdirInUseError: another training run holds the workdir.
    FileNotFoundError: missing data set.
    FloatingPointError: a non-finite loss or state (the last good checkpoint is kept).
  """
  validate_config(config)
  t = config.train
  generator, discriminator = models.create_models(config.model, axis_name=AXIS)
  mesh = parallel.make_mesh()
  parallel.check_batch_size(t.batch_size, mesh, 'train.batch_size')
  with workdir_lib.lock(workdir, 'train'):
    workdir_lib.check_and_write_config(config, workdir)
    train_data = input_pipeline.training_data(
        config, batch_size=t.batch_size, batches_per_step=t.n_dis,
        rows=parallel.process_rows(t.batch_size, mesh))
    logging.info('Co-training on %d training examples.', train_data.num_examples)
    context = evaluators.Context(
        config, task_lib.Task.from_config(config), workdir, stage='cotrain', training=True,
        generator=generator, discriminator=discriminator, mesh=mesh)
    networks = lambda step, state: checkpoints.Weights(
        config=config, stage='cotrain', step=step, generator=state.generator.variables,
        discriminator=state.discriminator.variables)
    return loop.run(
        state=state_lib.create_gan_state(config, generator, discriminator,
                                         train_data.num_examples),
        train_step=make_train_step(config, generator, discriminator, mesh),
        host_batch=train_data.host_batch,
        num_steps=t.num_steps, settings=t, mesh=mesh, workdir=workdir, stage='cotrain',
        hooks=loop.evaluator_hooks(context, t.evaluators, directory=workdir, networks=networks))
