"""FAB-T, the targeted L-inf Fast Adaptive Boundary attack, as AutoAttack's standard set runs it.

Croce & Hein, "Minimally distorted adversarial examples with a fast adaptive boundary attack"
(ICML 2020), Sec. 3 (the projection onto a hyperplane within the box, the biased step, the
backward step; Algorithm 1); its targeted version FAB-T is that of AutoAttack ("Reliable
evaluation of adversarial robustness with an ensemble of diverse parameter-free attacks",
ICML 2020). Official code: https://github.com/fra31/auto-attack, `fab_base.py` and `fab_pt.py`
(`FABAttack_PT(norm='Linf', targeted=True)`), `fab_projections.py` (`projection_linf`).
Images (B, ...) float32 in [-1, 1]: the box of the projection is [-1, 1] and `epsilon` is in that
scale, the same attack as the official one on [0, 1] images with epsilon halved.

Where we differ from the official code: restarts j >= 1 draw their start per example from
`split(key, B)[i]` (the first starts from x, as there, so one restart uses no random numbers);
an example stops at its first misclassified iterate within epsilon (the official code goes on
shrinking the perturbation and returns the smallest one, which gives the same robust flags); every
run steps the whole batch, masked (theirs only the survivors: the same results); the projection
bisects on the radius, then solves on its linear piece, where theirs sorts the kinks, and gets x1's
distance to the hyperplane from the logits rather than from w.x1 - b.
"""

from typing import Callable

import jax
import jax.numpy as jnp

from rob_gan_jax import losses
from rob_gan_jax.attacks import apgd
from rob_gan_jax.attacks import pgd
from rob_gan_jax.attacks import strong

BUDGET = dict(num_steps=100, num_restarts=1, num_target_classes=9)  # AutoAttack's standard.
_NORM_FLOOR = 1e-8  # The official guard of alpha's ratio against zero-length steps.
# Halvings of the projection's radius bracket, at most 2 wide: then 5e-10, below float32's
# resolution of pixel values.
_BISECTION_STEPS = 32


def _project(t: jax.Array, w: jax.Array, residual: jax.Array, lower, upper) -> jax.Array:
  """`projection_linf` given residual = w.t - b (N,) instead of b."""
  # Each coordinate moves by min(lam, room) in the direction that shrinks |w.z - b|, which then
  # shrinks by g(lam) = sum_i |w_i| min(lam, room_i): nondecreasing, piecewise linear, with kinks
  # at the rooms. A bisection brackets the least lam with g(lam) = |residual| (XLA:CPU sorts
  # slowly: a sort of the kinks took 10 times as long), then lam is exact on its linear piece.
  direction = -jnp.sign(residual)[:, None] * jnp.sign(w)
  room = jnp.maximum(jnp.where(direction > 0, upper - t, t - lower), 0.0)
  weight = jnp.abs(w) * (direction != 0)
  target = jnp.abs(residual)
  reach = lambda lam: jnp.sum(weight * jnp.minimum(lam[:, None], room), axis=-1)  # g(lam)

  def bisect(_, bracket):
    lo, hi = bracket
    mid = (lo + hi) / 2
    short = reach(mid) < target
    return jnp.where(short, mid, lo), jnp.where(short, hi, mid)

  lo, _ = jax.lax.fori_loop(0, _BISECTION_STEPS, bisect, (
      jnp.zeros_like(target), jnp.max(jnp.where(weight > 0, room, 0.0), axis=-1)))
  free = room > lo[:, None]  # The coordinates that the box does not stop before the solution.
  slope = jnp.sum(weight * free, axis=-1)
  lam = jnp.where(slope > 0, (target - jnp.sum(weight * room * ~free, axis=-1)) /
                  jnp.where(slope > 0, slope, 1.0), lo)
  # Where the box keeps the plane out of reach, the corner nearest to it.
  feasible = jnp.sum(weight * room, axis=-1) >= target
  return direction * jnp.where(feasible[:, None], jnp.minimum(lam[:, None], room), room)


