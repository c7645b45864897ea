"""Training states (one pytree each, what a checkpoint holds) and their optimizers.

- `GANState`: step-1 co-training (G and D with their optimizers).
- `ClassifierState`: D trained as a classifier, in step-2 fine-tuning or the Madry baseline.

Learning-rate decay is an optax schedule of the optimizer's own update count:
- co-training (`config.optim`): Adam, multiplied by `decay_factor` every `decay_every_epochs`
  epochs, each net counting its own updates (D makes n_dis updates per G update).
- classifier training (`config.finetune`): Adam, divided by 1 / `stage_factor` at the end of each
  stage of `stage_epochs` (official `finetune.py`: 20, 20, 10, 10 epochs, factor 0.1).
The official code builds new Adam optimizers at each decay (`train.py`) and after each stage
(`finetune.py`), so the moments and the bias-correction count restart there. `adam` does the same
(`optim.restart_adam_at_decay`, `finetune.restart_adam_at_stage`, default True) while the schedule
keeps counting every update; with False the moments carry on. Either way the optimizer state is
optax.adam's.
"""

import functools
from typing import Any, Callable, Dict, List, Optional

import flax
import flax.linen as nn
from flax.training import train_state
import jax
import jax.numpy as jnp
import numpy as np
import optax

from rob_gan_jax import checkpoints


class ModelState(train_state.TrainState):
  """Params, optimizer state and BatchNorm / spectral-norm statistics of one network."""
  batch_stats: Any = None

  @property
  def variables(self) -> Dict[str, Any]:
    return {'params': self.params, 'batch_stats': self.batch_stats}


