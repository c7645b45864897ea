"""Robustness of D: accuracy under L-inf PGD and strong attacks, and the local Lipschitz value.

Paper Table 1 and Fig. 5: PGD maximises the class cross-entropy of D's class head (official
`acc_under_attack.py`, step size eps / 5). For an unconditional D (AS-GAN) a `Target` has
head='source': PGD maximises D's loss of calling the real image real (pushing it towards
"fake"), and an example is correct while D still calls it real (source logit > 0). Paper Figs. 1
and 8: the local Lipschitz value and the train/test gap.

Conventions: images are (N, H, W, C) uint8 (C = `model.image_channels`) and labels (N,) int (any values for 'source'); radii
and step sizes are in the [-1, 1] pixel scale. An example is robust at a radius only if it
survives every one of `num_restarts` attacks (the first from the clean image, or a random point
with `random_start`, the others from random points), so restarts never raise accuracy. An
accuracy curve attacks each distinct radius once, on its own as the official script does
(per-radius accuracy), and from the same table of correctness reports the cumulative accuracy:
robust at every radius <= eps. A sweep keeps the step_size / epsilon ratio of its attack
sub-config (`step_size_factor`: PGD-20 at eps 0.03125 with step 0.00625 is step eps / 5 at every
radius).
"""

import dataclasses
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rob_gan_jax import attacks
from rob_gan_jax import parallel
from rob_gan_jax.attacks import heads
from rob_gan_jax.attacks import pgd
from rob_gan_jax.attacks import strong
from rob_gan_jax.input_pipeline import transforms


