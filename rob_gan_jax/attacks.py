"""L-inf attacks: projected gradient descent (PGD), and APGD, APGD-T and Square for evaluation.

Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks" (ICLR 2018), as used
by Rob-GAN (Liu & Hsieh, CVPR 2019, Sec. 4): repeated sign-gradient ascent steps on a loss,
each followed by projection onto the L-inf ball of radius `epsilon` around the clean input and
clipping to the pixel range [-1, 1]. Official code: `miscs/pgd.py` (`attack_Linf_PGD`).

`pgd_head` attacks one head of D in inference mode: the classifier (PGD on the class
cross-entropy; official `attack_label_Linf_PGD`), which fine-tuning, the Madry baseline,
evaluation (official `acc_under_attack.py`) and the notebook API use, or the source head of an
unconditional D (PGD pushing real images towards "fake"; official `attack_Linf_PGD_bin`), whose
accuracy evaluation reports for AS-GAN.

`epsilon` and `step_size` are in the [-1, 1] pixel scale: 8/255 in [0, 1] units is 16/255 =
0.0627 here.

Strong attacks, for a reliable robustness evaluation (PGD with a fixed step size overestimates the
robust accuracy of some defences, and any gradient attack that of a gradient-masking one):

* `apgd_linf`: APGD, Auto-PGD (Croce & Hein, "Reliable evaluation of adversarial robustness with
  an ensemble of diverse parameter-free attacks", ICML 2020, Sec. 3, Algorithm 1), a PGD with
  momentum whose step size halves at checkpoints where the loss stopped increasing, on the
  cross-entropy ('ce'), the difference of logits ratio ('dlr', Eq. 6) or its targeted version
  ('dlr-targeted', Eq. 7).
* `apgd_targeted_linf`: APGD-T, APGD on the targeted DLR loss towards each of the classes with
  the highest clean logits in turn (Croce & Hein 2020, Sec. 4).
* `square_linf`: the L-inf Square Attack (Andriushchenko et al., "Square Attack: a
  query-efficient black-box adversarial attack via random search", ECCV 2020, Algorithm 1 and
  Sec. 4.1), a random search over squares of +-2 epsilon changes; it uses no gradient, so it is
  not fooled by gradient masking.

Official code: https://github.com/fra31/auto-attack (`autopgd_base.py`, `square.py`). Each attack
is a pure, jittable function of a batch with an explicit PRNG key: example i draws its randomness
from `jax.random.split(key, B)[i]` only and the model must not mix examples (inference mode), so an
example's result depends on its own image, label and key only. Each returns `(x_adv, robust)`:
`robust[i]` is True iff neither the clean image nor any point the attack tried was misclassified
(argmax of the logits != y), and `x_adv[i]` is a misclassified point where one was found.

AutoAttack's "standard" version (Croce & Hein 2020, Sec. 5; `AutoAttack(version='standard')`) runs,
each on the examples that survived the previous ones: APGD-CE (100 steps, 1 restart), APGD-T
(100 steps, 9 target classes, 1 restart), FAB-T (100 steps, 9 target classes, 1 restart; not
implemented here) and Square (5000 queries, 1 restart). `strong_attack` runs one of
`STRONG_ATTACKS` with such budgets (`num_steps`, `num_restarts`, `num_target_classes`,
`num_queries`).
"""

import math
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from rob_gan_jax import parallel

PIXEL_MIN, PIXEL_MAX = -1.0, 1.0
HEADS = ('class', 'source')


def check_attack_args(*, epsilon, step_size, num_steps, prefix: str = '') -> None:
  """Raises ValueError for epsilon < 0, step_size <= 0 or num_steps < 0 (Python numbers only).

  `prefix` (e.g. 'attack.') is put before the argument's name in the message.
  """
  if isinstance(epsilon, (int, float)) and epsilon < 0:
    raise ValueError(f'{prefix}epsilon must be >= 0, got {epsilon}')
  if isinstance(step_size, (int, float)) and step_size <= 0:
    raise ValueError(f'{prefix}step_size must be > 0, got {step_size}')
  if isinstance(num_steps, int) and num_steps < 0:
    raise ValueError(f'{prefix}num_steps must be >= 0, got {num_steps}')


def check_attack_config(attack_config, field: str) -> None:
  """Checks an attack sub-config (`epsilon`, `step_size`, `num_steps`, `random_start`).

  Args:
    attack_config: e.g. `config.attack`, `config.finetune.attack` or `config.eval.attack`.
    field: its name in the config, used in the message.

  Raises:
    ValueError: epsilon < 0, step_size <= 0 or num_steps < 0.
  """
  check_attack_args(epsilon=attack_config.epsilon, step_size=attack_config.step_size,
                    num_steps=attack_config.num_steps, prefix=f'{field}.')


