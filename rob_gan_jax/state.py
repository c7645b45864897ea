"""Training states (one pytree each, what a checkpoint holds) and their optimizers.

- `GANState`: step-1 co-training (G and D with their optimizers).
- `ClassifierState`: D trained as a classifier, in step-2 fine-tuning or the Madry baseline.

Learning-rate decay is an optax schedule of the optimizer's own update count:
- co-training (`config.optim`): Adam, multiplied by `decay_factor` every `decay_every_epochs`
  epochs, each net counting its own updates (D makes n_dis updates per G update). The official
  code rebuilds its optimizers at each decay, throwing the Adam moments away; here they are kept.
- classifier training (`config.finetune`): Adam, divided by 1 / `stage_factor` at the end of each
  stage of `stage_epochs` (official `finetune.py`: 20, 20, 10, 10 epochs, factor 0.1).
"""

from typing import Any, Dict, Optional

import flax
import flax.linen as nn
from flax.training import train_state
import jax
import jax.numpy as jnp
import numpy as np
import optax


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
  """
  step: jax.Array
  discriminator: ModelState
  key: jax.Array


def cotrain_schedule(optim_config, updates_per_epoch: float) -> optax.Schedule:
  """Learning rate of co-training: `learning_rate * decay_factor ** floor(count / T)`.

  Args:
    optim_config: `config.optim`.
    updates_per_epoch: updates of this optimizer per epoch of training data (D: N / B; G:
      N / (B * n_dis)). T = round(decay_every_epochs * updates_per_epoch).

  Returns:
    An optax schedule of the count of updates done before the current one.
  """
  return optax.exponential_decay(
      init_value=optim_config.learning_rate,
      transition_steps=max(1, int(round(optim_config.decay_every_epochs * updates_per_epoch))),
      decay_rate=optim_config.decay_factor, staircase=True)


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
  boundaries = [int(round(b)) for b in np.cumsum(f.stage_epochs)[:-1] * steps_per_epoch]
  stages = [optax.constant_schedule(f.learning_rate * f.stage_factor**i)
            for i in range(len(f.stage_epochs))]
  return optax.join_schedules(stages, boundaries)


def init_model_state(module: nn.Module, key: jax.Array, inputs, tx: optax.GradientTransformation,
                     variables: Optional[Dict[str, Any]] = None) -> ModelState:
  """A network's ModelState: `variables` if given, else initialised (in inference mode, so
  without collectives) from `key`."""
  if variables is None:
    variables = module.init(key, *inputs, train=False)
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
  adam = lambda updates_per_epoch: optax.adam(
      cotrain_schedule(config.optim, updates_per_epoch), b1=config.optim.b1, b2=config.optim.b2)
  z = jnp.zeros((1, m.z_dim), jnp.float32)
  y = jnp.zeros((1,), jnp.int32)
  return GANState(
      step=jnp.zeros((), jnp.int32),
      generator=init_model_state(generator, g_key, (z, y),
                                 adam(d_updates_per_epoch / config.train.n_dis)),
      discriminator=init_model_state(discriminator, d_key, (_image(m),),
                                     adam(d_updates_per_epoch)),
      key=state_key)


def classifier_steps_per_epoch(config, num_train_examples: int) -> int:
  """Classifier-training updates per epoch (the last partial batch is dropped)."""
  return num_train_examples // config.finetune.batch_size


def create_classifier_state(config, discriminator: nn.Module, num_train_examples: int,
                            variables: Optional[Dict[str, Any]] = None) -> ClassifierState:
  """Initial ClassifierState: D from `variables` (fine-tuning) or initialised from `config.seed`
  (the Madry baseline), with a fresh Adam of `config.finetune`."""
  f = config.finetune
  tx = optax.adam(classifier_schedule(f, classifier_steps_per_epoch(config, num_train_examples)),
                  b1=f.b1, b2=f.b2)
  key = jax.random.PRNGKey(config.seed)
  return ClassifierState(
      step=jnp.zeros((), jnp.int32),
      discriminator=init_model_state(discriminator, key, (_image(config.model),), tx, variables),
      key=jax.random.fold_in(key, 2))
