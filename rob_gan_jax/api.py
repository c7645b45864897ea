"""A small API for notebooks: load a workdir's checkpoint, sample, classify, attack.

    from rob_gan_jax import api
    model = api.load('/tmp/robgan')                    # latest stage: fine-tuned if there is one
    images = model.sample(jnp.arange(10))              # (10, 32, 32, 3) float32 in [-1, 1]
    x_adv = model.attack(images, jnp.arange(10), epsilon=0.0627)
    print(model.predict(x_adv))
    model.accuracy_curve(test_images, test_labels, epsilons=[0, 0.02, 0.04, 0.08])

Images are NHWC float32 in [-1, 1] (uint8 in [0, 255] is accepted too); attack radii are in the
[-1, 1] scale, so 8/255 in [0, 1] units is epsilon = 0.0627.
"""

import dataclasses
import functools
import os
from typing import Any, List, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rob_gan_jax import attacks
from rob_gan_jax import checkpoints
from rob_gan_jax import evaluate
from rob_gan_jax import finetune
from rob_gan_jax import input_pipeline
from rob_gan_jax import losses
from rob_gan_jax import models
from rob_gan_jax import train

STAGES = ('latest', 'cotrain', 'finetune')


def _as_float(images) -> jax.Array:
  images = jnp.asarray(images)
  return input_pipeline.to_float(images) if images.dtype == jnp.uint8 else images


@functools.partial(jax.jit, static_argnames=('discriminator',))
def _class_logits(discriminator, variables, x):
  return discriminator.apply(variables, x, train=False)[1]


@functools.partial(jax.jit, static_argnames=('discriminator', 'num_steps', 'random_start'))
def _attack(discriminator, variables, x, y, epsilon, step_size, key, *, num_steps, random_start):
  attack_loss = lambda x, y: losses.class_loss(
      logits=discriminator.apply(variables, x, train=False)[1], labels=y)
  return attacks.pgd_linf(attack_loss, x, y, epsilon=epsilon, step_size=step_size,
                          num_steps=num_steps, random_start=random_start, key=key)


@dataclasses.dataclass(frozen=True)
class Model:
  """A loaded checkpoint. Every method runs the networks in inference mode.

  Attributes:
    config: the run's config (from workdir/config.json).
    stage: 'cotrain' (step 1), 'finetune' (step 2) or 'madry' (the baseline).
    step: the checkpoint's step.
    generator: the G module, or None when there is none (Madry baseline).
    discriminator: the D module.
    generator_variables: G's {'params', 'batch_stats'} or None.
    discriminator_variables: D's {'params', 'batch_stats'}.
  """
  config: ml_collections.ConfigDict
  stage: str
  step: int
  generator: Optional[nn.Module]
  discriminator: nn.Module
  generator_variables: Optional[Any]
  discriminator_variables: Any

  def sample(self, labels, *, seed: int = 0) -> jax.Array:
    """Generates one image per label.

    Args:
      labels: (B,) int labels in [0, num_classes).
      seed: seed of the latents z ~ N(0, I).

    Returns:
      (B, S, S, 3) float32 images in [-1, 1].

    Raises:
      ValueError: the checkpoint has no generator (Madry baseline).
    """
    if self.generator is None:
      raise ValueError(f'a {self.stage!r} checkpoint has no generator')
    labels = jnp.asarray(labels, jnp.int32)
    z = train.sample_latents(self.config, labels.shape[0], seed)
    return train.generate(self.generator, self.generator_variables, z, labels, train=False)

  def classify(self, images) -> jax.Array:
    """(B, H, W, 3) images in [-1, 1] (or uint8) -> (B, num_classes) float32 class logits."""
    return _class_logits(self.discriminator, self.discriminator_variables, _as_float(images))

  def predict(self, images) -> jax.Array:
    """(B, H, W, 3) images -> (B,) int32 predicted labels."""
    return jnp.argmax(self.classify(images), axis=-1)

  def attack(self, images, labels, *, epsilon: float, step_size: Optional[float] = None,
             num_steps: int = 20, random_start: bool = False, seed: int = 0) -> jax.Array:
    """L-inf PGD on the class cross-entropy of D's classifier (paper Table 1's attack).

    Args:
      images: (B, H, W, 3) float32 in [-1, 1] (or uint8).
      labels: (B,) int true labels.
      epsilon: L-inf radius in the [-1, 1] scale (8/255 in [0, 1] units = 0.0627).
      step_size: PGD step; default epsilon / 5 as in the official evaluation.
      num_steps: PGD steps.
      random_start: start from a random point of the eps-ball.
      seed: seed of the random start.

    Returns:
      (B, H, W, 3) float32 adversarial images in [-1, 1].

    Raises:
      ValueError: epsilon < 0, step_size <= 0 or num_steps < 0.
    """
    if step_size is None:
      step_size = epsilon / 5 if epsilon > 0 else 1.0
    attacks.check_attack_args(epsilon=epsilon, step_size=step_size, num_steps=num_steps)
    return _attack(self.discriminator, self.discriminator_variables, _as_float(images),
                   jnp.asarray(labels, jnp.int32), jnp.float32(epsilon), jnp.float32(step_size),
                   jax.random.PRNGKey(seed), num_steps=num_steps, random_start=random_start)


  def accuracy_curve(self, images, labels, epsilons: Sequence[float], *, num_steps: int = 20,
                     step_size_factor: float = 0.2, num_restarts: int = 1,
                     seed: int = 0) -> List[float]:
    """Accuracy under PGD at each radius, as `--mode=eval` measures it (paper Table 1).

    Args:
      images: (N, H, W, 3) uint8 images.
      labels: (N,) int labels.
      epsilons: radii in the [-1, 1] scale.
      num_steps, step_size_factor, num_restarts: the attack (step size eps * factor).
      seed: seed of the random restarts.

    Returns:
      Accuracies aligned with `epsilons`, non-increasing in epsilon.
    """
    return evaluate.accuracy_curve(
        self.discriminator, self.discriminator_variables, np.asarray(images),
        np.asarray(labels), epsilons=epsilons, step_size_factor=step_size_factor,
        num_steps=num_steps, num_restarts=num_restarts, key=jax.random.PRNGKey(seed))


