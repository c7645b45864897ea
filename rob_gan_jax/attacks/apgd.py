"""L-inf APGD (Auto-PGD) and APGD-T on the cross-entropy, DLR or targeted DLR of
`losses.ATTACK_OBJECTIVES`; the attacks `apgd_ce` and `apgd_t` run them.

Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks" (ICML 2020): APGD Sec. 3, Algorithm 1; APGD-T Sec. 4. Official code:
https://github.com/fra31/auto-attack, `autopgd_base.py`. Images (B, ...) float32 in [-1, 1],
`epsilon` in that scale (float or scalar array); logits (B, C) float32; labels (B,) int32.
"""

from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from rob_gan_jax import losses
from rob_gan_jax.attacks import pgd
from rob_gan_jax.attacks import strong

# The loss names of APGD (the official `loss` argument) and their `losses.ATTACK_OBJECTIVES`.
APGD_OBJECTIVES = {'ce': 'class', 'dlr': 'dlr', 'dlr-targeted': 'dlr_targeted'}


def apgd_loss(logits: jax.Array, y: jax.Array, *, loss: str,
              target: Optional[jax.Array] = None) -> jax.Array:
  """(B,) loss that APGD maximises: 'ce', 'dlr' or 'dlr-targeted' (ValueError without `target`,
  or for another loss)."""
  if loss not in APGD_OBJECTIVES:
    raise ValueError(f'loss must be one of {tuple(APGD_OBJECTIVES)}, got {loss!r}')
  if loss == 'dlr-targeted' and target is None:
    raise ValueError("loss 'dlr-targeted' needs target classes")
  return losses.ATTACK_OBJECTIVES[APGD_OBJECTIVES[loss]](None, logits, y, target)


