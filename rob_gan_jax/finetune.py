"""Step 2 of Rob-GAN (fine-tuning D's classifier) and the Madry adversarial-training baseline.

Fine-tuning, paper eq. 10: starting from the co-trained D, minimise
    CE(f(x_real_adv), y) + lambda * CE(f(x_fake_adv), y_fake),
with x_fake = G(z, y_fake) from the frozen co-trained G and both adversarial batches from PGD on
the class cross-entropy alone (official `finetune.py` and `attack_label_Linf_PGD`: 5 steps of
eps / 5). Only D changes. Adam restarts at each stage, as the official code builds a new one
(`finetune.restart_adam_at_stage`).

D's BatchNorm: the paper is silent. The official code puts D in eval mode in its first attack
(`attack_label_Linf_PGD` calls `dis.eval()`) and never back, so it trains D normalising by the
co-trained running statistics, frozen (`finetune.discriminator_train_mode=False`). Measured on
CIFAR-10 (BENCHMARKS.md, "Step 2's BatchNorm"), that mode at the official learning rate turns
the classifier into one that gives every image the uniform distribution within 60 updates,
whether or not its statistics are first re-estimated on real images
(`finetune.recalibrate_batch_norm`), so the default is training mode (True: batch statistics,
updated running averages), and the official mode a named option. `loop.CollapseGuard` stops a
run whose classifier collapses anyway.

Madry baseline (`config.method = 'madry'`): the same update with lambda = 0 and no generator,
starting from a randomly initialised D, i.e. Madry et al.'s adversarial training of the same
network as a classifier only (the source head gets no gradient), in training mode
(configs/cifar10_madry.py sets `finetune.discriminator_train_mode=True`).

Checkpoints go to `workdir/finetune/checkpoints` (Madry: `workdir/madry/checkpoints`), with the
same resume guarantees as step 1.
Augmentation is crop and flip without the dequantization noise, as in the official `finetune.py`.
All randomness, the attacks' random starts included, is drawn for the global batch before it is
split over devices (`parallel.train_step`), so a step gives the same result on any number of
devices. What a step is made of, fixed for a run, is one frozen `Settings`.
"""

import dataclasses
import json
import os
from typing import Dict, Optional, Tuple

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from rob_gan_jax import checkpoints
from rob_gan_jax import evaluators
from rob_gan_jax import loop
from rob_gan_jax import losses
from rob_gan_jax import parallel
from rob_gan_jax import recalibration
from rob_gan_jax import robustness
from rob_gan_jax import stage as stage_lib
from rob_gan_jax import state as state_lib
from rob_gan_jax import task as task_lib
from rob_gan_jax import workdir as workdir_lib
from rob_gan_jax.attacks import heads
from rob_gan_jax.attacks import pgd
from rob_gan_jax.models import sampling
from rob_gan_jax.input_pipeline import transforms

AXIS = parallel.AXIS


@dataclasses.dataclass(frozen=True)
class Settings:
  """What a classifier-training step is made of, fixed for a run (hashable: a jitted step holds
  it): the modules (axis_name `AXIS`), the attack (`finetune.attack`), lambda of eq. 10
  (`finetune.fake_weight`; 0: no fake term, the Madry baseline), D's BatchNorm mode
  (`finetune.discriminator_train_mode`) and whether PGD is unrolled (`parallel.unroll_loops`)."""
  generator: nn.Module
  discriminator: nn.Module
  attack: pgd.AttackSpec
  fake_weight: float
  discriminator_train_mode: bool
  unroll: bool

  @classmethod
  def from_config(cls, config, generator: nn.Module, discriminator: nn.Module) -> 'Settings':
    f = config.finetune
    return cls(generator=generator, discriminator=discriminator,
               attack=pgd.AttackSpec.from_config(f.attack, 'finetune.attack'),
               fake_weight=float(f.fake_weight),
               discriminator_train_mode=bool(f.discriminator_train_mode),
               unroll=parallel.unroll_loops(config.unroll))


