"""A small API for notebooks: load a workdir's checkpoint, sample, classify, attack.

    from rob_gan_jax import api
    model = api.load('/tmp/robgan')                    # latest stage: fine-tuned if there is one
    images = model.sample(jnp.arange(10))              # (10, 32, 32, 3) float32 in [-1, 1]
    x_adv = model.attack(images, jnp.arange(10), epsilon=0.0627)
    print(model.predict(x_adv))
    test_images, test_labels = model.load_data('test', 500)
    curve = model.accuracy_curve(test_images, test_labels, epsilons=[0, 0.02, 0.04, 0.08])
    curve.per_radius, curve.cumulative
    x_adv, robust = model.strong_attack(test_images, test_labels, attack='apgd-ce', epsilon=0.0627)

An unconditional model (AS-GAN, `model.num_classes=0`) samples with `model.sample(num_samples=16)`;
it has no classifier, so `classify`/`predict` raise, while `score` gives D's source logits and
`attack`/`accuracy_curve` act on the source head (PGD pushing real images towards "fake"; correct
= still called real), as `--mode=eval` measures it.

Images are NHWC float32 in [-1, 1] (uint8 in [0, 255] is accepted too), C = `model.image_channels`
(3, or 1 for grayscale data); attack radii are in the
[-1, 1] scale, so 8/255 in [0, 1] units is epsilon = 0.0627. The attack's defaults are those of
`--mode=eval` (`eval.attack` of the run's config: PGD-20, step size eps / 5). G samples as
`--mode=eval` makes its IS/FID samples (`eval.sample_with_running_stats` of the run's config: by
default with the batch's statistics, so an image depends on the batch it is made in).
"""

import dataclasses
from typing import Any, Dict, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rob_gan_jax import attacks
from rob_gan_jax import checkpoints
from rob_gan_jax import evaluators
from rob_gan_jax import models
from rob_gan_jax import parallel
from rob_gan_jax import recalibration
from rob_gan_jax import robustness
from rob_gan_jax import task as task_lib
from rob_gan_jax import workdir as workdir_lib
from rob_gan_jax.attacks import heads
from rob_gan_jax.attacks import pgd
from rob_gan_jax.attacks import strong
from rob_gan_jax.input_pipeline import splits
from rob_gan_jax.input_pipeline import transforms
from rob_gan_jax.models import sampling


def _as_float(images) -> jax.Array:
  images = jnp.asarray(images)
  return transforms.to_float(images) if images.dtype == jnp.uint8 else images


_logits = parallel.jit(lambda discriminator, variables, x: discriminator.apply(variables, x,
                                                                          train=False),
                  static_argnums=0)
_pgd_on = parallel.jit(heads.pgd_on, static_argnums=0,
                       static_argnames=('objective', 'num_steps', 'random_start'))