def pgd_linf(loss_fn: Callable[[jax.Array, jax.Array], jax.Array], x: jax.Array, y: jax.Array,
             *, epsilon, step_size, num_steps: int, random_start: bool = False,
             keys: Optional[jax.Array] = None, unroll: Optional[bool] = None) -> jax.Array:
  """Finds x_adv in the L-inf ball around x that increases `loss_fn`.

  Only the input is differentiated: `loss_fn` closes over its weights, so no weight gradients are
  computed. The model inside `loss_fn` should run in inference mode (BatchNorm with running
  statistics, no spectral-norm update), as the official code's `dis.eval()` does, so that the
  attack changes no state.

  Args:
    loss_fn: `loss_fn(x, y) -> scalar` to maximise; examples must not interact (no batch
      statistics), so the sign of its gradient is each example's own.
    x: (B, H, W, C) float32 clean images in [-1, 1].
    y: labels passed through to `loss_fn`.
    epsilon: L-inf radius in the [-1, 1] pixel scale; a Python float or a scalar array (an array
      lets one compiled attack serve several radii).
    step_size: ascent step in the same scale.
    num_steps: number of steps, unrolled with `lax.fori_loop`; 0 returns x (or the random start).
    random_start: start from a uniform point in the eps-ball (Madry et al.) instead of x.
    keys: (B,) PRNG keys (raw keys: (B, 2) uint32), one per example, required when
      `random_start`: example i starts from noise drawn with `keys[i]`, so its start does not
      depend on the rest of the batch or on how a batch is split over devices.
    unroll: unroll the `fori_loop` at compile time; None: on the CPU backend only
      (`parallel.unroll_loops`, `config.unroll`). XLA:CPU runs convolutions inside a `while`
      body about 3x slower than the same code unrolled (measured: 5 steps of the CIFAR-10 D at
      batch 64, 5.3 s vs 1.6 s); unrolling costs compile time that grows with num_steps.

  Returns:
    (B, H, W, C) float32 adversarial images under `stop_gradient`, with
    ||x_adv - x||_inf <= epsilon and values in [-1, 1].

  Raises:
    ValueError: epsilon < 0, step_size <= 0, num_steps < 0, or random_start without keys.
  """
  check_attack_args(epsilon=epsilon, step_size=step_size, num_steps=num_steps)
  x = jax.lax.stop_gradient(x)
  lower = jnp.maximum(x - epsilon, PIXEL_MIN)
  upper = jnp.minimum(x + epsilon, PIXEL_MAX)
  x_adv = x
  if random_start:
    if keys is None:
      raise ValueError('random_start=True needs PRNG keys, one per example')
    noise = jax.vmap(lambda k: jax.random.uniform(k, x.shape[1:], x.dtype, -1.0, 1.0))(keys)
    x_adv = jnp.clip(x + epsilon * noise, lower, upper)
  grad_fn = jax.grad(loss_fn)

  def step(_, x_adv):
    x_adv = x_adv + step_size * jnp.sign(grad_fn(x_adv, y))
    return jnp.clip(x_adv, lower, upper)

  unroll = parallel.unroll_loops(unroll) if num_steps else None
  x_adv = jax.lax.fori_loop(0, num_steps, step, x_adv, unroll=unroll)
  return jax.lax.stop_gradient(x_adv)


def class_logits(discriminator: nn.Module, variables, x: jax.Array) -> jax.Array:
  """D's class head in inference mode (changes no state): (B, H, W, 3) -> (B, C) float32."""
  return discriminator.apply(variables, x, train=False)[1]


def _check_head(head: str) -> None:
  if head not in HEADS:
    raise ValueError(f'head must be one of {HEADS}, got {head!r}')


def head_loss(discriminator: nn.Module, variables, x: jax.Array, y: jax.Array, *,
              head: str) -> jax.Array:
  """Per-example loss of one head of D in inference mode, the quantity its attack maximises.

  'class': softmax cross-entropy of the class logits against y. 'source': binary cross-entropy
  of the source logit against "real" (D's loss for calling a real image real; y is unused), whose
  sign gradient is that of -logit, so an attack on it pushes the image towards "fake".

  Args:
    discriminator, variables: D and its {'params', 'batch_stats'}.
    x: (B, H, W, 3) float32 images in [-1, 1].
    y: (B,) int32 labels ('class' only).
    head: 'class' or 'source'.

  Returns:
    (B,) float32.

  Raises:
    ValueError: unknown head.
  """
  _check_head(head)
  source, classes = discriminator.apply(variables, x, train=False)
  if head == 'class':
    return optax.softmax_cross_entropy_with_integer_labels(classes, y)
  return optax.sigmoid_binary_cross_entropy(source, jnp.ones_like(source))


def head_correct(discriminator: nn.Module, variables, x: jax.Array, y: jax.Array, *,
                 head: str) -> jax.Array:
  """(B,) bool: 'class': D's classifier predicts y; 'source': D calls the (real) image real
  (source logit > 0). D in inference mode; x (B, H, W, 3) float32 in [-1, 1].

  Raises:
    ValueError: unknown head.
  """
  _check_head(head)
  source, classes = discriminator.apply(variables, x, train=False)
  if head == 'class':
    return jnp.argmax(classes, axis=-1) == y
  return source > 0


def pgd_head(discriminator: nn.Module, variables, x: jax.Array, y: jax.Array, *, head: str,
             epsilon, step_size, num_steps: int, random_start: bool = False,
             keys: Optional[jax.Array] = None, unroll: Optional[bool] = None) -> jax.Array:
  """`pgd_linf` on `head_loss` of one head of D, D in inference mode.

  Official code: `miscs/pgd.py`, `attack_label_Linf_PGD` ('class', used by `finetune.py` and
  `acc_under_attack.py`) and `attack_Linf_PGD_bin` ('source', of the removed
  `train_cifar_nosup.py`).

  Args:
    discriminator: the D module.
    variables: D's {'params', 'batch_stats'}.
    x: (B, H, W, 3) float32 clean images in [-1, 1].
    y: (B,) int32 true labels ('class' only; any int32 array for 'source').
    head: 'class' or 'source'.
    epsilon, step_size, num_steps, random_start, keys, unroll: as in `pgd_linf`.

  Returns:
    (B, H, W, 3) float32 adversarial images in [-1, 1], ||x_adv - x||_inf <= epsilon.

  Raises:
    ValueError: as `pgd_linf`, or an unknown head.
  """
  _check_head(head)
  loss_fn = lambda x, y: jnp.mean(head_loss(discriminator, variables, x, y, head=head))
  return pgd_linf(loss_fn, x, y, epsilon=epsilon, step_size=step_size, num_steps=num_steps,
                  random_start=random_start, keys=keys, unroll=unroll)


