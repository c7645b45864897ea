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
update. The step runs data-parallel over all devices (`parallel.train_step`): per-device code with
collectives over the mesh axis 'batch' (`lax.pmean` of gradients and metrics, cross-replica
BatchNorm), jitted as a whole. All randomness, the attack's random starts included, is drawn for
the global batch before it is split, so a step gives the same result on any number of devices.
What a step is made of, fixed for a run, is one frozen `Settings`.

BatchNorm statistics, as in the official `train.py` (`train.keep_all_bn_updates=True`): every
training-mode pass updates the running statistics of the net it runs through, so the D step's
pass through G (`with torch.no_grad(): gen(z)` in train mode there) updates G's and the G step's
pass through D updates D's; in the D step D's are updated by the adversarial and by the fake
pass. With `keep_all_bn_updates=False` a step keeps only the updates of the net it trains.
"""

import dataclasses
import functools
from typing import Dict, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from rob_gan_jax import checkpoints
from rob_gan_jax import losses
from rob_gan_jax import parallel
from rob_gan_jax import stage as stage_lib
from rob_gan_jax import state as state_lib
from rob_gan_jax import task as task_lib
from rob_gan_jax.attacks import heads
from rob_gan_jax.attacks import pgd
from rob_gan_jax.input_pipeline import transforms

AXIS = parallel.AXIS


@dataclasses.dataclass(frozen=True)
class Settings:
  """What a co-training step is made of, fixed for a run (hashable: a jitted step holds it).

  Attributes:
    generator, discriminator: the modules (axis_name `AXIS`).
    task: the run's `task.Task` (the attack's objective, conditional or not, labels for G).
    attack: step 1's attack on real images (`config.attack`; 0 steps: none).
    loss_type: 'split' (eq. 9) or 'acgan' (eq. 8); gan_loss: one of `losses.GAN_LOSSES`.
    generator_class_weight: the weight of G's class term (`losses.generator_loss`).
    keep_all_bn_updates: `train.keep_all_bn_updates` (module docstring).
    n_dis: D updates per G update.
    unroll: unroll the PGD steps and the D updates (`parallel.unroll_loops`).
  """
  generator: nn.Module
  discriminator: nn.Module
  task: task_lib.Task
  attack: pgd.AttackSpec
  loss_type: str
  gan_loss: str
  generator_class_weight: float
  keep_all_bn_updates: bool
  n_dis: int
  unroll: bool

  @classmethod
  def from_config(cls, config, task: task_lib.Task, generator: nn.Module,
                  discriminator: nn.Module) -> 'Settings':
    t = config.train
    return cls(generator=generator, discriminator=discriminator, task=task,
               attack=pgd.AttackSpec.from_config(config.attack, 'attack'), loss_type=t.loss,
               gan_loss=t.gan_loss, generator_class_weight=t.generator_class_weight,
               keep_all_bn_updates=t.keep_all_bn_updates, n_dis=t.n_dis,
               unroll=parallel.unroll_loops(config.unroll))


def validate_config(config: ml_collections.ConfigDict, task: task_lib.Task) -> None:
  """Raises ValueError, before any compute, for co-training settings that cannot work."""
  if task.training_stage('train') != 'cotrain':
    raise ValueError(f'co-training is method robgan (step 1) or asgan, got method '
                     f'{config.method!r}')
  transforms.check_dataset_config(config.dataset)
  pgd.AttackSpec.from_config(config.attack, 'attack')
  pgd.AttackSpec.from_config(config.eval.attack, 'eval.attack')
  stage_lib.check_config(config, 'cotrain')
  if config.train.loss not in losses.LOSS_TYPES:
    raise ValueError(f'train.loss must be one of {losses.LOSS_TYPES}, got {config.train.loss!r}')
  losses.check_gan_loss(config.train.gan_loss)
  for name in ('n_dis', 'num_steps'):
    if config.train[name] < 1:
      raise ValueError(f'train.{name} must be >= 1, got {config.train[name]}')
  if not config.train.generator_class_weight >= 0:
    raise ValueError('train.generator_class_weight must be >= 0, got '
                     f'{config.train.generator_class_weight}')


def attack_real_images(settings: Settings, variables, x_real: jax.Array, y_real: jax.Array,
                       attack_keys: jax.Array) -> jax.Array:
  """PGD on real images ascending D's non-saturating real-image loss (D in inference mode),
  whatever `train.gan_loss` D is trained with: the objective `task.cotrain_objective` (official
  `attack_Linf_PGD`; `attack_Linf_PGD_bin` for a D without class head, AS-GAN). An attack of 0
  steps returns x_real (AC-GAN or vanilla GAN). `attack_keys` (b,) are the per-example keys of
  the random start.

  Returns:
    (b, H, W, C) float32 x_adv in [-1, 1], ||x_adv - x_real||_inf <= attack.epsilon.
  """
  a = settings.attack
  return heads.pgd_on(settings.discriminator, variables, x_real, y_real,
                      objective=settings.task.cotrain_objective, epsilon=a.epsilon,
                      step_size=a.step_size, num_steps=a.num_steps, random_start=a.random_start,
                      keys=attack_keys, unroll=settings.unroll)


def discriminator_step(state: state_lib.GANState, x_real, y_real, z, y_fake, attack_keys, *,
                       settings: Settings) -> Tuple[state_lib.GANState, Dict[str, jax.Array]]:
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

  Returns:
    The new state and scalar metrics averaged over devices.
  """
  st = settings
  conditional = st.task.conditional
  d, g = state.discriminator, state.generator
  x_fake, g_updates = st.generator.apply(g.variables, z, y_fake, train=True,
                                         mutable=['batch_stats'])
  if st.keep_all_bn_updates:
    g = g.replace(batch_stats=g_updates['batch_stats'])

  x_adv = attack_real_images(st, d.variables, x_real, y_real, attack_keys)

  def loss_fn(params):
    (src_real, cls_real), updates = st.discriminator.apply(
        {'params': params, 'batch_stats': d.batch_stats}, x_adv, train=True,
        mutable=['batch_stats'])
    (src_fake, cls_fake), updates = st.discriminator.apply(
        {'params': params, **updates}, x_fake, train=True, mutable=['batch_stats'])
    loss_real = losses.discriminator_real_loss(source_logits=src_real, class_logits=cls_real,
                                               labels=y_real, gan_loss=st.gan_loss,
                                               conditional=conditional)
    loss_fake = losses.discriminator_fake_loss(source_logits=src_fake, class_logits=cls_fake,
                                               labels=y_fake, loss_type=st.loss_type,
                                               gan_loss=st.gan_loss, conditional=conditional)
    metrics = {
        'd_loss': loss_real + loss_fake,
        'd_loss_real': loss_real,
        'd_loss_fake': loss_fake,
        'd_source_accuracy_real': jnp.mean(src_real > 0),
        'd_source_accuracy_fake': jnp.mean(src_fake < 0),
    }
    if conditional:
      metrics['d_class_accuracy_real'] = jnp.mean(jnp.argmax(cls_real, -1) == y_real)
    return loss_real + loss_fake, (updates['batch_stats'], metrics)

  grads, (batch_stats, metrics) = jax.grad(loss_fn, has_aux=True)(d.params)
  grads, metrics = jax.lax.pmean((grads, metrics), AXIS)
  d = d.apply_gradients(grads=grads, batch_stats=batch_stats)
  return state.replace(generator=g, discriminator=d), metrics


