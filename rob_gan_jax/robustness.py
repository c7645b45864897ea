"""Robustness of D: accuracy under L-inf PGD and local Lipschitz value.

Paper Table 1 and Fig. 5: the attack maximises the class cross-entropy of D's class head
(`attacks.pgd_head(head='class')`; official `acc_under_attack.py`, step size eps / 5). For an
unconditional D (AS-GAN), every function here takes `head='source'`: the attack maximises D's
loss for calling the real image real (pushing it towards "fake"), and an example is correct when
D still calls it real (source logit > 0), the robustness AS-GAN argues about. An example counts as
robust at a radius only if it is classified correctly after every one of `num_restarts` attacks
(the first from the clean image, the others from random points of the eps-ball). An accuracy
curve attacks each radius on its own, as the official script does (the per-radius accuracy), and
from the same attacks also reports the cumulative accuracy, which counts an example at eps only
if it survived every radius <= eps. Paper Fig. 1 and 8: the local Lipschitz value and the
train/test robustness gap.

An attack sub-config (`config.eval.attack`) names one radius and its step size; a sweep over
radii keeps their ratio (`step_size_factor`), so PGD-20 at eps 0.03125 with step 0.00625 becomes
step eps / 5 at every radius.
"""

import functools
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rob_gan_jax import attacks
from rob_gan_jax import input_pipeline
from rob_gan_jax import parallel


@functools.partial(jax.jit,
                   static_argnames=('discriminator', 'num_steps', 'random_start', 'head',
                                    'unroll'))
def _correct_under_attack(discriminator, variables, x, y, epsilon, step_size, key, *,
                          num_steps, random_start, head, unroll):
  x_adv = attacks.pgd_head(discriminator, variables, input_pipeline.to_float(x), y, head=head,
                           epsilon=epsilon, step_size=step_size, num_steps=num_steps,
                           random_start=random_start, keys=jax.random.split(key, y.shape[0]),
                           unroll=unroll)
  return attacks.head_correct(discriminator, variables, x_adv, y, head=head)


@functools.partial(jax.jit, static_argnames=('discriminator', 'head'))
def _input_gradient_norm(discriminator, variables, x, y, *, head):
  # Examples do not interact in inference mode, so the gradient of the summed loss holds each
  # example's own gradient.
  loss = lambda x: jnp.sum(attacks.head_loss(discriminator, variables, x, y, head=head))
  grads = jax.grad(loss)(input_pipeline.to_float(x))
  return jnp.sqrt(jnp.sum(grads**2, axis=(1, 2, 3)))


@functools.partial(jax.jit, static_argnames=('discriminator', 'attack', 'settings'))
def _strong_attack_classifier(discriminator, variables, x, y, epsilon, key, *, attack, settings):
  if x.dtype == jnp.uint8:
    x = input_pipeline.to_float(x)
  logits_fn = lambda x: attacks.class_logits(discriminator, variables, x)
  return attacks.strong_attack(attack, logits_fn, x, y, epsilon=epsilon, key=key,
                               settings=dict(settings))


def strong_attack_classifier(discriminator: nn.Module, variables, x: jax.Array, y: jax.Array,
                             epsilon, key: jax.Array, *, attack: str, settings):
  """`attacks.strong_attack` on D's class logits in inference mode, jitted (one compile per
  attack, budgets and shape; the radius is traced).

  Args:
    discriminator, variables: D and its {'params', 'batch_stats'}.
    x: (B, H, W, 3) uint8, or float32 in [-1, 1]; y: (B,) int32 labels.
    epsilon: L-inf radius in the [-1, 1] scale (a scalar array serves every radius).
    key: PRNG key.
    attack: a name of `attacks.STRONG_ATTACKS`.
    settings: the budgets (a dict or ConfigDict, `config.eval.strong_attack`).

  Returns:
    x_adv (B, H, W, 3) float32 in [-1, 1] and robust (B,) bool.
  """
  return _strong_attack_classifier(discriminator, variables, x, y, epsilon, key, attack=attack,
                                   settings=tuple(sorted(dict(settings).items())))


def head_of(model_config) -> str:
  """The head of D whose robustness is measured: 'class' for a class-conditional model, 'source'
  for an unconditional one (`model.num_classes=0`)."""
  return 'class' if model_config.num_classes else 'source'


def _replicate(variables, mesh: Optional[jax.sharding.Mesh]):
  return variables if mesh is None else parallel.replicate(variables, mesh)