# Strong attacks: APGD, APGD-T and Square (see the module docstring).

STRONG_ATTACKS = ('apgd-ce', 'apgd-t', 'square')
# The budgets of AutoAttack's standard version (`strong_attack`'s settings).
AUTOATTACK_BUDGETS = dict(num_steps=100, num_restarts=1, num_target_classes=9, num_queries=5000)
APGD_LOSSES = ('ce', 'dlr', 'dlr-targeted')
# Square's schedule of p (official `p_selection`): p_init is halved after each of these iterations
# of a 10,000-query budget; other budgets are mapped onto it (`square_p_selection`).
SQUARE_P_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
SQUARE_P_SCHEDULE_QUERIES = 10000
_DLR_EPS = 1e-12  # The official code's guard against a zero DLR denominator.


def _is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_strong_attack_args(*, epsilon=None, num_steps=None, num_restarts=None,
                             num_target_classes=None, num_queries=None, loss=None,
                             num_classes=None, rho=None, momentum=None, p_init=None,
                             prefix: str = '') -> None:
  """Raises ValueError for a bad argument of the strong attacks; None arguments are not checked.

  Python numbers only are checked (a traced epsilon or num_restarts passes).

  Args:
    epsilon: must be >= 0.
    num_steps, num_restarts, num_target_classes, num_queries: must be >= 1.
    loss: one of `APGD_LOSSES`.
    num_classes: the number of logits C: 'dlr' needs C >= 3 (it divides by z_pi1 - z_pi3),
      'dlr-targeted' C >= 4 (z_pi4), and any attack C >= 2.
    rho: APGD's threshold on the fraction of steps that increased the loss, in (0, 1].
    momentum: APGD's momentum weight alpha, in (0, 1].
    p_init: Square's initial fraction of pixels per square, in (0, 1].
    prefix: put before the argument's name in the message (e.g. 'eval.strong.').
  """
  if _is_number(epsilon) and epsilon < 0:
    raise ValueError(f'{prefix}epsilon must be >= 0, got {epsilon}')
  for name, value in (('num_steps', num_steps), ('num_restarts', num_restarts),
                      ('num_target_classes', num_target_classes), ('num_queries', num_queries)):
    if value is not None and _is_number(value) and (value < 1 or value != int(value)):
      raise ValueError(f'{prefix}{name} must be an integer >= 1, got {value}')
  if loss is not None and loss not in APGD_LOSSES:
    raise ValueError(f'{prefix}loss must be one of {APGD_LOSSES}, got {loss!r}')
  if num_classes is not None:
    needed = {'dlr': 3, 'dlr-targeted': 4}.get(loss, 2)
    if num_classes < needed:
      what = f'loss {loss!r}' if loss else 'the attack'
      raise ValueError(f'{what} needs at least {needed} classes, the model has {num_classes}')
  for name, value in (('rho', rho), ('momentum', momentum), ('p_init', p_init)):
    if value is not None and _is_number(value) and not 0 < value <= 1:
      raise ValueError(f'{prefix}{name} must be in (0, 1], got {value}')


def _setting(settings, name: str):
  """settings[name] of a dict or ConfigDict, KeyError naming the field if it is missing."""
  try:
    return settings[name]
  except (KeyError, AttributeError) as e:
    raise KeyError(f'strong attack settings lack {name!r}') from e


def check_strong_attack_config(settings, field: str, names=STRONG_ATTACKS) -> None:
  """Checks the budgets of `strong_attack` (a dict or ConfigDict) for the attacks `names`.

  Args:
    settings: `num_steps`, `num_restarts` (APGD-CE, APGD-T), `num_target_classes` (APGD-T) and
      `num_queries` (Square); only those that `names` use are needed.
    field: the settings' name in the config, used in the message.
    names: the attacks that will run.

  Raises:
    ValueError: an unknown attack name or a budget < 1.
    KeyError: a budget that one of `names` needs is missing.
  """
  for name in names:
    _check_attack_name(name)
  needed = set()
  if 'apgd-ce' in names or 'apgd-t' in names:
    needed |= {'num_steps', 'num_restarts'}
  if 'apgd-t' in names:
    needed.add('num_target_classes')
  if 'square' in names:
    needed.add('num_queries')
  check_strong_attack_args(**{n: _setting(settings, n) for n in sorted(needed)},
                           prefix=f'{field}.')


def _check_attack_name(name: str) -> None:
  if name not in STRONG_ATTACKS:
    raise ValueError(f'strong attack must be one of {STRONG_ATTACKS}, got {name!r}')


def _num_classes(logits_fn, x) -> int:
  shape = jax.eval_shape(logits_fn, x).shape
  if len(shape) != 2 or shape[0] != x.shape[0]:
    raise ValueError(f'logits_fn must map (B, ...) images to (B, C) logits, got {shape} for a '
                     f'batch of {x.shape[0]}')
  return shape[1]