def generator_step(state: state_lib.GANState, z, y_fake, *,
                   settings: Settings) -> Tuple[state_lib.GANState, Dict[str, jax.Array]]:
  """One G update: G minimises `generator_loss(D(G(z, y)))`, fooling the source head (and,
  with a class head, being classified as y). D runs in training mode as in the official code;
  only its input gradient is computed, its running statistics (and spectral-norm vectors)
  change with `keep_all_bn_updates`.

  Returns:
    The new state and scalar metrics averaged over devices.
  """
  st = settings
  g, d = state.generator, state.discriminator

  def loss_fn(params):
    x_fake, g_updates = st.generator.apply({'params': params, 'batch_stats': g.batch_stats}, z,
                                           y_fake, train=True, mutable=['batch_stats'])
    (source, classes), d_updates = st.discriminator.apply(d.variables, x_fake, train=True,
                                                          mutable=['batch_stats'])
    loss = losses.generator_loss(source_logits=source, class_logits=classes, labels=y_fake,
                                 gan_loss=st.gan_loss, conditional=st.task.conditional,
                                 class_weight=st.generator_class_weight)
    return loss, (g_updates['batch_stats'], d_updates['batch_stats'], {'g_loss': loss})

  grads, (batch_stats, d_batch_stats, metrics) = jax.grad(loss_fn, has_aux=True)(g.params)
  grads, metrics = jax.lax.pmean((grads, metrics), AXIS)
  g = g.apply_gradients(grads=grads, batch_stats=batch_stats)
  if st.keep_all_bn_updates:
    d = d.replace(batch_stats=d_batch_stats)
  return state.replace(generator=g, discriminator=d), metrics