def step_size_factor(attack_config) -> float:
  """step_size / epsilon of an attack sub-config: the step size of a sweep is eps * this.

  Raises:
    ValueError: the sub-config's epsilon is not > 0 or its step size not > 0.
  """
  for name in ('epsilon', 'step_size'):
    if attack_config[name] <= 0:
      raise ValueError(f'eval.attack.{name} must be > 0 (the ratio step_size / epsilon scales '
                       f'the step size with the radius), got {attack_config[name]}')
  return attack_config.step_size / attack_config.epsilon


def correct_under_attack(discriminator: nn.Module, variables, images: np.ndarray,
                         labels: np.ndarray, *, epsilon: float, step_size: float,
                         num_steps: int, num_restarts: int = 1, random_start: bool = False,
                         key: jax.Array, batch_size: int = 500,
                         mesh: Optional[jax.sharding.Mesh] = None,
                         head: str = 'class', unroll: Optional[bool] = None) -> np.ndarray:
  """Which examples D still gets right under L-inf PGD on the loss of `head`.

  'class': D's classifier predicts the label, under PGD on the class cross-entropy. 'source': D
  calls the real image real, under PGD on its loss for doing so (`attacks.head_loss`).

  The first attack starts at the clean image (at a random point of the eps-ball with
  `random_start`); each further restart starts at a random point. An example counts as correct
  only if it survives all of them, so more restarts never raise accuracy. `epsilon = 0` (or
  `num_steps = 0`) gives clean correctness.

  Args:
    discriminator: the D module.
    variables: D's {'params', 'batch_stats'}.
    images: (N, H, W, 3) uint8 (real images for 'source').
    labels: (N,) int (any values for 'source').
    epsilon: L-inf radius in the [-1, 1] pixel scale.
    step_size: PGD step in the same scale (ignored when epsilon is 0).
    num_steps: PGD steps.
    num_restarts: attacks per example (>= 1).
    random_start: the first attack starts at a random point too.
    key: PRNG key for the random starts (restart r of the batch that starts at example s splits
      its per-example keys from `fold_in(fold_in(key, s), r)`, so a run with more restarts
      repeats those of a run with fewer).
    batch_size: examples per compiled call (the last batch is padded).
    mesh: if given, each batch is split over its 'batch' axis (data parallel), in every process
      of a multi-process run (`parallel.map_batches`).
    head: 'class' or 'source' (`attacks.HEADS`).
    unroll: unroll the PGD steps (`config.unroll`; None: on CPU only).

  Returns:
    (N,) bool.

  Raises:
    ValueError: epsilon < 0, step_size <= 0, num_steps < 0, num_restarts < 1 or an unknown
      head.
  """
  if num_restarts < 1:
    raise ValueError(f'num_restarts must be >= 1, got {num_restarts}')
  if epsilon == 0:  # Clean accuracy; any step size is acceptable.
    num_steps, num_restarts, step_size = 0, 1, 1.0
  attacks.check_attack_args(epsilon=epsilon, step_size=step_size, num_steps=num_steps)
  variables = _replicate(variables, mesh)

  def fn(x, y, start):
    ok = True
    for restart in range(num_restarts):
      ok = ok & _correct_under_attack(
          discriminator, variables, x, y, jnp.float32(epsilon), jnp.float32(step_size),
          jax.random.fold_in(jax.random.fold_in(key, start), restart),
          num_steps=num_steps, random_start=random_start or restart > 0, head=head,
          unroll=unroll)
    return ok

  return parallel.map_batches(fn, images, labels, batch_size, mesh)


def correct_under_strong_attack(discriminator: nn.Module, variables, images: np.ndarray,
                                labels: np.ndarray, *, attack: str, epsilon: float, settings,
                                key: jax.Array, batch_size: int = 500,
                                mesh: Optional[jax.sharding.Mesh] = None) -> np.ndarray:
  """Which examples D's classifier still gets right under one of `attacks.STRONG_ATTACKS`.

  'apgd-ce', 'apgd-t' (Croce & Hein, ICML 2020) or 'square' (Andriushchenko et al., ECCV 2020)
  on D's class logits in inference mode, with the budgets of `settings`
  (`config.eval.strong_attack`); an example is correct if no point the attack tried is
  misclassified. `epsilon = 0` gives clean correctness. As in AutoAttack, only the examples
  that are classified correctly without attack are attacked (the others are not robust at any
  radius), which saves the attacks' cost on them.

  Args:
    discriminator, variables: D and its {'params', 'batch_stats'}.
    images: (N, H, W, 3) uint8; labels: (N,) int.
    attack: a name of `attacks.STRONG_ATTACKS`.
    epsilon: L-inf radius in the [-1, 1] pixel scale.
    settings: `num_steps`, `num_restarts`, `num_target_classes`, `num_queries`.
    key: PRNG key; the batch that starts at the s-th attacked (clean-correct) example uses
      `fold_in(key, s)`.
    batch_size, mesh: as in `correct_under_attack`.

  Returns:
    (N,) bool.

  Raises:
    ValueError: an unknown attack, epsilon < 0, a budget < 1, or fewer classes than the
      attack's loss needs.
  """
  attacks.check_strong_attack_args(epsilon=epsilon)
  attacks.check_strong_attack_config(settings, 'settings', names=(attack,))
  variables = _replicate(variables, mesh)

  def clean(x, y, start):
    del start
    return _correct_under_attack(discriminator, variables, x, y, jnp.float32(0), jnp.float32(1),
                                 key, num_steps=0, random_start=False, head='class', unroll=None)

  def attacked(x, y, start):
    return strong_attack_classifier(discriminator, variables, x, y, jnp.float32(epsilon),
                                    jax.random.fold_in(key, start), attack=attack,
                                    settings=settings)[1]

  correct = parallel.map_batches(clean, images, labels, batch_size, mesh)
  if epsilon > 0 and correct.any():
    correct[correct] = parallel.map_batches(attacked, images[correct], labels[correct],
                                            batch_size, mesh)
  return correct