def _other_max(logits: jax.Array, y: jax.Array) -> jax.Array:
  """(B,) max_{i != y} z_i."""
  is_y = jax.nn.one_hot(y, logits.shape[-1], dtype=bool)
  return jnp.max(jnp.where(is_y, -jnp.inf, logits), axis=-1)


def _take(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]


def margin(logits: jax.Array, y: jax.Array) -> jax.Array:
  """Square's margin loss z_y - max_{i != y} z_i, negative iff the example is misclassified.

  Andriushchenko et al. 2020, Sec. 3 (the loss L of Algorithm 1 for untargeted attacks).

  Args:
    logits: (B, C) float32.
    y: (B,) int32 true labels.

  Returns:
    (B,) float32.
  """
  return _take(logits, y) - _other_max(logits, y)


def dlr_loss(logits: jax.Array, y: jax.Array) -> jax.Array:
  """Untargeted difference of logits ratio, -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3 + 1e-12).

  Croce & Hein 2020, Eq. 6; z_pi1 >= z_pi2 >= ... are the sorted logits. Invariant to shifting
  and scaling the logits; > 0 iff the example is misclassified. APGD maximises it.

  Args:
    logits: (B, C) float32, C >= 3.
    y: (B,) int32 true labels.

  Returns:
    (B,) float32.
  """
  top = jax.lax.top_k(logits, 3)[0]
  return -margin(logits, y) / (top[:, 0] - top[:, 2] + _DLR_EPS)


def dlr_targeted_loss(logits: jax.Array, y: jax.Array, target: jax.Array) -> jax.Array:
  """Targeted DLR, -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12).

  Croce & Hein 2020, Eq. 7 (APGD-T maximises it).

  Args:
    logits: (B, C) float32, C >= 4.
    y: (B,) int32 true labels.
    target: (B,) int32 target classes t != y.

  Returns:
    (B,) float32.
  """
  top = jax.lax.top_k(logits, 4)[0]
  return -(_take(logits, y) - _take(logits, target)) / (
      top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + _DLR_EPS)


def apgd_loss(logits: jax.Array, y: jax.Array, *, loss: str,
              target: Optional[jax.Array] = None) -> jax.Array:
  """(B,) float32 per-example loss that APGD maximises: 'ce' (softmax cross-entropy), 'dlr'
  (`dlr_loss`) or 'dlr-targeted' (`dlr_targeted_loss`, needs (B,) int32 `target`).

  Raises:
    ValueError: an unknown loss, or 'dlr-targeted' without target.
  """
  if loss == 'ce':
    return optax.softmax_cross_entropy_with_integer_labels(logits, y)
  if loss == 'dlr':
    return dlr_loss(logits, y)
  if loss == 'dlr-targeted':
    if target is None:
      raise ValueError("loss 'dlr-targeted' needs target classes")
    return dlr_targeted_loss(logits, y, target)
  raise ValueError(f'loss must be one of {APGD_LOSSES}, got {loss!r}')


def _misclassified(logits: jax.Array, y: jax.Array) -> jax.Array:
  return jnp.argmax(logits, axis=-1) != y


def _example_keys(key: jax.Array, batch_size: int) -> jax.Array:
  return jax.random.split(key, batch_size)


def _fold_in(keys: jax.Array, data) -> jax.Array:
  return jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, data)


def _per_example(mask: jax.Array, x: jax.Array) -> jax.Array:
  """(B,) values broadcast against (B, ...) x."""
  return mask.reshape(mask.shape + (1,) * (x.ndim - 1))