def _latest_step(directory: str) -> Optional[int]:
  if not os.path.isdir(directory):
    return None
  return checkpoints.manager(directory).latest_step()


def resolve_stage(workdir: str, config, stage: str = 'latest') -> str:
  """Which checkpoint `stage` means in `workdir`: 'cotrain', 'finetune' or 'madry'.

  Raises:
    ValueError: unknown stage, or a stage the run's method does not have.
    FileNotFoundError: the workdir has no checkpoint of that stage.
  """
  if stage not in STAGES:
    raise ValueError(f'stage must be one of {STAGES}, got {stage!r}')
  has_finetune = _latest_step(os.path.join(workdir, checkpoints.FINETUNE)) is not None
  has_cotrain = _latest_step(os.path.join(workdir, checkpoints.COTRAIN)) is not None
  if config.method == 'madry':
    if stage == 'cotrain':
      raise ValueError('a Madry-baseline workdir has no co-training stage')
    if not has_finetune:
      raise FileNotFoundError(f'no Madry-baseline checkpoint in {workdir}; run --mode=train')
    return 'madry'
  if stage == 'latest':
    stage = 'finetune' if has_finetune else 'cotrain'
  if stage == 'finetune' and not has_finetune:
    raise FileNotFoundError(f'no fine-tuning checkpoint in {workdir}; run --mode=finetune')
  if stage == 'cotrain' and not has_cotrain:
    raise FileNotFoundError(f'no co-training checkpoint in {workdir}; run --mode=train')
  return stage


def load(workdir: str, stage: str = 'latest', *,
         config: Optional[ml_collections.ConfigDict] = None) -> Model:
  """Loads the latest checkpoint of a stage of a workdir.

  Args:
    workdir: a workdir written by main.py.
    stage: 'latest' (fine-tuned D if step 2 ran, else the co-trained one), 'cotrain' or
      'finetune'. A Madry-baseline workdir has one stage, reported as 'madry'.
    config: the config to load with (default: workdir/config.json); its `model` section must
      equal the saved one.

  Returns:
    A Model. For 'finetune', G is the co-trained G of `finetune.init_workdir` (or `workdir`).

  Raises:
    FileNotFoundError: no config.json or no checkpoint of that stage.
    ValueError: unknown stage, or a config/checkpoint of another architecture.
  """
  saved = checkpoints.load_config(workdir)
  config = saved if config is None else config
  if checkpoints.model_section(saved) != checkpoints.model_section(config):
    raise ValueError(f'the config\'s model differs from the one saved in {workdir}/config.json '
                     '(a checkpoint of another architecture)')
  stage = resolve_stage(workdir, config, stage)
  generator, discriminator = models.create_models(config.model)
  g_variables = None
  if stage == 'cotrain':
    gan = finetune.load_cotrained(config, workdir, generator, discriminator)
    d_variables, step = gan.discriminator.variables, int(gan.step)
    g_variables = gan.generator.variables
  else:
    abstract = jax.eval_shape(lambda: finetune.create_state(config, discriminator, 1))
    state = checkpoints.restore_latest(
        checkpoints.manager(os.path.join(workdir, checkpoints.FINETUNE)), abstract)
    d_variables, step = state.discriminator.variables, int(state.step)
    if stage == 'finetune':
      g_variables = finetune.load_cotrained(
          config, config.finetune.init_workdir or workdir, generator, discriminator
      ).generator.variables
  return Model(config=config, stage=stage, step=step,
               generator=generator if g_variables is not None else None,
               discriminator=discriminator, generator_variables=g_variables,
               discriminator_variables=d_variables)