def accuracy_under_attack(discriminator: nn.Module, variables, images: np.ndarray,
                          labels: np.ndarray, **kwargs) -> float:
  """Mean of `correct_under_attack` (same arguments): accuracy in [0, 1]."""
  return float(np.mean(correct_under_attack(discriminator, variables, images, labels,
                                            **kwargs)))


class AccuracyCurve(NamedTuple):
  """Accuracy under PGD at each radius, both ways, aligned with the radii.

  Attributes:
    per_radius: fraction of examples still classified correctly under the attack at that
      radius, each radius attacked on its own (official `acc_under_attack.py`); the headline
      figure (`test_accuracy` in eval/robustness.json).
    cumulative: fraction that survived the attacks at every radius <= eps of the curve (the
      eps-ball of a smaller radius lies inside a larger one), so it never rises with eps and is
      at most `per_radius`.
    correct: (len(epsilons), N) bool, which examples survived the attack at each radius (the
      table both figures come from; AND it over attacks for the worst case per example).
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


def accuracy_curve(discriminator: nn.Module, variables, images: np.ndarray, labels: np.ndarray,
                   *, epsilons: Sequence[float], step_size_factor: float, num_steps: int,
                   num_restarts: int = 1, random_start: bool = False, key: jax.Array,
                   batch_size: int = 500, mesh: Optional[jax.sharding.Mesh] = None,
                   head: str = 'class', unroll: Optional[bool] = None) -> AccuracyCurve:
  """Accuracy under PGD at each radius (paper Table 1 and Fig. 5), step size eps * factor.

  Each distinct radius is attacked once (`correct_under_attack`, with all its arguments); the
  per-radius and the cumulative accuracy both come from that one (radius, example) table of
  correctness.

  Args:
    discriminator, variables: D and its {'params', 'batch_stats'}; `head` is attacked.
    images: (N, H, W, 3) uint8; labels: (N,) int.
    epsilons: radii in the [-1, 1] pixel scale, in any order (0 gives clean accuracy).
    step_size_factor: the PGD step at radius eps is eps * step_size_factor.
    num_steps, num_restarts, random_start, key, batch_size, mesh, head, unroll: as in
      `correct_under_attack`.

  Returns:
    An AccuracyCurve (fractions in [0, 1]) aligned with `epsilons`.

  Raises:
    ValueError: a negative epsilon, step_size_factor <= 0, num_steps < 0 or num_restarts < 1.
  """
  check_eval_args(epsilons=epsilons, step_size_factor=step_size_factor, num_steps=num_steps,
                  num_restarts=num_restarts)
  radii = sorted(set(epsilons))
  correct = np.stack([correct_under_attack(
      discriminator, variables, images, labels, epsilon=eps, step_size=eps * step_size_factor,
      num_steps=num_steps, num_restarts=num_restarts, random_start=random_start, key=key,
      batch_size=batch_size, mesh=mesh, head=head, unroll=unroll)
      for eps in radii])  # (radii, N) bool.
  return AccuracyCurve.from_correct(correct[[radii.index(eps) for eps in epsilons]], epsilons)


def strong_accuracy_curve(discriminator: nn.Module, variables, images: np.ndarray,
                          labels: np.ndarray, *, attack: str, epsilons: Sequence[float],
                          settings, key: jax.Array, batch_size: int = 500,
                          mesh: Optional[jax.sharding.Mesh] = None) -> AccuracyCurve:
  """`accuracy_curve` under one of `attacks.STRONG_ATTACKS` (`correct_under_strong_attack`):
  each distinct radius attacked once, with `settings`' budgets and PRNG key `key`.

  Raises:
    As `correct_under_strong_attack`.
  """
  radii = sorted(set(epsilons))
  correct = np.stack([correct_under_strong_attack(
      discriminator, variables, images, labels, attack=attack, epsilon=eps, settings=settings,
      key=key, batch_size=batch_size, mesh=mesh) for eps in radii])
  return AccuracyCurve.from_correct(correct[[radii.index(eps) for eps in epsilons]], epsilons)


EVAL_ATTACKS = ('pgd',) + attacks.STRONG_ATTACKS
AUTOATTACK = ('apgd-ce', 'apgd-t', 'square')  # AutoAttack's standard version, without FAB-T.


def eval_attacks(names: Sequence[str]) -> Tuple[str, ...]:
  """`config.eval.attacks` resolved: 'pgd' first (it always runs), then the strong attacks named
  ('autoattack' = `AUTOATTACK`), each once, in `EVAL_ATTACKS` order.

  Raises:
    ValueError: an unknown name.
  """
  unknown = [n for n in names if n not in EVAL_ATTACKS + ('autoattack',)]
  if unknown:
    raise ValueError(f'eval.attacks: unknown attacks {unknown}; choose from '
                     f'{EVAL_ATTACKS + ("autoattack",)}')
  wanted = set(names) | ({'pgd'} | (set(AUTOATTACK) if 'autoattack' in names else set()))
  return tuple(n for n in EVAL_ATTACKS if n in wanted)


def check_eval_args(*, epsilons, step_size_factor, num_steps, num_restarts) -> None:
  """Raises ValueError for a negative radius, step_size_factor <= 0, num_steps < 0, or
  num_restarts < 1."""
  for eps in epsilons:
    attacks.check_attack_args(epsilon=eps, step_size=step_size_factor, num_steps=num_steps)
  if step_size_factor <= 0:
    raise ValueError(f'step_size_factor must be > 0, got {step_size_factor}')
  if num_restarts < 1:
    raise ValueError(f'num_restarts must be >= 1, got {num_restarts}')


def local_lipschitz_value(discriminator: nn.Module, variables, images: np.ndarray,
                          labels: np.ndarray, *, batch_size: int = 500,
                          mesh: Optional[jax.sharding.Mesh] = None,
                          head: str = 'class') -> float:
  """Mean over examples of ||d CE(f(x), y) / d x||_2, paper Fig. 1 (right) and Fig. 8.

  With head='source', the loss is D's source loss of calling x real (`attacks.head_loss`).

  Args:
    discriminator, variables: D and its variables; f is its `head` in inference mode.
    images: (N, H, W, 3) uint8; the gradient is taken in the [-1, 1] pixel scale.
    labels: (N,) int.

  Returns:
    The mean L2 norm of the input gradient of the class cross-entropy.
  """
  variables = _replicate(variables, mesh)
  fn = lambda x, y, start: _input_gradient_norm(discriminator, variables, x, y, head=head)
  return float(np.mean(parallel.map_batches(fn, images, labels, batch_size, mesh)))


def clean_and_pgd_accuracy(discriminator: nn.Module, variables, images: np.ndarray,
                           labels: np.ndarray, *, attack_config, key: jax.Array,
                           batch_size: int = 500, mesh: Optional[jax.sharding.Mesh] = None,
                           head: str = 'class', unroll: Optional[bool] = None) -> Dict[str, float]:
  """Clean accuracy and accuracy under one PGD attack, the figures logged while training.

  Args:
    discriminator, variables: D and its variables; `head` ('class' or 'source') is measured.
    images: (N, H, W, 3) uint8; labels: (N,) int.
    attack_config: an attack sub-config (`config.eval.attack`).
    key: PRNG key of a random start.
    batch_size, mesh, unroll: as in `correct_under_attack`.

  Returns:
    {'test_accuracy_clean', 'test_accuracy_pgd'} in [0, 1].
  """
  kwargs = dict(key=key, batch_size=batch_size, mesh=mesh, head=head, unroll=unroll)
  a = attack_config
  return {
      'test_accuracy_clean': accuracy_under_attack(
          discriminator, variables, images, labels, epsilon=0.0, step_size=1.0, num_steps=0,
          **kwargs),
      'test_accuracy_pgd': accuracy_under_attack(
          discriminator, variables, images, labels, epsilon=a.epsilon, step_size=a.step_size,
          num_steps=a.num_steps, random_start=a.random_start, **kwargs),
  }