def _select(mask: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
  """Per example: a where the (B,) mask is True, else b ((B, ...) arrays)."""
  return jnp.where(_per_example(mask, a), a, b)


def linf_bounds(x: jax.Array, epsilon) -> tuple[jax.Array, jax.Array]:
  """The box that is the intersection of the eps-ball around x and the pixel range [-1, 1].

  Projecting onto the L-inf ball and clipping to the pixel range is clipping to this box.

  Args:
    x: (B, ...) float32 clean images in [-1, 1].
    epsilon: L-inf radius in the [-1, 1] pixel scale.

  Returns:
    (lower, upper), float32 arrays of x's shape.
  """
  return (jnp.maximum(x - epsilon, PIXEL_MIN), jnp.minimum(x + epsilon, PIXEL_MAX))


def linf_random_start(keys: jax.Array, x: jax.Array, epsilon) -> jax.Array:
  """APGD's random start: a uniform direction scaled to L-inf norm epsilon, clipped to [-1, 1].

  As the official `autopgd_base.py`: t ~ U(-1, 1)^d, x + epsilon t / ||t||_inf, a point on the
  surface of the ball before clipping (unlike the uniform point in the ball of `pgd_linf`).

  Args:
    keys: (B,) PRNG keys, one per example.
    x: (B, ...) float32 clean images in [-1, 1].
    epsilon: L-inf radius in the [-1, 1] pixel scale.

  Returns:
    (B, ...) float32 images within epsilon of x and in [-1, 1].
  """
  def direction(key):
    t = jax.random.uniform(key, x.shape[1:], jnp.float32, -1.0, 1.0)
    return t / jnp.maximum(jnp.max(jnp.abs(t)), jnp.finfo(jnp.float32).tiny)

  lower, upper = linf_bounds(x, epsilon)
  return jnp.clip(x + epsilon * jax.vmap(direction)(keys), lower, upper)


def apgd_checkpoints(num_steps: int) -> tuple[int, ...]:
  """APGD's checkpoints w_j = ceil(p_j num_steps), j >= 1, the iterations that may halve the step.

  Croce & Hein 2020, Sec. 3.2: p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03,
  0.06), up to p_j <= 1; repeated values (few steps) are kept once. 100 steps: 22, 41, 57, 70, 80,
  87, 93, 99. (The official code instead shortens integer intervals of int(0.22 N) steps by
  int(0.03 N) down to int(0.06 N), each at least 1: the same checkpoints for 100 steps, different
  ones for budgets that are not multiples of 100, e.g. 2, 3, 4, ... for 10 steps.)

  Args:
    num_steps: the number of iterations N >= 1.

  Returns:
    The increasing checkpoints, each in [1, num_steps].
  """
  p = [0, 22]  # In hundredths, so that ceil is exact.
  while p[-1] + max(p[-1] - p[-2] - 3, 6) <= 100:
    p.append(p[-1] + max(p[-1] - p[-2] - 3, 6))
  return tuple(sorted({-(-pj * num_steps // 100) for pj in p[1:]}))


def _apgd(logits_fn: Callable[[jax.Array], jax.Array], x: jax.Array, y: jax.Array, *, epsilon,
          num_steps: int, loss: str, targets: Optional[jax.Array], num_restarts, key: jax.Array,
          rho: float, momentum: float) -> tuple[jax.Array, jax.Array]:
  """APGD runs (one per target class and restart) on a batch; see `apgd_linf`.

  `targets`: None, or (B, T) int32 target classes, attacked in turn, each with `num_restarts`
  restarts (the official APGD-T's order), with the 'dlr-targeted' loss.
  """
  x = jax.lax.stop_gradient(jnp.asarray(x, jnp.float32))
  lower, upper = linf_bounds(x, epsilon)
  keys = _example_keys(key, x.shape[0])
  num_runs = num_restarts * (1 if targets is None else targets.shape[1])
  checkpoints = apgd_checkpoints(num_steps)
  # Per iteration i (0-based, producing x^(i+1)): is i + 1 a checkpoint, and the number of
  # iterations since the last one.
  is_checkpoint = np.zeros(num_steps, bool)
  interval = np.zeros(num_steps, np.float32)
  for last, w in zip((0,) + checkpoints, checkpoints):
    is_checkpoint[w - 1], interval[w - 1] = True, w - last
  is_checkpoint, interval = jnp.asarray(is_checkpoint), jnp.asarray(interval)

  def target_of(target_index):
    return None if targets is None else jnp.take(targets, target_index, axis=1)

  def evaluate(x_adv, target):
    """Per-example loss, misclassification and the loss's gradient at x_adv."""
    def total(x_adv):
      logits = logits_fn(x_adv).astype(jnp.float32)
      losses = apgd_loss(logits, y, loss=loss, target=target)
      return jnp.sum(losses), (losses, _misclassified(logits, y))
    (_, (losses, wrong)), grad = jax.value_and_grad(total, has_aux=True)(x_adv)
    return losses, wrong, grad

  def run(carry):
    """One run from a fresh random start (Algorithm 1)."""
    r, robust, x_found, x_top, loss_top = carry
    target_index, restart = r // num_restarts, r % num_restarts
    target = target_of(target_index)
    # Keyed by (restart, target), not by r: the runs of fewer restarts are among those of more.
    x0 = linf_random_start(_fold_in(_fold_in(keys, restart), target_index), x, epsilon)
    loss0, wrong, grad0 = evaluate(x0, target)
    x_found = _select(robust & wrong, x0, x_found)
    robust = robust & ~wrong
    state = dict(
        i=jnp.zeros((), jnp.int32), x=x0, x_prev=x0, grad=grad0, loss=loss0,
        x_best=x0, grad_best=grad0, loss_best=loss0,
        eta=jnp.full(x.shape[:1], 2.0, jnp.float32) * epsilon,
        increases=jnp.zeros(x.shape[:1], jnp.float32),
        # Condition 2 needs a checkpoint before: none at the first one (as the official code).
        reduced_last=jnp.ones(x.shape[:1], bool), loss_best_last=loss0,
        robust=robust, x_found=x_found)

    def step(s):
      i = s['i']
      alpha = jnp.where(i == 0, 1.0, momentum)  # The first step is a plain step.
      eta = _per_example(s['eta'], x)
      z = jnp.clip(s['x'] + eta * jnp.sign(s['grad']), lower, upper)
      x_new = jnp.clip(s['x'] + alpha * (z - s['x']) + (1 - alpha) * (s['x'] - s['x_prev']),
                       lower, upper)
      loss_new, wrong, grad = evaluate(x_new, target)
      x_found = _select(s['robust'] & wrong, x_new, s['x_found'])
      increases = s['increases'] + (loss_new > s['loss'])
      better = loss_new > s['loss_best']
      x_best = _select(better, x_new, s['x_best'])
      grad_best = _select(better, grad, s['grad_best'])
      loss_best = jnp.where(better, loss_new, s['loss_best'])
      # At a checkpoint: condition 1 (too few increasing steps) or 2 (step size kept at the last
      # checkpoint and no better point since) halves the step and restarts from the best point.
      check = is_checkpoint[i]
      condition1 = increases < rho * interval[i]
      condition2 = ~s['reduced_last'] & (loss_best <= s['loss_best_last'])
      reduce = check & (condition1 | condition2)
      return dict(
          i=i + 1, x=_select(reduce, x_best, x_new), x_prev=s['x'],
          grad=_select(reduce, grad_best, grad), loss=jnp.where(reduce, loss_best, loss_new),
          x_best=x_best, grad_best=grad_best, loss_best=loss_best,
          eta=jnp.where(reduce, s['eta'] / 2, s['eta']),
          increases=jnp.where(check, 0.0, increases),
          reduced_last=jnp.where(check, reduce, s['reduced_last']),
          loss_best_last=jnp.where(check, loss_best, s['loss_best_last']),
          robust=s['robust'] & ~wrong, x_found=x_found)

    # Once every example is misclassified nothing observable changes, so the loop may stop.
    s = jax.lax.while_loop(lambda s: (s['i'] < num_steps) & jnp.any(s['robust']), step, state)
    higher = s['loss_best'] > loss_top
    return (r + 1, s['robust'], s['x_found'], _select(higher, s['x_best'], x_top),
            jnp.where(higher, s['loss_best'], loss_top))

  clean_logits = logits_fn(x).astype(jnp.float32)
  robust = ~_misclassified(clean_logits, y)
  # The clean point is a candidate for the best point too, so x_adv never has a lower loss than x
  # (for APGD-T: by the loss of the first target, the highest at the clean point).
  clean_loss = apgd_loss(clean_logits, y, loss=loss, target=target_of(0))
  carry = (jnp.zeros((), jnp.int32), robust, x, x, clean_loss)
  _, robust, x_found, x_top, _ = jax.lax.while_loop(
      lambda c: (c[0] < num_runs) & jnp.any(c[1]), run, carry)
  return jax.lax.stop_gradient(_select(robust, x_top, x_found)), robust


def apgd_linf(logits_fn: Callable[[jax.Array], jax.Array], x: jax.Array, y: jax.Array, *,
              epsilon, key: jax.Array, num_steps: int = 100, loss: str = 'ce',
              target: Optional[jax.Array] = None, num_restarts=1, rho: float = 0.75,
              momentum: float = 0.75) -> tuple[jax.Array, jax.Array]:
  """APGD (Auto-PGD), L-inf: Croce & Hein 2020, Algorithm 1, as in the official `autopgd_base.py`.

  From a random start (`linf_random_start`), steps z = P(x_k + eta sign(grad f(x_k))),
  x_{k+1} = P(x_k + a (z - x_k) + (1 - a)(x_k - x_{k-1})) with momentum a (a = 1 for the first
  step), P the projection onto the eps-ball and [-1, 1]. The step size eta, 2 epsilon at first, is
  halved per example at the checkpoints `apgd_checkpoints(num_steps)` when fewer than a fraction
  rho of the steps since the last checkpoint increased the loss (condition 1, strict as in the
  paper; the official code halves at equality too), or when the step size was not halved at the
  last checkpoint and the best loss has not increased since (condition 2); the iterate then
  restarts from the best (highest-loss) point. Further restarts begin from fresh random starts.
  An example is attacked until one of its points is misclassified; the loops stop when all are.

  Only the input is differentiated; `logits_fn` closes over its weights and should run the model
  in inference mode, so that examples do not interact.

  Args:
    logits_fn: `logits_fn(x) -> (B, C)` logits (cast to float32).
    x: (B, ...) float32 clean images in [-1, 1], e.g. (B, H, W, C).
    y: (B,) int32 true labels.
    epsilon: L-inf radius in the [-1, 1] pixel scale (8/255 in [0, 1] units is 0.0627); a Python
      float or a scalar array.
    key: PRNG key; example i draws its random starts from `jax.random.split(key, B)[i]`
      (restart j from its `fold_in(fold_in(., j), 0)`).
    num_steps: iterations per restart (static), rolled in a `lax.while_loop` on every backend
      (unlike `pgd_linf` on CPU: unrolling would compile one copy of the model per step).
    loss: 'ce' (cross-entropy), 'dlr' (`dlr_loss`, C >= 3) or 'dlr-targeted'
      (`dlr_targeted_loss`, C >= 4, needs `target`).
    target: (B,) int32 target classes != y, for 'dlr-targeted' only.
    num_restarts: number of runs from random starts; a Python int or a scalar int32 array (one
      compiled attack for several counts). Restart j is the same for every count, so more
      restarts find a superset of the adversarial examples.
    rho: condition 1's threshold (0.75 in the paper).
    momentum: the weight a of the new step (0.75 in the paper).

  Returns:
    (x_adv, robust): x_adv (B, ...) float32 under `stop_gradient`, within epsilon of x (L-inf) and
    in [-1, 1]: the first misclassified point found (the clean image if it is misclassified),
    else the highest-loss point among the clean image and all iterates of all restarts.
    robust (B,) bool: True iff the clean image and every iterate were classified as y.

  Raises:
    ValueError: epsilon < 0, num_steps < 1, num_restarts < 1, an unknown loss, too few classes
      for the loss, target missing for (or given with another loss than) 'dlr-targeted', or a
      concrete target equal to y, rho or momentum outside (0, 1].
  """
  check_strong_attack_args(epsilon=epsilon, num_steps=num_steps, num_restarts=num_restarts,
                           loss=loss, rho=rho, momentum=momentum)
  check_strong_attack_args(loss=loss, num_classes=_num_classes(logits_fn, x))
  if (loss == 'dlr-targeted') != (target is not None):
    raise ValueError("target classes are needed with loss 'dlr-targeted' and with it only")
  if target is not None and not isinstance(target, jax.core.Tracer) and not isinstance(
      y, jax.core.Tracer) and np.any(np.asarray(target) == np.asarray(y)):
    raise ValueError('target classes must differ from the true labels y')
  targets = None if target is None else jnp.asarray(target)[:, None]
  return _apgd(logits_fn, x, y, epsilon=epsilon, num_steps=num_steps, loss=loss,
               targets=targets, num_restarts=num_restarts, key=key, rho=rho, momentum=momentum)


def top_other_classes(logits: jax.Array, y: jax.Array, k: int) -> jax.Array:
  """(B, k) int32: per example, the k classes other than y with the highest logits, highest first.

  APGD-T's target classes (the official code takes the 2nd to (k+1)-th highest clean logits,
  the same classes for correctly classified examples).
  """
  return jax.lax.top_k(jnp.where(jax.nn.one_hot(y, logits.shape[-1], dtype=bool), -jnp.inf,
                                 logits), k)[1].astype(jnp.int32)


def apgd_targeted_linf(logits_fn: Callable[[jax.Array], jax.Array], x: jax.Array, y: jax.Array,
                       *, epsilon, key: jax.Array, num_steps: int = 100,
                       num_target_classes: int = 9, num_restarts=1, rho: float = 0.75,
                       momentum: float = 0.75) -> tuple[jax.Array, jax.Array]:
  """APGD-T: `apgd_linf` on the targeted DLR loss towards each of several classes in turn.

  Croce & Hein 2020, Sec. 4 and the official `APGDAttack_targeted`: the targets of example i are
  the `num_target_classes` classes other than y with the highest clean logits
  (`top_other_classes`), each attacked with `num_restarts` runs of APGD on `dlr_targeted_loss`;
  an example is robust only if it survives all of them.

  Args:
    logits_fn, x, y, epsilon, num_steps, num_restarts, rho, momentum: as in `apgd_linf`.
    key: PRNG key; restart j towards the t-th target of example i starts from randomness drawn
      with `fold_in(fold_in(jax.random.split(key, B)[i], j), t)`, so the runs of fewer restarts
      are among those of more.
    num_target_classes: number of target classes (static); C - 1 if larger.

  Returns:
    (x_adv, robust) as in `apgd_linf`; for robust examples x_adv is the point of the highest
    targeted DLR loss over all runs (each by its own target).

  Raises:
    ValueError: epsilon < 0, num_steps, num_target_classes or num_restarts < 1, fewer than 4
      classes, rho or momentum outside (0, 1].
  """
  check_strong_attack_args(epsilon=epsilon, num_steps=num_steps, num_restarts=num_restarts,
                           num_target_classes=num_target_classes, rho=rho, momentum=momentum)
  num_classes = _num_classes(logits_fn, x)
  check_strong_attack_args(loss='dlr-targeted', num_classes=num_classes)
  clean_logits = logits_fn(jnp.asarray(x, jnp.float32)).astype(jnp.float32)
  targets = top_other_classes(clean_logits, y, min(num_target_classes, num_classes - 1))
  return _apgd(logits_fn, x, y, epsilon=epsilon, num_steps=num_steps, loss='dlr-targeted',
               targets=jax.lax.stop_gradient(targets), num_restarts=num_restarts, key=key,
               rho=rho, momentum=momentum)


def square_p_selection(iteration: int, num_queries: int, p_init: float) -> float:
  """Square's fraction p of the image a square covers at an iteration (0-based), as the official
  `p_selection` with `resc_schedule=True` (also torchattacks' `Square.p_selection`).

  The iteration is first rescaled to a 10,000-query budget, int(iteration / num_queries * 10000)
  (floating-point division, then truncation), and p is p_init / 2^n where n is the number of
  `SQUARE_P_HALVINGS` below that rescaled iteration (p_init up to 10, p_init / 2 in (10, 50], ...,
  p_init / 512 above 8000). Andriushchenko et al. 2020, Sec. 4.1 (Algorithm 1's h^(i)).
  """
  rescaled = int(iteration / num_queries * SQUARE_P_SCHEDULE_QUERIES)
  return p_init / 2 ** sum(rescaled > h for h in SQUARE_P_HALVINGS)


def square_sizes(num_queries: int, p_init: float, height: int, width: int) -> np.ndarray:
  """(num_queries,) int32 side of the square at each iteration: as the official code,
  max(round(sqrt(p h w)), 1), here also at most min(height, width)."""
  sizes = [max(int(round(math.sqrt(square_p_selection(i, num_queries, p_init) * height * width))),
               1) for i in range(num_queries)]
  return np.minimum(np.asarray(sizes, np.int32), min(height, width))


def square_linf(logits_fn: Callable[[jax.Array], jax.Array], x: jax.Array, y: jax.Array, *,
                epsilon, key: jax.Array, num_queries: int = 5000,
                p_init: float = 0.8) -> tuple[jax.Array, jax.Array]:
  """L-inf Square Attack: Andriushchenko et al. 2020, Algorithm 1 with the margin loss.

  Starts from vertical stripes, x + epsilon s with a random sign s per column and channel
  (Sec. 4.1), clipped to [-1, 1]. Each iteration proposes, per example, a square of side
  `square_sizes(...)[i]` at a uniformly random position (every position where it fits, as in
  Algorithm 1; the official code never puts it against the bottom or right edge) whose pixels are
  moved by 2 epsilon times a random sign per channel, then projected onto the eps-ball and
  [-1, 1]. The candidate is kept iff it lowers the example's `margin`; an example stops changing
  once it is misclassified. No gradient is used (it exposes gradient masking).

  Unlike the official code, the square's position and signs are drawn per example (as in the
  paper), not once for the whole batch, so that examples are independent.

  Args:
    logits_fn: `logits_fn(x) -> (B, C)` logits, C >= 2; called once per iteration on the whole
      batch (in inference mode: examples must not interact).
    x: (B, H, W, C) float32 clean images in [-1, 1].
    y: (B,) int32 true labels.
    epsilon: L-inf radius in the [-1, 1] pixel scale; a Python float or a scalar array.
    key: PRNG key; example i draws from `jax.random.split(key, B)[i]`.
    num_queries: iterations (static), each one query, after the query of the initial stripes
      (the official count); rolled in a `lax.while_loop` that stops when all are misclassified.
    p_init: initial fraction of the image a square covers (`square_p_selection`).

  Returns:
    (x_adv, robust): x_adv (B, H, W, C) float32 within epsilon of x and in [-1, 1], the
    misclassified point found (the clean image if it is misclassified), else the lowest-margin
    point; robust (B,) bool, True iff the clean image and every accepted point were classified
    as y (a rejected candidate has a higher margin than an accepted point, so it was not
    misclassified either, up to ties).

  Raises:
    ValueError: epsilon < 0, num_queries < 1, p_init outside (0, 1], fewer than 2 classes, or x
      not (B, H, W, C).
  """
  check_strong_attack_args(epsilon=epsilon, num_queries=num_queries, p_init=p_init)
  check_strong_attack_args(num_classes=_num_classes(logits_fn, x))
  if x.ndim != 4:
    raise ValueError(f'square_linf needs (B, H, W, C) images, got shape {x.shape}')
  x = jax.lax.stop_gradient(jnp.asarray(x, jnp.float32))
  _, height, width, channels = x.shape
  lower, upper = linf_bounds(x, epsilon)
  keys = _example_keys(key, x.shape[0])
  sizes = jnp.asarray(square_sizes(num_queries, p_init, height, width))

  def query(x_adv):
    logits = logits_fn(x_adv).astype(jnp.float32)
    return margin(logits, y), _misclassified(logits, y)

  robust = ~_misclassified(logits_fn(x).astype(jnp.float32), y)
  stripes = jax.vmap(lambda k: jax.random.rademacher(k, (1, width, channels), jnp.float32))(
      _fold_in(keys, 0))
  x_best = jnp.clip(x + epsilon * stripes, lower, upper)
  margin_best, wrong = query(x_best)
  active = robust & ~wrong

  def candidate(key, x_best, size):
    key_h, key_w, key_sign = jax.random.split(key, 3)
    top = jax.random.randint(key_h, (), 0, height - size + 1)
    left = jax.random.randint(key_w, (), 0, width - size + 1)
    rows = (jnp.arange(height) >= top) & (jnp.arange(height) < top + size)
    cols = (jnp.arange(width) >= left) & (jnp.arange(width) < left + size)
    sign = jax.random.rademacher(key_sign, (channels,), jnp.float32)
    inside = (rows[:, None] & cols[None, :])[..., None]
    return jnp.where(inside, x_best + 2 * epsilon * sign, x_best)

  def step(s):
    i, x_best, margin_best, active = s
    x_new = jax.vmap(candidate, in_axes=(0, 0, None))(_fold_in(keys, i + 1), x_best, sizes[i])
    x_new = jnp.clip(x_new, lower, upper)
    margin_new, wrong = query(x_new)
    accept = active & (margin_new < margin_best)
    return (i + 1, _select(accept, x_new, x_best), jnp.where(accept, margin_new, margin_best),
            active & ~(accept & wrong))

  _, x_best, _, active = jax.lax.while_loop(
      lambda s: (s[0] < num_queries) & jnp.any(s[3]), step,
      (jnp.zeros((), jnp.int32), x_best, margin_best, active))
  return jax.lax.stop_gradient(_select(robust, x_best, x)), active


def strong_attack(name: str, logits_fn: Callable[[jax.Array], jax.Array], x: jax.Array,
                  y: jax.Array, *, epsilon, key: jax.Array,
                  settings: Any) -> tuple[jax.Array, jax.Array]:
  """Runs one of `STRONG_ATTACKS` with the budgets in `settings`.

  'apgd-ce': `apgd_linf` with the cross-entropy; 'apgd-t': `apgd_targeted_linf`; 'square':
  `square_linf`. AutoAttack "standard" budgets: num_steps=100, num_restarts=1,
  num_target_classes=9, num_queries=5000.

  Args:
    name: the attack.
    logits_fn, x, y, epsilon, key: as in the attack.
    settings: dict or ConfigDict with `num_steps`, `num_restarts` (APGD), `num_target_classes`
      (APGD-T) and `num_queries` (Square); only the fields the attack uses are read.

  Returns:
    (x_adv, robust) of the attack.

  Raises:
    ValueError: an unknown name, or the attack's errors.
    KeyError: a budget the attack needs is missing from settings.
  """
  _check_attack_name(name)
  if name == 'apgd-ce':
    return apgd_linf(logits_fn, x, y, epsilon=epsilon, key=key, loss='ce',
                     num_steps=_setting(settings, 'num_steps'),
                     num_restarts=_setting(settings, 'num_restarts'))
  if name == 'apgd-t':
    return apgd_targeted_linf(logits_fn, x, y, epsilon=epsilon, key=key,
                              num_steps=_setting(settings, 'num_steps'),
                              num_target_classes=_setting(settings, 'num_target_classes'),
                              num_restarts=_setting(settings, 'num_restarts'))
  return square_linf(logits_fn, x, y, epsilon=epsilon, key=key,
                     num_queries=_setting(settings, 'num_queries'))