def validate_config(config: ml_collections.ConfigDict, task: task_lib.Task) -> str:
  """Raises ValueError, before any compute, for classifier-training settings that cannot work.

  Returns:
    The stage trained: 'finetune' or 'madry'.
  """
  f = config.finetune
  stage = task.classifier_stage
  transforms.check_dataset_config(config.dataset)
  pgd.AttackSpec.from_config(f.attack, 'finetune.attack')
  pgd.AttackSpec.from_config(config.eval.attack, 'eval.attack')
  stage_lib.check_config(config, stage)
  if f.fake_weight < 0:
    raise ValueError(f'finetune.fake_weight (lambda) must be >= 0, got {f.fake_weight}')
  if stage == 'madry' and f.fake_weight:
    raise ValueError('the Madry baseline uses no generated data: set finetune.fake_weight=0')
  if not f.stage_epochs or min(f.stage_epochs) <= 0:
    raise ValueError(f'finetune.stage_epochs must be positive, got {f.stage_epochs}')
  if f.num_steps is not None and f.num_steps < 1:
    raise ValueError(f'finetune.num_steps must be >= 1 or None, got {f.num_steps}')
  recalibration.check_mode(f.recalibrate_batch_norm, config.model, task,
                           'finetune.recalibrate_batch_norm')
  if f.recalibrate_batch_norm != 'none':
    if stage == 'madry':
      raise ValueError('the Madry baseline starts from a random D, which has no statistics to '
                       "recalibrate: set finetune.recalibrate_batch_norm='none'")
    if f.recalibration_examples < f.batch_size:
      raise ValueError(f'finetune.recalibration_examples ({f.recalibration_examples}) must be at '
                       f'least finetune.batch_size ({f.batch_size})')
  return stage


def num_train_steps(config, num_train_examples: int) -> int:
  """Updates of the run: all stages, or `finetune.num_steps` if that is smaller."""
  epoch_steps = state_lib.classifier_steps_per_epoch(config, num_train_examples)
  total = int(round(sum(config.finetune.stage_epochs) * epoch_steps))
  return min(total, config.finetune.num_steps or total)


def classifier_step(state: state_lib.ClassifierState, x_real, y_real, z, y_fake, real_keys,
                    fake_keys, *, settings: Settings
                    ) -> Tuple[state_lib.ClassifierState, Dict[str, jax.Array]]:
  """One update of D's classifier on eq. 10 (per-device code inside shard_map over 'batch').

  Both batches are attacked with D in inference mode, then scored in inference mode
  (`discriminator_train_mode=False`: the running statistics, unchanged) or in training mode
  (True: each batch in its own pass, updating the running statistics).

  Args:
    state: the replicated ClassifierState; its frozen `generator` makes the fake batch.
    x_real: (b, H, W, C) float32 augmented real images; y_real: (b,) int32.
    z: (b, z_dim) latents; y_fake: (b,) int32 labels for G (unused when fake_weight is 0).
    real_keys, fake_keys: (b,) per-example PRNG keys of the two attacks' random starts.

  Returns:
    The new state and scalar metrics averaged over devices, among them `max_class_share` and
    `prediction_information` of the predictions on the attacked real batch
    (`robustness.prediction_statistics`, for `loop.CollapseGuard`).
  """
  st = settings
  d = state.discriminator
  a = st.attack
  attack = lambda x, y, keys: heads.pgd_on(
      st.discriminator, d.variables, x, y, objective='class', epsilon=a.epsilon,
      step_size=a.step_size, num_steps=a.num_steps, random_start=a.random_start, keys=keys,
      unroll=st.unroll)
  x_real_adv = attack(x_real, y_real, real_keys)
  use_fake = st.fake_weight > 0
  if use_fake:
    # Frozen G in training mode (batch statistics), as in co-training; nothing of G changes.
    x_fake = sampling.generate(st.generator, state.generator, z, y_fake, train=True)
    x_fake_adv = attack(x_fake, y_fake, fake_keys)

  def class_logits(params, batch_stats, x):
    """D's class logits and its BatchNorm statistics after the pass."""
    variables = {'params': params, 'batch_stats': batch_stats}
    if not st.discriminator_train_mode:
      return heads.class_logits(st.discriminator, variables, x), batch_stats
    (_, logits), updates = st.discriminator.apply(variables, x, train=True,
                                                  mutable=['batch_stats'])
    return logits, updates['batch_stats']

  def loss_fn(params):
    logits_real, batch_stats = class_logits(params, d.batch_stats, x_real_adv)
    metrics = {'accuracy_real_adv': jnp.mean(jnp.argmax(logits_real, -1) == y_real),
               'predictions': robustness.prediction_means(logits_real)}
    if use_fake:
      logits_fake, batch_stats = class_logits(params, batch_stats, x_fake_adv)
      loss = losses.finetune_loss(real_logits=logits_real, real_labels=y_real,
                                  fake_logits=logits_fake, fake_labels=y_fake,
                                  fake_weight=st.fake_weight)
      metrics['accuracy_fake_adv'] = jnp.mean(jnp.argmax(logits_fake, -1) == y_fake)
    else:  # lambda = 0: the fake term is not computed at all.
      loss = losses.class_loss(logits=logits_real, labels=y_real)
    return loss, (batch_stats, {'loss': loss, **metrics})

  grads, (batch_stats, metrics) = jax.grad(loss_fn, has_aux=True)(d.params)
  grads, metrics = jax.lax.pmean((grads, metrics), AXIS)
  metrics.update(robustness.prediction_statistics(metrics.pop('predictions')))
  d = d.apply_gradients(grads=grads, batch_stats=batch_stats)
  return state.replace(step=state.step + 1, discriminator=d), metrics


