"""Training states (one pytree each, what a checkpoint holds) and their Adam optimizers.

Learning rates are optax schedules of `count`, the updates this optimizer did before the current
one (each net counts its own; D makes n_dis per G update). Co-training (`config.optim`) multiplies
the rate by `decay_factor` every `decay_every_epochs`; classifier training (`config.finetune`) by
`stage_factor` after each stage of `stage_epochs` (official `finetune.py`: 20, 20, 10, 10, x0.1).
The official code rebuilds Adam there (`train.py`, `finetune.py`), restarting moments and bias
correction; `adam` does too if `optim.restart_adam_at_decay` / `finetune.restart_adam_at_stage`
(default True; False keeps the moments).
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
from rob_gan_jax import task as task_lib


class ModelState(train_state.TrainState):
  """Params, optimizer state and BatchNorm / spectral-norm statistics of one network."""
  batch_stats: Any = None

  @property
  def variables(self) -> Dict[str, Any]:
    return {'params': self.params, 'batch_stats': self.batch_stats}


class GANState(flax.struct.PyTreeNode):
  """Co-training state: `step` () int32 counts G updates; step s draws its randomness from
  `fold_in(key, s)`, `key` a (2,) uint32 PRNG key."""
  step: jax.Array
  generator: ModelState
  discriminator: ModelState
  key: jax.Array


class ClassifierState(flax.struct.PyTreeNode):
  """Fine-tuning (or Madry baseline) state; `step`, `key` as in GANState. `generator` (the frozen
  G's {'params', 'batch_stats'}; None for Madry) is checkpointed so that resuming and `load_weights`
  pair D with the G it was trained with, whatever co-training did since; `generator_step`, () int32,
  is the co-training step G and the initial D came from (-1 for Madry)."""
  step: jax.Array
  discriminator: ModelState
  key: jax.Array
  generator: Optional[Dict[str, Any]]
  generator_step: jax.Array


def decay_period(optim_config, updates_per_epoch: float) -> int:
  """T = max(1, round(decay_every_epochs * updates_per_epoch)), the rate dropping at counts T,
  2T, ...; `updates_per_epoch` is N / B for D and N / (B * n_dis) for G."""
  return max(1, int(round(optim_config.decay_every_epochs * updates_per_epoch)))


def cotrain_schedule(optim_config, updates_per_epoch: float) -> optax.Schedule:
  """Co-training's `learning_rate * decay_factor ** floor(count / T)`, T from `decay_period`."""
  return optax.exponential_decay(
      init_value=optim_config.learning_rate,
      transition_steps=decay_period(optim_config, updates_per_epoch),
      decay_rate=optim_config.decay_factor, staircase=True)


def stage_boundaries(finetune_config, steps_per_epoch: int) -> List[int]:
  """Counts starting stages 2, 3, ...: round(sum(stage_epochs[:i]) * steps_per_epoch), i >= 1."""
  return [int(round(b)) for b in np.cumsum(finetune_config.stage_epochs)[:-1] * steps_per_epoch]


def classifier_schedule(finetune_config, steps_per_epoch: int) -> optax.Schedule:
  """`stage_factor ** i * learning_rate` in stage i (`stage_boundaries`), so the first update of
  epoch 21 uses the second stage's rate, as the official per-epoch rule does."""
  f = finetune_config
  stages = [optax.constant_schedule(f.learning_rate * f.stage_factor**i)
            for i in range(len(f.stage_epochs))]
  return optax.join_schedules(stages, stage_boundaries(f, steps_per_epoch))


def adam(learning_rate: optax.Schedule, *, b1: float, b2: float,
         restart: Optional[Callable[[jax.Array], jax.Array]] = None
         ) -> optax.GradientTransformation:
  """optax.adam (same state: (ScaleByAdamState, ScaleByScheduleState)) whose ScaleByAdamState is
  reset (mu = nu = 0, count 0) before each update where the traced `restart(count) -> () bool`
  holds (None: never), the schedule counting on: the update of a new Adam at the current rate,
  like the official code's rebuilt `torch.optim.Adam`."""
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
  """Adam of one co-trained net, restarting at each decay if `restart_adam_at_decay`."""
  o = optim_config
  period = decay_period(o, updates_per_epoch)
  restart = (lambda count: count % period == 0) if o.restart_adam_at_decay else None
  return adam(cotrain_schedule(o, updates_per_epoch), b1=o.b1, b2=o.b2, restart=restart)


def classifier_optimizer(finetune_config, steps_per_epoch: int) -> optax.GradientTransformation:
  """Adam of classifier training, restarting at each stage if `restart_adam_at_stage`."""
  f = finetune_config
  boundaries = jnp.asarray(stage_boundaries(f, steps_per_epoch), jnp.int32)
  restart = (lambda count: jnp.isin(count, boundaries)) if f.restart_adam_at_stage else None
  return adam(classifier_schedule(f, steps_per_epoch), b1=f.b1, b2=f.b2, restart=restart)


def init_variables(module: nn.Module, key: jax.Array, *inputs) -> Dict[str, Any]:
  """`module.init(key, *inputs, train=False)`, jitted (half the time of op-by-op init)."""
  return jax.jit(functools.partial(module.init, train=False))(key, *inputs)


def init_model_state(module: nn.Module, key: jax.Array, inputs, tx: optax.GradientTransformation,
                     variables: Optional[Dict[str, Any]] = None) -> ModelState:
  """ModelState of `variables`, or of an init from `key` (inference mode: no collectives)."""
  if variables is None:
    variables = init_variables(module, key, *inputs)
  return ModelState.create(apply_fn=module.apply, params=variables['params'],
                           batch_stats=variables.get('batch_stats', {}), tx=tx)


def _image(model_config) -> jax.Array:
  s = model_config.image_size
  return jnp.zeros((1, s, s, model_config.image_channels), jnp.float32)


def create_gan_state(config, generator: nn.Module, discriminator: nn.Module,
                     num_train_examples: int) -> GANState:
  """Initial GANState from `config.seed`; `num_train_examples` sets the decay period."""
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


def create_classifier_state(config, task: task_lib.Task, generator: nn.Module,
                            discriminator: nn.Module, num_train_examples: int,
                            cotrained: Optional[checkpoints.Weights] = None) -> ClassifierState:
  """Initial ClassifierState with a fresh `classifier_optimizer`, D and G from `cotrained` (the
  co-training checkpoint), or, if None, from `config.seed`: the Madry baseline's D (no G) or, for
  fine-tuning, a structure to restore into."""
  f = config.finetune
  tx = classifier_optimizer(f, classifier_steps_per_epoch(config, num_train_examples))
  key = jax.random.PRNGKey(config.seed)
  m = config.model
  if cotrained is not None:
    g_variables, d_variables, g_step = cotrained.generator, cotrained.discriminator, cotrained.step
  else:
    g_variables = d_variables = None
    g_step = -1
    if task.has_generator(task.classifier_stage):
      g_variables = init_variables(generator, jax.random.fold_in(key, 3), jnp.zeros((1, m.z_dim)),
                                   jnp.zeros((1,), jnp.int32))
  return ClassifierState(
      step=jnp.zeros((), jnp.int32),
      discriminator=init_model_state(discriminator, key, (_image(m),), tx, d_variables),
      key=jax.random.fold_in(key, 2),
      generator=g_variables,
      generator_step=jnp.asarray(g_step, jnp.int32))