@dataclasses.dataclass(frozen=True)
class Target:
  """What is measured: a head of D in inference mode, and how its examples are batched.

  Attributes:
    discriminator, variables: D and its {'params', 'batch_stats'}.
    head: 'class' (D's classifier) or 'source' (`heads.HEADS`; `task.Task.head`).
    batch_size: examples per compiled call (the last batch is padded).
    mesh: if given, each batch is split over its 'batch' axis, in every process of a
      multi-process run (`parallel.map_batches`).
    unroll: unroll the PGD steps (`config.unroll`; None: on CPU only).
  """
  discriminator: nn.Module
  variables: Any
  head: str = 'class'
  batch_size: int = 500
  mesh: Optional[jax.sharding.Mesh] = None
  unroll: Optional[bool] = None

  def map_batches(self, fn: Callable, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return parallel.map_batches(fn, images, labels, self.batch_size, self.mesh)

  def replicated_variables(self):
    return self.variables if self.mesh is None else parallel.replicate(self.variables, self.mesh)


@parallel.jit(static_argnames=('discriminator', 'num_steps', 'random_start', 'head', 'unroll'))
def _correct_under_attack(discriminator, variables, x, y, epsilon, step_size, key, *,
                          num_steps, random_start, head, unroll):
  x_adv = heads.pgd_on(discriminator, variables, transforms.to_float(x), y, objective=head,
                       epsilon=epsilon, step_size=step_size, num_steps=num_steps,
                       random_start=random_start, keys=jax.random.split(key, y.shape[0]),
                       unroll=unroll)
  return heads.head_correct(discriminator, variables, x_adv, y, head=head)


def prediction_means(logits: jax.Array) -> Dict[str, jax.Array]:
  """Means over a batch of (B, K) class logits from which `prediction_statistics` follow: the
  mean softmax 'probabilities' (K,), their mean 'entropy' () in nats, the 'histogram' (K,) of
  predicted classes. Means of parts of a batch average to the whole batch's."""
  log_p = jax.nn.log_softmax(logits)
  p = jnp.exp(log_p)
  return {'probabilities': jnp.mean(p, 0), 'entropy': -jnp.mean(jnp.sum(p * log_p, -1)),
          'histogram': jnp.mean(jax.nn.one_hot(jnp.argmax(logits, -1), logits.shape[-1]), 0)}


def prediction_statistics(means: Dict[str, jax.Array]) -> Dict[str, jax.Array]:
  """How much a classifier's predictions depend on its input, from `prediction_means`:
  'max_class_share', the largest share of one predicted class, in [1 / K, 1]; and
  'prediction_information', the mutual information between input and predicted class
  H(mean p) - mean H(p), in units of ln K, in [0, 1]. A collapsed classifier has a share near 1
  (one class for every input) or an information near 0 (one class, or the same distribution, for
  every input: a fine-tuning loss of 1.5 ln 10 is the uniform one)."""
  p = means['probabilities']
  spread = -jnp.sum(p * jnp.log(jnp.maximum(p, 1e-30)))
  return {'max_class_share': jnp.max(means['histogram']),
          'prediction_information': (spread - means['entropy']) / jnp.log(p.shape[-1])}


@parallel.jit(static_argnames=('discriminator',))
def _clean_class_logits(discriminator, variables, x):
  return heads.class_logits(discriminator, variables, transforms.to_float(x))


def clean_prediction_statistics(target: Target, images: np.ndarray) -> Dict[str, float]:
  """`prediction_statistics` of D's classifier on clean `images` (N, H, W, C) uint8."""
  variables = target.replicated_variables()
  fn = lambda x, y, start: _clean_class_logits(target.discriminator, variables, x)
  logits = target.map_batches(fn, images, np.zeros(len(images), np.int32))
  return {k: float(v) for k, v in prediction_statistics(prediction_means(logits)).items()}


@parallel.jit(static_argnames=('discriminator', 'head'))
def _input_gradient_norm(discriminator, variables, x, y, *, head):
  # Examples do not interact in inference mode, so the gradient of the summed loss holds each
  # example's own gradient.
  loss = lambda x: jnp.sum(heads.objective_loss(discriminator, variables, x, y, objective=head))
  grads = jax.grad(loss)(transforms.to_float(x))
  return jnp.sqrt(jnp.sum(grads**2, axis=(1, 2, 3)))


@parallel.jit(static_argnames=('discriminator', 'attack', 'budget'))
def _strong_attack_classifier(discriminator, variables, x, y, epsilon, key, *, attack, budget):
  if x.dtype == jnp.uint8:
    x = transforms.to_float(x)
  logits_fn = lambda x: heads.class_logits(discriminator, variables, x)
  return attacks.run(attack, logits_fn, x, y, epsilon=epsilon, key=key, budget=dict(budget))


def strong_attack_classifier(discriminator: nn.Module, variables, x: jax.Array, y: jax.Array,
                             epsilon, key: jax.Array, *, attack: str, budget):
  """Strong attack `attack` (`attacks.available()`) with `budget` (its fields, e.g.
  `attacks.budget_of(attack, config.eval.attack_budgets)`) on D's class logits in inference
  mode, jitted once per attack, budget and shape; the radius is traced.

  Returns:
    x_adv (B, H, W, C) float32 in [-1, 1] and robust (B,) bool, for x (B, H, W, C) uint8 or
    float32 in [-1, 1].
  """
  return _strong_attack_classifier(discriminator, variables, x, y, epsilon, key, attack=attack,
                                   budget=tuple(sorted(dict(budget).items())))


def step_size_factor(attack_config) -> float:
  """step_size / epsilon of an attack sub-config: the step size of a sweep is eps * this.

  Raises:
    ValueError: the sub-config's epsilon or step size is not > 0.
  """
  for name in ('epsilon', 'step_size'):
    if attack_config[name] <= 0:
      raise ValueError(f'eval.attack.{name} must be > 0 (the ratio step_size / epsilon scales '
                       f'the step size with the radius), got {attack_config[name]}')
  return attack_config.step_size / attack_config.epsilon


def correct_under_attack(target: Target, images: np.ndarray, labels: np.ndarray, *,
                         epsilon: float, step_size: float, num_steps: int,
                         num_restarts: int = 1, random_start: bool = False,
                         key: jax.Array) -> np.ndarray:
  """(N,) bool: which examples the target head still gets right under PGD.

  `epsilon = 0` (or `num_steps = 0`) gives clean correctness, whatever the step size. Restart r
  of the batch starting at example s draws its per-example keys from
  `fold_in(fold_in(key, s), r)`, so a run with more restarts repeats those of one with fewer.

  Raises:
    ValueError: epsilon < 0, step_size <= 0, num_steps < 0, num_restarts < 1 or an unknown head.
  """
  if num_restarts < 1:
    raise ValueError(f'num_restarts must be >= 1, got {num_restarts}')
  if epsilon == 0:
    num_steps, num_restarts, step_size = 0, 1, 1.0
  pgd.check_attack_args(epsilon=epsilon, step_size=step_size, num_steps=num_steps)
  variables = target.replicated_variables()

  def fn(x, y, start):
    ok = True
    for restart in range(num_restarts):
      ok = ok & _correct_under_attack(
          target.discriminator, variables, x, y, jnp.float32(epsilon), jnp.float32(step_size),
          jax.random.fold_in(jax.random.fold_in(key, start), restart),
          num_steps=num_steps, random_start=random_start or restart > 0, head=target.head,
          unroll=target.unroll)
    return ok

  return target.map_batches(fn, images, labels)


def correct_under_strong_attack(target: Target, images: np.ndarray, labels: np.ndarray, *,
                                attack: str, epsilon: float, budget,
                                key: jax.Array) -> np.ndarray:
  """(N,) bool: which examples D's classifier still gets right under strong attack `attack`
  (`attacks.available()`: 'apgd-ce', 'apgd-t', 'fab-t': Croce & Hein, ICML 2020; 'square':
  Andriushchenko et al., ECCV 2020) with `budget` (its fields).

  Correct means no point the attack tried is misclassified. As in AutoAttack, only the examples
  classified correctly without attack are attacked; the batch starting at the s-th of them uses
  `fold_in(key, s)`. `epsilon = 0` gives clean correctness.

  Raises:
    ValueError: an unknown attack, epsilon < 0, a budget < 1, or fewer classes than the
      attack's loss needs.
  """
  strong.check_strong_attack_args(epsilon=epsilon)
  attacks.get(attack)  # ValueError for an unknown one, before any attack runs.
  variables = target.replicated_variables()

  def clean(x, y, start):
    del start
    return _correct_under_attack(target.discriminator, variables, x, y, jnp.float32(0),
                                 jnp.float32(1), key, num_steps=0, random_start=False,
                                 head='class', unroll=None)

  def attacked(x, y, start):
    return strong_attack_classifier(target.discriminator, variables, x, y,
                                    jnp.float32(epsilon), jax.random.fold_in(key, start),
                                    attack=attack, budget=budget)[1]

  correct = target.map_batches(clean, images, labels)
  if epsilon > 0 and correct.any():
    correct[correct] = target.map_batches(attacked, images[correct], labels[correct])
  return correct


def accuracy_under_attack(target: Target, images: np.ndarray, labels: np.ndarray,
                          **kwargs) -> float:
  """Mean of `correct_under_attack` (same arguments): accuracy in [0, 1]."""
  return float(np.mean(correct_under_attack(target, images, labels, **kwargs)))


class AccuracyCurve(NamedTuple):
  """Accuracy at each radius, aligned with the radii.

  Attributes:
    per_radius: each radius attacked on its own (official `acc_under_attack.py`); the headline
      figure (`test_accuracy` in eval/robustness.json).
    cumulative: robust at every radius <= eps of the curve (the smaller balls lie inside the
      larger), so never rising with eps and at most `per_radius`.
    correct: (len(epsilons), N) bool, the table both come from (AND it over attacks for the
      worst case per example).
  """
  per_radius: List[float]
  cumulative: List[float]
  correct: np.ndarray

  @classmethod
  def from_correct(cls, correct: np.ndarray, epsilons: Sequence[float]) -> 'AccuracyCurve':
    """The curve of a (len(epsilons), N) bool table of correctness, radii in any order."""
    correct = np.asarray(correct, bool)
    order = np.argsort(epsilons, kind='stable')
    cumulative = np.empty(correct.shape[0])
    cumulative[order] = np.mean(np.logical_and.accumulate(correct[order], axis=0), axis=1)
    return cls(per_radius=[float(a) for a in np.mean(correct, axis=1)],
               cumulative=[float(a) for a in cumulative], correct=correct)


def _curve(correct_at: Callable[[float], np.ndarray],
           epsilons: Sequence[float]) -> AccuracyCurve:
  radii = sorted(set(epsilons))
  correct = np.stack([correct_at(eps) for eps in radii])  # (radii, N) bool.
  return AccuracyCurve.from_correct(correct[[radii.index(eps) for eps in epsilons]], epsilons)


def accuracy_curve(target: Target, images: np.ndarray, labels: np.ndarray, *,
                   epsilons: Sequence[float], step_size_factor: float, num_steps: int,
                   num_restarts: int = 1, random_start: bool = False,
                   key: jax.Array) -> AccuracyCurve:
  """Accuracy under PGD at each radius (paper Table 1 and Fig. 5), step eps * step_size_factor.

  Raises:
    ValueError: a negative epsilon, step_size_factor <= 0, num_steps < 0 or num_restarts < 1.
  """
  check_eval_args(epsilons=epsilons, step_size_factor=step_size_factor, num_steps=num_steps,
                  num_restarts=num_restarts)
  return _curve(lambda eps: correct_under_attack(
      target, images, labels, epsilon=eps, step_size=eps * step_size_factor,
      num_steps=num_steps, num_restarts=num_restarts, random_start=random_start, key=key),
                epsilons)


def strong_accuracy_curve(target: Target, images: np.ndarray, labels: np.ndarray, *,
                          attack: str, epsilons: Sequence[float], budget,
                          key: jax.Array) -> AccuracyCurve:
  """`accuracy_curve` under a strong attack (`correct_under_strong_attack`, same errors)."""
  return _curve(lambda eps: correct_under_strong_attack(
      target, images, labels, attack=attack, epsilon=eps, budget=budget, key=key), epsilons)


def eval_attacks(names: Sequence[str], autoattack: Sequence[str]) -> Tuple[str, ...]:
  """`config.eval.attacks` resolved: 'pgd' first (it always runs), then the strong attacks named,
  'autoattack' standing for those of `autoattack` (`config.eval.autoattack`), each once.

  Raises:
    ValueError: an unknown name.
  """
  known = ('pgd', 'autoattack') + attacks.available()
  unknown = [n for n in tuple(names) + tuple(autoattack) if n not in known or
             (n == 'autoattack' and n in autoattack)]
  if unknown:
    raise ValueError(f'eval.attacks / eval.autoattack: unknown attacks {unknown}; choose from '
                     f'{known}')
  expanded = [a for n in names for a in (autoattack if n == 'autoattack' else (n,))]
  return tuple(dict.fromkeys(['pgd'] + expanded))


def check_eval_args(*, epsilons, step_size_factor, num_steps, num_restarts) -> None:
  """Raises ValueError for a negative radius, step_size_factor <= 0, num_steps < 0, or
  num_restarts < 1."""
  for eps in epsilons:
    pgd.check_attack_args(epsilon=eps, step_size=step_size_factor, num_steps=num_steps)
  if step_size_factor <= 0:
    raise ValueError(f'step_size_factor must be > 0, got {step_size_factor}')
  if num_restarts < 1:
    raise ValueError(f'num_restarts must be >= 1, got {num_restarts}')


def local_lipschitz_value(target: Target, images: np.ndarray, labels: np.ndarray) -> float:
  """Mean over examples of ||d loss(f(x), y) / d x||_2 in the [-1, 1] pixel scale, paper Fig. 1
  (right) and Fig. 8; the loss is the class cross-entropy, or for head 'source' D's loss of
  calling x real (`heads.objective_loss`)."""
  variables = target.replicated_variables()
  fn = lambda x, y, start: _input_gradient_norm(target.discriminator, variables, x, y,
                                                head=target.head)
  return float(np.mean(target.map_batches(fn, images, labels)))


def clean_and_pgd_accuracy(target: Target, images: np.ndarray, labels: np.ndarray, *,
                           attack_config, key: jax.Array) -> Dict[str, float]:
  """{'test_accuracy_clean', 'test_accuracy_pgd'} in [0, 1], the latter under the one attack of
  `attack_config` (`config.eval.attack`), and for D's classifier 'test_max_class_share' and
  'test_prediction_information' on the clean images (`prediction_statistics`, for
  `loop.CollapseGuard`): the figures logged while training."""
  a = attack_config
  metrics = {
      'test_accuracy_clean': accuracy_under_attack(
          target, images, labels, epsilon=0.0, step_size=1.0, num_steps=0, key=key),
      'test_accuracy_pgd': accuracy_under_attack(
          target, images, labels, epsilon=a.epsilon, step_size=a.step_size,
          num_steps=a.num_steps, random_start=a.random_start, key=key),
  }
  if target.head == 'class':
    statistics = clean_prediction_statistics(target, images)
    metrics.update({f'test_{k}': v for k, v in statistics.items()})
  return metrics