def make_classifier_step(config, task: task_lib.Task, settings: Settings,
                         mesh: jax.sharding.Mesh):
  """The jitted `step(state, images, labels) -> (state, metrics)`, state donated.

  `images` (1, B, H, W, C) uint8 and `labels` (1, B) int32 are the global batch; augmentation,
  latents, fake labels and the attacks' per-example keys come from
  `fold_in(state.key, state.step)`, drawn for the global batch before it is split.
  """
  data, z_dim = config.dataset, config.model.z_dim

  def prepare(state, images, labels):
    aug_key, z_key, y_key, attack_key = jax.random.split(
        jax.random.fold_in(state.key, state.step), 4)
    images, labels = images[0], labels[0]
    x = transforms.augment(images, aug_key, data, dequantization_noise=0.0)
    n = labels.shape[0]
    real_keys, fake_keys = jax.random.split(attack_key, (2, n))
    return (x, labels, jax.random.normal(z_key, (n, z_dim)),
            jax.random.randint(y_key, (n,), 0, task.label_range), real_keys, fake_keys)

  per_device = lambda state, batch: classifier_step(state, *batch, settings=settings)
  return parallel.train_step(per_device, prepare, mesh, batch_axis=0,
                             cpu_eigen_convolutions=config.cpu_eigen_convolutions)


def start_accuracy(context: evaluators.Context, workdir: str,
                   cotrained: Optional[checkpoints.Weights]) -> Dict[str, float]:
  """`pgd_accuracy`'s metrics of the co-trained D as step 2 starts from it (recalibrated if
  asked): measured when `cotrained` is given (a fresh run) and kept in
  `finetune/start_accuracy.json` for a resumed run."""
  path = os.path.join(workdir_lib.summary_dir(workdir, 'finetune'), 'start_accuracy.json')
  if cotrained is None:
    return workdir_lib.read_json(path)
  start = evaluators.create('pgd_accuracy', context).run(cotrained).metrics
  logging.info('finetune: before step 2, %s', start)
  if parallel.is_main_process():
    os.makedirs(os.path.dirname(path), exist_ok=True)
    workdir_lib.write_atomically(path, json.dumps(start))
  return start