def apgd_checkpoints(num_steps: int) -> tuple[int, ...]:
  """The iterations w_j = ceil(p_j num_steps), j >= 1, that may halve APGD's step, increasing.

  Sec. 3.2: p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06) <= 1; 100 steps:
  22, 41, 57, 70, 80, 87, 93, 99. The official code shortens integer intervals of int(0.22 N)
  steps by int(0.03 N) down to int(0.06 N) (each >= 1): the same for multiples of 100, otherwise
  different (10 steps: 2, 3, 4, ...).
  """
  p = [0, 22]  # In hundredths, so that ceil is exact.
  while p[-1] + max(p[-1] - p[-2] - 3, 6) <= 100:
    p.append(p[-1] + max(p[-1] - p[-2] - 3, 6))
  return tuple(sorted({-(-pj * num_steps // 100) for pj in p[1:]}))


def _apgd(logits_fn: Callable[[jax.Array], jax.Array], x: jax.Array, y: jax.Array, *, epsilon,
          num_steps: int, loss: str, targets: Optional[jax.Array], num_restarts, key: jax.Array,
          rho: float, momentum: float) -> tuple[jax.Array, jax.Array]:
  """APGD runs on a batch (`apgd_linf`); `targets` (B, T) int32 or None: each target in turn,
  each with `num_restarts` runs (the official APGD-T's order)."""
  x = jax.lax.stop_gradient(jnp.asarray(x, jnp.float32))
  lower, upper = pgd.linf_bounds(x, epsilon)
  keys = strong.example_keys(key, x.shape[0])
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
      values = apgd_loss(logits, y, loss=loss, target=target)
      return jnp.sum(values), (values, strong.misclassified(logits, y))
    (_, (values, wrong)), grad = jax.value_and_grad(total, has_aux=True)(x_adv)
    return values, wrong, grad

  def run(carry):
    """One run from a fresh random start (Algorithm 1)."""
    r, robust, x_found, x_top, loss_top = carry
    target_index, restart = r // num_restarts, r % num_restarts
    target = target_of(target_index)
    # Keyed by (restart, target), not by r: the runs of fewer restarts are among those of more.
    x0 = pgd.linf_random_start(
        strong.fold_in(strong.fold_in(keys, restart), target_index), x, epsilon)
    loss0, wrong, grad0 = evaluate(x0, target)
    x_found = strong.select(robust & wrong, x0, x_found)
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
      eta = strong.per_example(s['eta'], x)
      z = jnp.clip(s['x'] + eta * jnp.sign(s['grad']), lower, upper)
      x_new = jnp.clip(s['x'] + alpha * (z - s['x']) + (1 - alpha) * (s['x'] - s['x_prev']),
                       lower, upper)
      loss_new, wrong, grad = evaluate(x_new, target)
      x_found = strong.select(s['robust'] & wrong, x_new, s['x_found'])
      increases = s['increases'] + (loss_new > s['loss'])
      better = loss_new > s['loss_best']
      x_best = strong.select(better, x_new, s['x_best'])
      grad_best = strong.select(better, grad, s['grad_best'])
      loss_best = jnp.where(better, loss_new, s['loss_best'])
      # At a checkpoint: condition 1 (too few increasing steps) or 2 (step size kept at the last
      # checkpoint and no better point since) halves the step and restarts from the best point.
      check = is_checkpoint[i]
      condition1 = increases < rho * interval[i]
      condition2 = ~s['reduced_last'] & (loss_best <= s['loss_best_last'])
      reduce = check & (condition1 | condition2)
      return dict(
          i=i + 1, x=strong.select(reduce, x_best, x_new), x_prev=s['x'],
          grad=strong.select(reduce, grad_best, grad), loss=jnp.where(reduce, loss_best, loss_new),
          x_best=x_best, grad_best=grad_best, loss_best=loss_best,
          eta=jnp.where(reduce, s['eta'] / 2, s['eta']),
          increases=jnp.where(check, 0.0, increases),
          reduced_last=jnp.where(check, reduce, s['reduced_last']),
          loss_best_last=jnp.where(check, loss_best, s['loss_best_last']),
          robust=s['robust'] & ~wrong, x_found=x_found)

    # Once every example is misclassified nothing observable changes, so the loop may stop.
    s = jax.lax.while_loop(lambda s: (s['i'] < num_steps) & jnp.any(s['robust']), step, state)
    higher = s['loss_best'] > loss_top
    return (r + 1, s['robust'], s['x_found'], strong.select(higher, s['x_best'], x_top),
            jnp.where(higher, s['loss_best'], loss_top))

  clean_logits = logits_fn(x).astype(jnp.float32)
  robust = ~strong.misclassified(clean_logits, y)
  # The clean point is a candidate for the best point too, so x_adv never has a lower loss than x
  # (for APGD-T: by the loss of the first target, the highest at the clean point).
  clean_loss = apgd_loss(clean_logits, y, loss=loss, target=target_of(0))
  carry = (jnp.zeros((), jnp.int32), robust, x, x, clean_loss)
  _, robust, x_found, x_top, _ = jax.lax.while_loop(
      lambda c: (c[0] < num_runs) & jnp.any(c[1]), run, carry)
  return jax.lax.stop_gradient(strong.select(robust, x_top, x_found)), robust


def apgd_linf(logits_fn: Callable[[jax.Array], jax.Array], x: jax.Array, y: jax.Array, *,
              epsilon, key: jax.Array, num_steps: int = 100, loss: str = 'ce',
              target: Optional[jax.Array] = None, num_restarts=1, rho: float = 0.75,
              momentum: float = 0.75) -> tuple[jax.Array, jax.Array]:
  """APGD (Algorithm 1, official `APGDAttack`) on `logits_fn(x) -> (B, C)` in inference mode.

  From `pgd.linf_random_start`: z = P(x_k + eta sign(grad)), x_{k+1} = P(x_k + a (z - x_k) +
  (1 - a)(x_k - x_{k-1})), a = `momentum` (1 at the first step), P the clip to the eps-ball and
  [-1, 1]. eta = 2 epsilon is halved per example at `apgd_checkpoints` if fewer than a fraction
  rho of the steps since the last one increased the loss (strict, as the paper; the official code
  also at equality) or if it was kept there and the best loss has not risen since; the iterate
  then jumps to the best point. An example stops once misclassified; loops stop when all are.

  Args:
    key: example i's restart j starts from `fold_in(fold_in(split(key, B)[i], j), 0)`.
    num_steps: static; rolled in a `while_loop` even on CPU (unrolling copies the model per step).
    target: (B,) int32 classes != y, with (and only with) loss 'dlr-targeted'.
    num_restarts: int or scalar int32 array; restart j does not depend on it, so more restarts
      find a superset of the adversarial examples.
    rho, momentum: 0.75 in the paper.

  Returns:
    (x_adv, robust): x_adv the first misclassified point found (the clean image if it is), else
    the highest-loss one among x and all iterates; robust (B,) bool: none was misclassified.

  Raises:
    ValueError: a bad budget, loss, rho or momentum (`strong.check_strong_attack_args`), too few
      classes for the loss, target missing or misused, or a concrete target equal to y.
  """
  strong.check_strong_attack_args(epsilon=epsilon, num_steps=num_steps,
                                  num_restarts=num_restarts, loss=loss, rho=rho, momentum=momentum)
  strong.check_strong_attack_args(loss=loss, num_classes=strong.count_classes(logits_fn, x))
  if (loss == 'dlr-targeted') != (target is not None):
    raise ValueError("target classes are needed with loss 'dlr-targeted' and with it only")
  if target is not None and not isinstance(target, jax.core.Tracer) and not isinstance(
      y, jax.core.Tracer) and np.any(np.asarray(target) == np.asarray(y)):
    raise ValueError('target classes must differ from the true labels y')
  targets = None if target is None else jnp.asarray(target)[:, None]
  return _apgd(logits_fn, x, y, epsilon=epsilon, num_steps=num_steps, loss=loss,
               targets=targets, num_restarts=num_restarts, key=key, rho=rho, momentum=momentum)


def top_other_classes(logits: jax.Array, y: jax.Array, k: int) -> jax.Array:
  """(B, k) int32 classes other than y with the highest logits, highest first: APGD-T's targets
  (the official code takes the 2nd to (k+1)-th highest: the same for correctly classified x)."""
  return jax.lax.top_k(jnp.where(jax.nn.one_hot(y, logits.shape[-1], dtype=bool), -jnp.inf,
                                 logits), k)[1].astype(jnp.int32)


def apgd_targeted_linf(logits_fn: Callable[[jax.Array], jax.Array], x: jax.Array, y: jax.Array,
                       *, epsilon, key: jax.Array, num_steps: int = 100,
                       num_target_classes: int = 9, num_restarts=1, rho: float = 0.75,
                       momentum: float = 0.75) -> tuple[jax.Array, jax.Array]:
  """APGD-T (Sec. 4, official `APGDAttack_targeted`): `apgd_linf` with `dlr_targeted_loss`
  towards each of the `num_target_classes` (static, at most C - 1) `top_other_classes` in turn.

  Restart j towards target t of example i starts from `fold_in(fold_in(split(key, B)[i], j), t)`.
  Returns and raises as `apgd_linf` (C >= 4); a robust example's x_adv has the highest targeted
  DLR loss over all runs, each by its own target.
  """
  strong.check_strong_attack_args(epsilon=epsilon, num_steps=num_steps,
                                  num_restarts=num_restarts,
                                  num_target_classes=num_target_classes, rho=rho,
                                  momentum=momentum)
  num_classes = strong.count_classes(logits_fn, x)
  strong.check_strong_attack_args(loss='dlr-targeted', num_classes=num_classes)
  clean_logits = logits_fn(jnp.asarray(x, jnp.float32)).astype(jnp.float32)
  targets = top_other_classes(clean_logits, y, min(num_target_classes, num_classes - 1))
  return _apgd(logits_fn, x, y, epsilon=epsilon, num_steps=num_steps, loss='dlr-targeted',
               targets=jax.lax.stop_gradient(targets), num_restarts=num_restarts, key=key,
               rho=rho, momentum=momentum)