def projection_linf(t: jax.Array, w: jax.Array, b: jax.Array, lower=pgd.PIXEL_MIN,
                    upper=pgd.PIXEL_MAX) -> jax.Array:
  """(N, D) d of least ||d||_inf with w_n.(t_n + d_n) = b_n and lower <= t_n + d_n <= upper.

  The official `projection_linf` (FAB's projection with the box constraint), batched. The
  optimum moves each coordinate (with w_i != 0) by min(lam, its room to the box) towards the
  plane, lam the least radius that reaches it; where the box keeps the plane out of reach, d goes
  to the box's corner nearest to it (d_i = 0 where w_i = 0).

  Args:
    t: (N, D) points, inside the box.
    w: (N, D) normals of the hyperplanes (any scale; a zero row gives d = 0).
    b: (N,) offsets.
    lower, upper: the box, [-1, 1] by default (floats or arrays broadcasting with t).

  Returns:
    (N, D) d, the same dtype as t.
  """
  return _project(t, w, jnp.sum(w * t, axis=-1) - b, lower, upper)


def _check_fab_args(alpha_max, eta, beta) -> None:
  if strong.is_number(alpha_max) and not 0 <= alpha_max <= 1:
    raise ValueError(f'alpha_max must be in [0, 1], got {alpha_max}')
  if strong.is_number(eta) and eta < 1:
    raise ValueError(f'eta must be >= 1, got {eta}')
  if strong.is_number(beta) and not 0 < beta <= 1:
    raise ValueError(f'beta must be in (0, 1], got {beta}')