def train_iteration(state: state_lib.GANState, batch, *,
                    settings: Settings) -> Tuple[state_lib.GANState, Dict[str, jax.Array]]:
  """`n_dis` D steps then one G step (per-device code).

  The D steps are unrolled at trace time, or with `settings.unroll` False (the default on GPU
  and TPU, `parallel.unroll_loops`) one compiled D step runs in a `lax.scan`; the results are the
  same. `batch` holds this device's 'images' (n_dis, b, H, W, C) float32, 'labels' (n_dis, b),
  'z' (n_dis + 1, b, z_dim), 'y_fake' (n_dis + 1, b) (the last entries feed the G step) and
  'attack_keys' (n_dis, b).
  """
  n_dis = settings.n_dis
  d_step = functools.partial(discriminator_step, settings=settings)
  d_batches = (batch['images'], batch['labels'], batch['z'][:n_dis], batch['y_fake'][:n_dis],
               batch['attack_keys'])
  if settings.unroll:
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
                                    settings=settings)
  metrics = {**jax.tree.map(jnp.mean, d_metrics), **g_metrics}
  return state.replace(step=state.step + 1), metrics


def make_train_step(config, settings: Settings, mesh: jax.sharding.Mesh):
  """The jitted `train_step(state, images, labels) -> (state, metrics)`, state donated.

  `images` (n_dis, B, H, W, C) uint8 and `labels` (n_dis, B) int32 are the global batches of the
  step's D updates. Augmentation, latents, fake labels and the attack's per-example keys come
  from `fold_in(state.key, state.step)` and are drawn for the global batch before it is split,
  so a step gives the same result on any number of devices.
  """
  data, z_dim = config.dataset, config.model.z_dim
  n_dis, batch_size = settings.n_dis, config.train.batch_size

  def prepare(state, images, labels):
    key = jax.random.fold_in(state.key, state.step)
    aug_key, z_key, y_key, attack_key = jax.random.split(key, 4)
    x = transforms.augment(images.reshape((-1,) + images.shape[2:]), aug_key, data,
                               dequantization_noise=data.dequantization_noise)
    return {
        'images': x.reshape(images.shape),
        'labels': labels,
        'z': jax.random.normal(z_key, (n_dis + 1, batch_size, z_dim)),
        'y_fake': jax.random.randint(y_key, (n_dis + 1, batch_size), 0,
                                     settings.task.label_range),
        'attack_keys': jax.random.split(attack_key, (n_dis, batch_size)),
    }

  return parallel.train_step(functools.partial(train_iteration, settings=settings), prepare,
                             mesh, batch_axis=1,
                             cpu_eigen_convolutions=config.cpu_eigen_convolutions)


def train_and_evaluate(config: ml_collections.ConfigDict, task: task_lib.Task,
                       workdir: str) -> state_lib.GANState:
  """Runs (or resumes) Rob-GAN step-1 co-training or AS-GAN training in `workdir`.

  Writes `config.json`, TensorBoard summaries, the outputs of the evaluators with a
  `config.evals.<name>.every_steps` (e.g. `samples/step_*.png`) and Orbax checkpoints under `checkpoints/`; starts from the latest
  checkpoint if there is one.

  Returns:
    The final GANState.

  Raises:
    ValueError: invalid config; as `stage.train`.
    workdir.WorkdirInUseError: another training run holds the workdir.
    FileNotFoundError: missing data set.
    FloatingPointError: a non-finite loss or state (the last good checkpoint is kept).
  """
  validate_config(config, task)

  def plan(data, context):
    settings = Settings.from_config(config, task, context.generator, context.discriminator)
    return stage_lib.Plan(
        state=state_lib.create_gan_state(config, context.generator, context.discriminator,
                                         data.num_examples),
        train_step=make_train_step(config, settings, context.mesh),
        num_steps=config.train.num_steps,
        networks=lambda step, state: checkpoints.Weights(
            config=config, stage='cotrain', step=step, generator=state.generator.variables,
            discriminator=state.discriminator.variables))

  return stage_lib.train(config, task, workdir, stage='cotrain', batches_per_step=config.train.n_dis,
                         plan=plan)