def start_comparison(context: evaluators.Context, start: Dict[str, float],
                     networks) -> loop.Hook:
  """A hook for the last step of fine-tuning: the change of `pgd_accuracy`'s clean and PGD test
  accuracy since `start`, written as `test_accuracy_*_change` and, if clean accuracy fell,
  logged as a warning (fine-tuning is meant to improve the co-trained classifier; a drop with a
  gain under attack may be a fair trade, a drop of both is not). It returns the last step's test
  metrics too, so that `loop.CollapseGuard` judges the classifier fine-tuning ends with even
  when no evaluator measures it at the last step.
  """
  evaluator = evaluators.create('pgd_accuracy', context)

  def compare(step, state, writer):
    end = evaluator.run(networks(step, state)).metrics  # The evaluator hook's, if it ran.
    change = {f'{k}_change': end[k] - start[k]
              for k in ('test_accuracy_clean', 'test_accuracy_pgd')}
    writer.write_scalars(step, change)
    if change['test_accuracy_clean_change'] < 0:
      logging.warning(
          'finetune: after %d updates D\'s clean test accuracy is %.4f, below the %.4f it started '
          'from (PGD: %.4f from %.4f)%s. Fine-tuning with other BatchNorm handling or a lower '
          'learning rate may keep it (BENCHMARKS.md, "Step 2\'s BatchNorm").', step,
          end['test_accuracy_clean'], start['test_accuracy_clean'], end['test_accuracy_pgd'],
          start['test_accuracy_pgd'],
          ', lower under attack too' if change['test_accuracy_pgd_change'] < 0 else '')
    return {**end, **change}

  return loop.Hook('start_comparison', None, compare)


def train_classifier(config: ml_collections.ConfigDict, task: task_lib.Task,
                     workdir: str) -> state_lib.ClassifierState:
  """Runs (or resumes) fine-tuning (method 'robgan') or Madry training (method 'madry').

  Fine-tuning starts D from the latest co-training checkpoint of `finetune.init_workdir` (or
  `workdir`), its BatchNorm statistics re-estimated if `finetune.recalibrate_batch_norm`, and
  keeps that checkpoint's G, frozen, in its state (a resumed run uses its own checkpoint's G, not
  a newer co-training one); Madry training starts from a random D. Logs the loss and accuracies
  on adversarial batches and runs the evaluators with a `config.evals.<name>.every_epochs` (by
  default `pgd_accuracy`: clean and PGD accuracy on the test split after each epoch); fine-tuning
  also measures them
  before its first update and compares at its last (`start_comparison`).

  Returns:
    The final ClassifierState.

  Raises:
    ValueError: invalid config, a checkpoint of another architecture; as `stage.train`.
    FileNotFoundError: no co-training checkpoint (fine-tuning) or no data.
    workdir.WorkdirInUseError: another training run holds the workdir.
    FloatingPointError: a non-finite loss or state (the last good checkpoint is kept).
    loop.ClassifierCollapseError: the classifier came to predict one class
      (`finetune.collapse_guard`; the last good checkpoint is kept).
  """
  stage = validate_config(config, task)
  f = config.finetune
  cotrained = None
  resuming = checkpoints.latest_step(workdir_lib.checkpoint_dir(workdir, stage)) is not None
  if stage == 'finetune' and not resuming:  # A resumed run has its G in its checkpoint.
    try:
      cotrained = workdir_lib.load_weights(f.init_workdir or workdir, 'cotrain', config=config,
                                           task=task)
    except FileNotFoundError as e:
      raise FileNotFoundError(f'{e}. Fine-tuning starts from a co-training checkpoint: run '
                              '--mode=train first, or point --config.finetune.init_workdir at a '
                              'co-training workdir') from e

  def plan(data, context):
    start_weights = None if cotrained is None else recalibration.recalibrated(
        config, context.discriminator, cotrained, mode=f.recalibrate_batch_norm,
        num_examples=f.recalibration_examples, batch_size=f.batch_size)
    epoch_steps = state_lib.classifier_steps_per_epoch(config, data.num_examples)
    logging.info('%s: %d updates an epoch.', task_lib.STAGE_TITLES[stage], epoch_steps)
    networks = lambda step, state: checkpoints.Weights(
        config=config, stage=stage, step=step, generator=state.generator,
        discriminator=state.discriminator.variables)
    start = start_accuracy(context, workdir, start_weights) if stage == 'finetune' else None
    settings = Settings.from_config(config, context.generator, context.discriminator)
    return stage_lib.Plan(
        state=state_lib.create_classifier_state(config, task, context.generator,
                                                context.discriminator, data.num_examples,
                                                start_weights),
        train_step=make_classifier_step(config, task, settings, context.mesh),
        num_steps=num_train_steps(config, data.num_examples), networks=networks,
        steps_per_unit=epoch_steps,
        hooks=[start_comparison(context, start, networks)] if stage == 'finetune' else [],
        start_metrics=start)

  return stage_lib.train(config, task, workdir, stage=stage, batches_per_step=1, plan=plan)
