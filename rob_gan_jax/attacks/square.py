"""The L-inf Square Attack, a gradient-free random search (not fooled by gradient masking).

Andriushchenko et al., "Square Attack: a query-efficient black-box adversarial attack via random
search" (ECCV 2020), Algorithm 1, Sec. 4.1; official code: AutoAttack's `square.py`. Images
(B, H, W, C) float32 in [-1, 1], `epsilon` in that scale (float or scalar array).
"""

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from rob_gan_jax import losses
from rob_gan_jax.attacks import pgd
from rob_gan_jax.attacks import strong

# Square's schedule of p (official `p_selection`): p_init is halved after each of these iterations
# of a 10,000-query budget; other budgets are mapped onto it (`square_p_selection`).
SQUARE_P_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
SQUARE_P_SCHEDULE_QUERIES = 10000
BUDGET = dict(num_queries=5000)  # AutoAttack's standard version (the registry, `attacks`).


def square_p_selection(iteration: int, num_queries: int, p_init: float) -> float:
  """The fraction p of the image a square covers at a 0-based iteration (Algorithm 1's h^(i)).

  As the official `p_selection` with `resc_schedule=True` (and torchattacks'): p_init / 2^n, n the
  number of `SQUARE_P_HALVINGS` below int(iteration / num_queries * 10000) (float division).
  """
  rescaled = int(iteration / num_queries * SQUARE_P_SCHEDULE_QUERIES)
  return p_init / 2 ** sum(rescaled > h for h in SQUARE_P_HALVINGS)


def square_sizes(num_queries: int, p_init: float, height: int, width: int) -> np.ndarray:
  """(num_queries,) int32 square sides, max(round(sqrt(p h w)), 1) as the official code, and
  here also <= min(height, width)."""
  sizes = [max(int(round(math.sqrt(square_p_selection(i, num_queries, p_init) * height * width))),
               1) for i in range(num_queries)]
  return np.minimum(np.asarray(sizes, np.int32), min(height, width))


def square_linf(logits_fn: Callable[[jax.Array], jax.Array], x: jax.Array, y: jax.Array, *,
                epsilon, key: jax.Array, num_queries: int = 5000,
                p_init: float = 0.8) -> tuple[jax.Array, jax.Array]:
  """Square Attack on the `losses.margin` of `logits_fn(x) -> (B, C)` (C >= 2, inference mode).

  From vertical stripes (x + epsilon times a sign per column and channel, Sec. 4.1), each of
  `num_queries` iterations (static; after the stripes' query, the official count) moves a square
  of side `square_sizes(...)[i]` by 2 epsilon times a sign per channel, clipped, and keeps it iff
  the margin drops; an example stops once misclassified. Where we differ from the official code:
  the square may touch the bottom and right edges (as Algorithm 1), and its position and signs
  are drawn per example from `split(key, B)[i]` (as the paper), not once per batch.

  Returns:
    (x_adv, robust): x_adv the misclassified point found (the clean image if it is), else the
    lowest-margin one; robust (B,) bool: neither x nor an accepted point was misclassified (a
    rejected one has a higher margin, so it was not either, up to ties).

  Raises:
    ValueError: epsilon < 0, num_queries < 1, p_init outside (0, 1], C < 2, or x not 4-D.
  """
  strong.check_strong_attack_args(epsilon=epsilon, num_queries=num_queries, p_init=p_init)
  strong.check_strong_attack_args(num_classes=strong.count_classes(logits_fn, x))
  if x.ndim != 4:
    raise ValueError(f'square_linf needs (B, H, W, C) images, got shape {x.shape}')
  x = jax.lax.stop_gradient(jnp.asarray(x, jnp.float32))
  _, height, width, channels = x.shape
  lower, upper = pgd.linf_bounds(x, epsilon)
  keys = strong.example_keys(key, x.shape[0])
  sizes = jnp.asarray(square_sizes(num_queries, p_init, height, width))

  def query(x_adv):
    logits = logits_fn(x_adv).astype(jnp.float32)
    return losses.margin(logits, y), strong.misclassified(logits, y)

  robust = ~strong.misclassified(logits_fn(x).astype(jnp.float32), y)
  stripes = jax.vmap(lambda k: jax.random.rademacher(k, (1, width, channels), jnp.float32))(
      strong.fold_in(keys, 0))
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
    x_new = jax.vmap(candidate, in_axes=(0, 0, None))(
        strong.fold_in(keys, i + 1), x_best, sizes[i])
    x_new = jnp.clip(x_new, lower, upper)
    margin_new, wrong = query(x_new)
    accept = active & (margin_new < margin_best)
    return (i + 1, strong.select(accept, x_new, x_best),
            jnp.where(accept, margin_new, margin_best), active & ~(accept & wrong))

  _, x_best, _, active = jax.lax.while_loop(
      lambda s: (s[0] < num_queries) & jnp.any(s[3]), step,
      (jnp.zeros((), jnp.int32), x_best, margin_best, active))
  return jax.lax.stop_gradient(strong.select(robust, x_best, x)), active


attack = square_linf  # The registry's entry (`attacks.run`).