class GANState(flax.struct.PyTreeNode):
  """The whole co-training state.

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


class ClassifierState(flax.struct.PyTreeNode):
  """The state of classifier training (fine-tuning or the Madry baseline).

  Attributes:
    step: () int32, updates done.
    discriminator: D's ModelState.
    key: (2,) uint32 PRNG key; step s uses `fold_in(key, s)`.
    generator: the frozen G's {'params', 'batch_stats'} that fine-tuning generates its fake
      batches with, kept in every checkpoint so that a resumed run and `load_weights` pair the
      fine-tuned D with the G it was trained with, whatever co-training did since; None for the
      Madry baseline.
    generator_step: () int32, the co-training checkpoint step G (and the initial D) came from;
      -1 for the Madry baseline.
  """
  step: jax.Array
  discriminator: ModelState
  key: jax.Array
  generator: Optional[Dict[str, Any]]
  generator_step: jax.Array


def decay_period(optim_config, updates_per_epoch: float) -> int:
  """T = round(decay_every_epochs * updates_per_epoch), at least 1: co-training's learning rate
  drops before updates T, 2T, ... (counting updates done before).

  Args:
    optim_config: `config.optim`.
    updates_per_epoch: updates of this optimizer per epoch of training data (D: N / B; G:
      N / (B * n_dis)).
  """
  return max(1, int(round(optim_config.decay_every_epochs * updates_per_epoch)))


def cotrain_schedule(optim_config, updates_per_epoch: float) -> optax.Schedule:
  """Learning rate of co-training: `learning_rate * decay_factor ** floor(count / T)`.

  Args:
    optim_config: `config.optim`.
    updates_per_epoch: as in `decay_period`, which gives T.

  Returns:
    An optax schedule of the count of updates done before the current one.
  """
  return optax.exponential_decay(
      init_value=optim_config.learning_rate,
      transition_steps=decay_period(optim_config, updates_per_epoch),
      decay_rate=optim_config.decay_factor, staircase=True)


def stage_boundaries(finetune_config, steps_per_epoch: int) -> List[int]:
  """Update counts (updates done before) at which stages 2, 3, ... of classifier training start:
  round(sum(stage_epochs[:i]) * steps_per_epoch) for i >= 1."""
  return [int(round(b)) for b in np.cumsum(finetune_config.stage_epochs)[:-1] * steps_per_epoch]


def classifier_schedule(finetune_config, steps_per_epoch: int) -> optax.Schedule:
  """Learning rate of classifier training: `stage_factor ** i * learning_rate` in stage i.

  Stage i covers the updates whose count (updates done before) lies in
  [sum(stage_epochs[:i]), sum(stage_epochs[:i + 1])) * steps_per_epoch, so the first update of
  epoch 21 uses the second stage's rate, as in the official code's per-epoch rule.

  Args:
    finetune_config: `config.finetune`.
    steps_per_epoch: updates per epoch of training data.
  """
  f = finetune_config
  stages = [optax.constant_schedule(f.learning_rate * f.stage_factor**i)
            for i in range(len(f.stage_epochs))]
  return optax.join_schedules(stages, stage_boundaries(f, steps_per_epoch))


def adam(learning_rate: optax.Schedule, *, b1: float, b2: float,
         restart: Optional[Callable[[jax.Array], jax.Array]] = None
         ) -> optax.GradientTransformation:
  """Adam whose moments restart where `restart(count)` holds, the schedule counting on.

  The chain of optax.adam (`scale_by_adam`, then `scale_by_learning_rate`), so the state is
  optax.adam's: (ScaleByAdamState(count, mu, nu), ScaleByScheduleState(count)). Before an update
  whose schedule count (updates done before it, never reset) satisfies `restart`, the
  ScaleByAdamState is replaced by a fresh one (mu = nu = 0, count 0): the update is that of a
  new Adam built with the schedule's current rate, as the official code's rebuilt
  `torch.optim.Adam` makes.

  Args:
    learning_rate: optax schedule of the count of updates done before the current one.
    b1, b2: Adam's decay rates.
    restart: `restart(count) -> () bool` (traced), or None to never restart (plain optax.adam).

  Returns:
    The optax GradientTransformation.
  """
  scale = optax.scale_by_adam(b1=b1, b2=b2)
  tx = optax.chain(scale, optax.scale_by_learning_rate(learning_rate))
  if restart is None:
    return tx

  def update(updates, state, params=None):
    adam_state, schedule_state = state
    adam_state = optax.tree_utils.tree_where(restart(schedule_state.count), scale.init(updates),
                                             adam_state)
    return tx.update(updates, (adam_state, schedule_state), params)

  return optax.GradientTransformation(tx.init, update)


def cotrain_optimizer(optim_config, updates_per_epoch: float) -> optax.GradientTransformation:
  """Adam of one co-trained net (`config.optim`), restarting at each learning-rate decay when
  `restart_adam_at_decay` (official `train.py`).

  Args:
    optim_config: `config.optim`.
    updates_per_epoch: as in `decay_period`.
  """
  o = optim_config
  period = decay_period(o, updates_per_epoch)
  restart = (lambda count: count % period == 0) if o.restart_adam_at_decay else None
  return adam(cotrain_schedule(o, updates_per_epoch), b1=o.b1, b2=o.b2, restart=restart)


def classifier_optimizer(finetune_config, steps_per_epoch: int) -> optax.GradientTransformation:
  """Adam of classifier training (`config.finetune`), restarting at each stage boundary when
  `restart_adam_at_stage` (official `finetune.py`).

  Args:
    finetune_config: `config.finetune`.
    steps_per_epoch: updates per epoch of training data.
  """
  f = finetune_config
  boundaries = jnp.asarray(stage_boundaries(f, steps_per_epoch), jnp.int32)
  restart = (lambda count: jnp.isin(count, boundaries)) if f.restart_adam_at_stage else None
  return adam(classifier_schedule(f, steps_per_epoch), b1=f.b1, b2=f.b2, restart=restart)


def init_variables(module: nn.Module, key: jax.Array, *inputs) -> Dict[str, Any]:
  """`module.init(key, *inputs, train=False)`, jitted (half the time of op-by-op init)."""
  return jax.jit(functools.partial(module.init, train=False))(key, *inputs)


def init_model_state(module: nn.Module, key: jax.Array, inputs, tx: optax.GradientTransformation,
                     variables: Optional[Dict[str, Any]] = None) -> ModelState:
  """A network's ModelState: `variables` if given, else initialised (in inference mode, so
  without collectives) from `key`."""
  if variables is None:
    variables = init_variables(module, key, *inputs)
  return ModelState.create(apply_fn=module.apply, params=variables['params'],
                           batch_stats=variables.get('batch_stats', {}), tx=tx)


def _image(model_config) -> jax.Array:
  return jnp.zeros((1, model_config.image_size, model_config.image_size, 3), jnp.float32)


def create_gan_state(config, generator: nn.Module, discriminator: nn.Module,
                     num_train_examples: int) -> GANState:
  """Initial GANState from `config.seed`.

  Args:
    config: the full config (`seed`, `model`, `optim`, `train.batch_size`, `train.n_dis`).
    generator, discriminator: the modules (from `models.create_models`).
    num_train_examples: size of the training split, for the epoch-based learning-rate decay.
  """
  g_key, d_key, state_key = jax.random.split(jax.random.PRNGKey(config.seed), 3)
  m = config.model
  d_updates_per_epoch = num_train_examples / config.train.batch_size
  z = jnp.zeros((1, m.z_dim), jnp.float32)
  y = jnp.zeros((1,), jnp.int32)
  return GANState(
      step=jnp.zeros((), jnp.int32),
      generator=init_model_state(
          generator, g_key, (z, y),
          cotrain_optimizer(config.optim, d_updates_per_epoch / config.train.n_dis)),
      discriminator=init_model_state(discriminator, d_key, (_image(m),),
                                     cotrain_optimizer(config.optim, d_updates_per_epoch)),
      key=state_key)


def classifier_steps_per_epoch(config, num_train_examples: int) -> int:
  """Classifier-training updates per epoch (the last partial batch is dropped)."""
  return num_train_examples // config.finetune.batch_size


def create_classifier_state(config, generator: nn.Module, discriminator: nn.Module,
                            num_train_examples: int,
                            cotrained: Optional[checkpoints.Weights] = None) -> ClassifierState:
  """Initial ClassifierState with a fresh Adam of `config.finetune` (`classifier_optimizer`).

  Args:
    config: the full config (`seed`, `method`, `model`, `finetune`).
    generator, discriminator: the modules (from `models.create_models`).
    num_train_examples: size of the training split, for the stage boundaries.
    cotrained: the co-training checkpoint fine-tuning starts from (D and G); None gives networks
      initialised from `config.seed`: the Madry baseline's D (and no G), or, for fine-tuning, the
      structure a checkpoint is restored into.
  """
  f = config.finetune
  tx = classifier_optimizer(f, classifier_steps_per_epoch(config, num_train_examples))
  key = jax.random.PRNGKey(config.seed)
  m = config.model
  if cotrained is not None:
    g_variables, d_variables, g_step = cotrained.generator, cotrained.discriminator, cotrained.step
  else:
    g_variables = d_variables = None
    g_step = -1
    if config.method != 'madry':
      g_variables = init_variables(generator, jax.random.fold_in(key, 3), jnp.zeros((1, m.z_dim)),
                                   jnp.zeros((1,), jnp.int32))
  return ClassifierState(
      step=jnp.zeros((), jnp.int32),
      discriminator=init_model_state(discriminator, key, (_image(m),), tx, d_variables),
      key=jax.random.fold_in(key, 2),
      generator=g_variables,
      generator_step=jnp.asarray(g_step, jnp.int32))