def fab_targeted_linf(logits_fn: Callable[[jax.Array], jax.Array], x: jax.Array, y: jax.Array,
                      *, epsilon, key: jax.Array, num_steps: int = 100,
                      num_target_classes: int = 9, num_restarts=1, alpha_max: float = 0.1,
                      eta: float = 1.05, beta: float = 0.9) -> tuple[jax.Array, jax.Array]:
  """FAB-T (official `FABAttack_PT`, targeted, L-inf) on `logits_fn(x) -> (B, C)` (inference).

  Towards each of the `num_target_classes` (static, at most C - 1) `apgd.top_other_classes` in
  turn, each with `num_restarts` runs: from x1 = x (restart 0) or a random start, each step
  linearises f = z_t - z_y at x1, projects x1 and x onto {f = 0} within the box (d1, d2,
  `projection_linf`) and moves to clip((1 - a)(x1 + eta d1) + a (x + eta d2)), a = min(|d1| /
  (|d1| + |d2|), alpha_max), norms L-inf; a misclassified x1 (any wrong class) is pulled back to
  x + beta (x1 - x). An example is done once an iterate within epsilon of x is misclassified;
  loops stop when all are.

  Args:
    logits_fn: (B, ...) images -> (B, C) logits, C >= 2, examples independent.
    x: (B, ...) float32 images in [-1, 1].
    y: (B,) int32 labels.
    epsilon: the L-inf radius, float or scalar array: what counts, and half the random start's.
    key: restart j >= 1 towards target t of example i starts from `linf_random_start` with
      `fold_in(fold_in(split(key, B)[i], j), t)` at radius epsilon / 2 (official).
    num_steps: iterations per run, an int (`while_loop`; the model is not copied per step).
    num_target_classes: 9 in AutoAttack (static).
    num_restarts: int or scalar int32 array; restart j does not depend on it.
    alpha_max, eta, beta: 0.1, 1.05, 0.9 in AutoAttack.

  Returns:
    (x_adv, robust): robust (B,) bool, neither x nor an iterate within epsilon was misclassified;
    x_adv (B, ...) that iterate (the first found) where one was, else x.

  Raises:
    ValueError: epsilon < 0, a budget < 1, C < 2, alpha_max outside [0, 1], eta < 1 or beta
      outside (0, 1].
  """
  strong.check_strong_attack_args(epsilon=epsilon, num_steps=num_steps,
                                  num_restarts=num_restarts,
                                  num_target_classes=num_target_classes)
  num_classes = strong.count_classes(logits_fn, x)
  strong.check_strong_attack_args(num_classes=num_classes)
  _check_fab_args(alpha_max, eta, beta)
  x = jax.lax.stop_gradient(jnp.asarray(x, jnp.float32))
  batch = x.shape[0]
  x_flat = x.reshape(batch, -1)
  keys = strong.example_keys(key, batch)
  clean_logits = logits_fn(x).astype(jnp.float32)
  robust = ~strong.misclassified(clean_logits, y)
  targets = jax.lax.stop_gradient(apgd.top_other_classes(
      clean_logits, y, min(num_target_classes, num_classes - 1)))
  num_runs = num_restarts * targets.shape[1]

  def linearise(x1, target):
    """f = z_t - z_y at x1 (B,) and its gradient, flattened (B, D)."""
    def total(x1):
      logits = logits_fn(x1).astype(jnp.float32)
      f = losses.ATTACK_OBJECTIVES['targeted_margin'](None, logits, y, target)
      return jnp.sum(f), f
    grad, f = jax.grad(total, has_aux=True)(x1)
    return f, grad.reshape(batch, -1)

  def run(carry):
    r, robust, x_found = carry
    target_index, restart = r // num_restarts, r % num_restarts
    target = jnp.take(targets, target_index, axis=1)
    start = pgd.linf_random_start(
        strong.fold_in(strong.fold_in(keys, restart), target_index), x, epsilon / 2)
    x1 = jnp.where(restart == 0, x, start)

    def step(s):
      i, x1, robust, x_found = s
      f, w = linearise(x1, target)
      # The boundary linearised at x1, {z: f + w.(z - x1) = 0}; the residuals of x1 and x.
      x1_flat = x1.reshape(batch, -1)
      d1 = _project(x1_flat, w, f, pgd.PIXEL_MIN, pgd.PIXEL_MAX)
      d2 = _project(x_flat, w, f + jnp.sum(w * (x_flat - x1_flat), axis=-1), pgd.PIXEL_MIN,
                    pgd.PIXEL_MAX)
      norm1 = jnp.maximum(jnp.max(jnp.abs(d1), axis=-1), _NORM_FLOOR)
      norm2 = jnp.maximum(jnp.max(jnp.abs(d2), axis=-1), _NORM_FLOOR)
      alpha = jnp.minimum(norm1 / (norm1 + norm2), alpha_max)[:, None]
      x_new = jnp.clip((1 - alpha) * (x1_flat + eta * d1) + alpha * (x_flat + eta * d2),
                       pgd.PIXEL_MIN, pgd.PIXEL_MAX).reshape(x.shape)
      wrong = strong.misclassified(logits_fn(x_new).astype(jnp.float32), y)
      close = jnp.max(jnp.abs(x_new - x).reshape(batch, -1), axis=-1) <= epsilon
      found = robust & wrong & close
      x1 = strong.select(wrong, x + beta * (x_new - x), x_new)  # The backward step.
      return i + 1, x1, robust & ~found, strong.select(found, x_new, x_found)

    _, _, robust, x_found = jax.lax.while_loop(
        lambda s: (s[0] < num_steps) & jnp.any(s[2]), step,
        (jnp.zeros((), jnp.int32), x1, robust, x_found))
    return r + 1, robust, x_found

  _, robust, x_found = jax.lax.while_loop(
      lambda c: (c[0] < num_runs) & jnp.any(c[1]), run, (jnp.zeros((), jnp.int32), robust, x))
  return jax.lax.stop_gradient(x_found), robust


attack = fab_targeted_linf  # The registry's entry (`attacks.run`).