@dataclasses.dataclass(frozen=True)
class Model:
  """A loaded checkpoint. D runs in inference mode; G in the mode of
  `eval.sample_with_running_stats` (default: training mode on the batch, keeping no update).

  Attributes:
    config: the run's config (from workdir/config.json).
    stage: 'cotrain' (step 1), 'finetune' (step 2) or 'madry' (the baseline).
    step: the checkpoint's step.
    generator: the G module, or None when there is none (Madry baseline).
    discriminator: the D module.
    generator_variables: G's {'params', 'batch_stats'} or None.
    discriminator_variables: D's {'params', 'batch_stats'}.
    workdir: where it was loaded from.
    task: the run's `task.Task` (conditional or not, the head measured).
  """
  config: ml_collections.ConfigDict
  stage: str
  step: int
  generator: Optional[nn.Module]
  discriminator: nn.Module
  generator_variables: Optional[Any]
  discriminator_variables: Any
  workdir: str
  task: task_lib.Task

  @property
  def head(self) -> str:
    """The head of D that `attack` and `accuracy_curve` act on: 'class', or 'source' for an
    unconditional model."""
    return self.task.head

  def sample(self, labels=None, *, num_samples: Optional[int] = None,
             seed: int = 0) -> jax.Array:
    """Generates one image per label, or `num_samples` images of an unconditional G.

    With the default `eval.sample_with_running_stats=False` (the official code's way) G's
    BatchNorm uses the statistics of this batch, so an image depends on the other labels and
    latents of the call; with True, G's running statistics.

    Args:
      labels: (B,) int labels in [0, num_classes) for a class-conditional G; None for an
        unconditional one.
      num_samples: B, for an unconditional G.
      seed: seed of the latents z ~ N(0, I).

    Returns:
      (B, S, S, C) float32 images in [-1, 1].

    Raises:
      ValueError: the checkpoint has no generator (Madry baseline); labels missing for a
        class-conditional G, or given (or num_samples missing) for an unconditional one.
    """
    if self.generator is None:
      raise ValueError(f'a {self.stage!r} checkpoint has no generator')
    if self.task.conditional:
      if labels is None or num_samples is not None:
        raise ValueError('a class-conditional generator samples one image per label: pass '
                         'labels, not num_samples')
    else:
      if labels is not None or num_samples is None:
        raise ValueError('an unconditional generator takes no labels: pass num_samples')
      labels = jnp.zeros((num_samples,), jnp.int32)
    return sampling.sample(self.generator, self.generator_variables, labels, seed=seed,
                         running_stats=self.config.eval.sample_with_running_stats)

  def score(self, images) -> jax.Array:
    """(B, H, W, C) images in [-1, 1] (or uint8) -> (B,) float32 source logits ("real" > 0)."""
    return _logits(self.discriminator, self.discriminator_variables, _as_float(images))[0]

  def classify(self, images) -> jax.Array:
    """(B, H, W, C) images in [-1, 1] (or uint8) -> (B, num_classes) float32 class logits.

    Raises:
      ValueError: an unconditional model, whose D has no class head.
    """
    if not self.task.conditional:
      raise ValueError('an unconditional model has no classifier; `score` gives its source '
                       'logits')
    return _logits(self.discriminator, self.discriminator_variables, _as_float(images))[1]

  def predict(self, images) -> jax.Array:
    """(B, H, W, C) images -> (B,) int32 predicted labels."""
    return jnp.argmax(self.classify(images), axis=-1)

  def attack(self, images, labels=None, *, epsilon: float, step_size: Optional[float] = None,
             num_steps: Optional[int] = None, random_start: bool = False,
             seed: int = 0) -> jax.Array:
    """L-inf PGD on the class cross-entropy of D's classifier (paper Table 1's attack), or for
    an unconditional model on D's source loss of calling the images real (towards "fake").

    Args:
      images: (B, H, W, C) float32 in [-1, 1] (or uint8).
      labels: (B,) int true labels; None (ignored) for an unconditional model.
      epsilon: L-inf radius in the [-1, 1] scale (8/255 in [0, 1] units = 0.0627).
      step_size: PGD step; default as `--mode=eval`: epsilon * the step_size / epsilon ratio of
        `eval.attack` (epsilon / 5 by default).
      num_steps: PGD steps; default `eval.attack.num_steps` (20).
      random_start: start from a random point of the eps-ball.
      seed: seed of the random start.

    Returns:
      (B, H, W, C) float32 adversarial images in [-1, 1].

    Raises:
      ValueError: epsilon < 0, step_size <= 0 or num_steps < 0; no labels for a
        class-conditional model.
    """
    images = _as_float(images)
    if labels is None:
      if self.head == 'class':
        raise ValueError('the attack on a classifier needs the true labels')
      labels = jnp.zeros(images.shape[:1], jnp.int32)
    step_size_factor, default_steps = self._eval_attack()
    if step_size is None:
      step_size = epsilon * step_size_factor if epsilon > 0 else 1.0
    num_steps = default_steps if num_steps is None else num_steps
    pgd.check_attack_args(epsilon=epsilon, step_size=step_size, num_steps=num_steps)
    return _pgd_on(self.discriminator, self.discriminator_variables, images,
                   jnp.asarray(labels, jnp.int32), objective=self.head,
                     epsilon=jnp.float32(epsilon), step_size=jnp.float32(step_size),
                     num_steps=num_steps, random_start=random_start,
                     keys=jax.random.split(jax.random.PRNGKey(seed), len(labels)))

  def strong_attack(self, images, labels, *, attack: str, epsilon: float,
                    seed: int = 0) -> Tuple[jax.Array, jax.Array]:
    """One of `attacks.available()` ('apgd-ce', 'apgd-t', 'fab-t', 'square') on D's classifier,
    with its budget in the run's `eval.attack_budgets` (AutoAttack's standard ones by default),
    as `--mode=eval` runs it with `eval.attacks`.

    Args:
      images: (B, H, W, C) float32 in [-1, 1] (or uint8).
      labels: (B,) int true labels.
      attack: the attack's name.
      epsilon: L-inf radius in the [-1, 1] scale (8/255 in [0, 1] units = 0.0627).
      seed: seed of the attack's random numbers.

    Returns:
      x_adv (B, H, W, C) float32 in [-1, 1] (misclassified where the attack succeeded) and
      robust (B,) bool (no point the attack tried was misclassified).

    Raises:
      ValueError: an unconditional model, an unknown attack, epsilon < 0, or too few classes.
    """
    if not self.task.conditional:
      raise ValueError('the strong attacks act on a classifier; an unconditional model has none')
    budget = attacks.budget_of(attack, self.config.eval.attack_budgets)
    strong.check_strong_attack_args(epsilon=epsilon)
    return robustness.strong_attack_classifier(
        self.discriminator, self.discriminator_variables, _as_float(images),
        jnp.asarray(labels, jnp.int32), jnp.float32(epsilon), jax.random.PRNGKey(seed),
        attack=attack, budget=budget)

  def accuracy_curve(self, images, labels, epsilons: Sequence[float], *,
                     num_steps: Optional[int] = None, num_restarts: int = 1,
                     seed: int = 0) -> robustness.AccuracyCurve:
    """Accuracy under PGD at each radius, as `--mode=eval` measures it (paper Table 1); for an
    unconditional model the source accuracy (real images still called real).

    Args:
      images: (N, H, W, C) uint8 images.
      labels: (N,) int labels (any, e.g. those of `load_data`, for an unconditional model).
      epsilons: radii in the [-1, 1] scale.
      num_steps: PGD steps; default `eval.attack.num_steps`. The step size is eps times the
        ratio of `eval.attack`.
      num_restarts: attacks per example; > 1 adds random starts.
      seed: seed of the random restarts.

    Returns:
      A `robustness.AccuracyCurve` aligned with `epsilons`: `per_radius` (each radius attacked
      on its own, the official script's figure) and `cumulative` (robust at every radius <= eps
      of `epsilons`, non-increasing in epsilon).
    """
    step_size_factor, default_steps = self._eval_attack()
    return robustness.accuracy_curve(
        robustness.Target(self.discriminator, self.discriminator_variables, head=self.head),
        np.asarray(images), np.asarray(labels), epsilons=epsilons,
        step_size_factor=step_size_factor,
        num_steps=default_steps if num_steps is None else num_steps,
        num_restarts=num_restarts, key=jax.random.PRNGKey(seed))

  def load_data(self, split: str, num_examples: Optional[int] = None
                ) -> Tuple[np.ndarray, np.ndarray]:
    """A fixed random subset of a split of the run's data set (as `--mode=eval` draws it).

    Returns:
      (N, H, W, C) uint8 images and (N,) int32 labels.
    """
    return splits.load_subset(self.config, split, num_examples)

  def evaluate(self, names: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Runs evaluators on this checkpoint as `--mode=eval` does (without writing anything).

    Args:
      names: names of `rob_gan_jax/evaluators/` modules; default `eval.evaluators` of the
        run's config (sample counts and attacks from its `eval` section).

    Returns:
      The metrics ('stage', 'step' and each evaluator's, as in eval/robustness.json) and, under
      'images', the image grids ((H, W, C) uint8, e.g. 'samples').

    Raises:
      ValueError: an unknown evaluator.
    """
    names = self.config.eval.evaluators if names is None else names
    evaluators.check_names(names, 'evaluators')
    context = evaluators.Context(
        self.config, self.task, self.workdir, stage=self.stage, training=False,
        generator=self.generator, discriminator=self.discriminator, mesh=None)
    metrics, outputs = evaluators.run_all(context, names, self._networks())
    return {**metrics, 'images': {k: v for o in outputs for k, v in o.images.items()}}

  def recalibrated(self, mode: str = 'clean', num_examples: int = 10_000) -> 'Model':
    """This model with D's BatchNorm running statistics re-estimated on `num_examples` training
    images (`recalibration`: 'clean', or 'attacked' by the run's `finetune.attack`), e.g. for a
    co-trained D (paper Fig. 5 "without fine-tuning"); this model is left as it is, to compare.

    Raises:
      ValueError: an unknown mode, a D without BatchNorm, 'attacked' for an unconditional model.
    """
    recalibration.check_mode(mode, self.config.model, self.task, 'mode')
    networks = recalibration.recalibrated(self.config, self.discriminator, self._networks(),
                                          mode=mode, num_examples=num_examples,
                                          batch_size=self.config.eval.batch_size)
    return dataclasses.replace(self, discriminator_variables=networks.discriminator)

  def _networks(self) -> checkpoints.Weights:
    return checkpoints.Weights(config=self.config, stage=self.stage, step=self.step,
                               generator=self.generator_variables,
                               discriminator=self.discriminator_variables)

  def _eval_attack(self) -> Tuple[float, int]:
    attack = self.config.eval.attack
    return robustness.step_size_factor(attack), attack.num_steps


def load(workdir: str, stage: str = 'latest', *,
         config: Optional[ml_collections.ConfigDict] = None, step: Optional[int] = None) -> Model:
  """Loads the latest checkpoint of a stage of a workdir, or the one of `step`.

  Args:
    workdir: a workdir written by main.py.
    stage: 'latest' (fine-tuned D if step 2 ran, else the co-trained one), 'cotrain',
      'finetune', or 'madry' (a Madry-baseline workdir's one stage, which 'latest' also means
      there).
    config: the config to load with (default: workdir/config.json); its `model` section must
      equal the saved one.
    step: a saved step of that stage (`max_to_keep` decides which are kept); None = the latest.

  Returns:
    A Model. For 'finetune', G is the co-trained G of `finetune.init_workdir` (or `workdir`).

  Raises:
    FileNotFoundError: no config.json or no checkpoint of that stage (or step; the message lists
      the saved steps).
    ValueError: unknown stage, or a config/checkpoint of another architecture.
  """
  config = workdir_lib.load_config(workdir) if config is None else config
  task = task_lib.Task.from_config(config)  # The API's one Task of the run.
  weights = workdir_lib.load_weights(workdir, stage, config=config, task=task, step=step)
  generator, discriminator = models.create_models(config.model)
  return Model(config=config, stage=weights.stage, step=weights.step,
               generator=generator if weights.generator is not None else None,
               discriminator=discriminator, generator_variables=weights.generator,
               discriminator_variables=weights.discriminator, workdir=workdir, task=task)
