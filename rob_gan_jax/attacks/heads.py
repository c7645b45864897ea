"""PGD on the discriminator D in inference mode (no state changes), and what a head gets right.

An attack on D ascends one of `losses.ATTACK_OBJECTIVES` of D's two heads: 'class' (fine-tuning,
the Madry baseline, evaluation of a classifier, the notebook API), 'source' (an unconditional D:
real images pushed towards "fake"; AS-GAN's co-training and evaluation) or 'real' (a
class-conditional D's loss on real images: Rob-GAN's co-training). `task.Task` says which.
x: (B, H, W, C) float32 in [-1, 1]; y: (B,) int32, unused by 'source'.
"""

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from rob_gan_jax import losses
from rob_gan_jax.attacks import pgd

HEADS = ('class', 'source')


def class_logits(discriminator: nn.Module, variables, x: jax.Array) -> jax.Array:
  """(B, num_classes) float32 class logits of D in inference mode."""
  return discriminator.apply(variables, x, train=False)[1]


def objective_loss(discriminator: nn.Module, variables, x: jax.Array, y: jax.Array, *,
                   objective: str) -> jax.Array:
  """(B,) float32 `losses.ATTACK_OBJECTIVES[objective]` of D in inference mode.

  Raises:
    KeyError: an unknown objective.
  """
  source, classes = discriminator.apply(variables, x, train=False)
  return losses.ATTACK_OBJECTIVES[objective](source, classes, y, None)


def head_correct(discriminator: nn.Module, variables, x: jax.Array, y: jax.Array, *,
                 head: str) -> jax.Array:
  """(B,) bool: head 'class': the classifier predicts y; 'source': D calls the (real) image real
  (source logit > 0). ValueError for another head."""
  if head not in HEADS:
    raise ValueError(f'head must be one of {HEADS}, got {head!r}')
  source, classes = discriminator.apply(variables, x, train=False)
  if head == 'class':
    return jnp.argmax(classes, axis=-1) == y
  return source > 0


def pgd_on(discriminator: nn.Module, variables, x: jax.Array, y: jax.Array, *, objective: str,
           epsilon, step_size, num_steps: int, random_start: bool = False,
           keys: Optional[jax.Array] = None, unroll: Optional[bool] = None) -> jax.Array:
  """`pgd.pgd_linf` (same arguments, result and errors) on the batch mean of `objective_loss`."""
  if objective not in losses.ATTACK_OBJECTIVES:
    raise ValueError(f'objective must be one of {tuple(losses.ATTACK_OBJECTIVES)}, got '
                     f'{objective!r}')
  loss_fn = lambda x, y: jnp.mean(objective_loss(discriminator, variables, x, y,
                                                 objective=objective))
  return pgd.pgd_linf(loss_fn, x, y, epsilon=epsilon, step_size=step_size, num_steps=num_steps,
                      random_start=random_start, keys=keys, unroll=unroll)
