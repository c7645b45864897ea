"""PGD on one head of the discriminator D in inference mode (no state changes).

'class': PGD on the class cross-entropy (official `miscs/pgd.py`, `attack_label_Linf_PGD`), for
fine-tuning, the Madry baseline, evaluation (official `acc_under_attack.py`) and the notebook API.
'source': an unconditional D's source head, pushing real images towards "fake" (official
`attack_Linf_PGD_bin`), evaluated for AS-GAN. x: (B, H, W, C) float32 in [-1, 1]; y: (B,) int32,
unused by 'source'. An unknown head raises ValueError.
"""

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from rob_gan_jax.attacks import pgd

HEADS = ('class', 'source')


def _check_head(head: str) -> None:
  if head not in HEADS:
    raise ValueError(f'head must be one of {HEADS}, got {head!r}')


def class_logits(discriminator: nn.Module, variables, x: jax.Array) -> jax.Array:
  """(B, num_classes) float32 class logits of D in inference mode."""
  return discriminator.apply(variables, x, train=False)[1]


def head_loss(discriminator: nn.Module, variables, x: jax.Array, y: jax.Array, *,
              head: str) -> jax.Array:
  """(B,) float32 loss that the head's attack maximises: 'class': cross-entropy against y;
  'source': D's loss for calling a real image real (sign gradient that of -logit)."""
  _check_head(head)
  source, classes = discriminator.apply(variables, x, train=False)
  if head == 'class':
    return optax.softmax_cross_entropy_with_integer_labels(classes, y)
  return optax.sigmoid_binary_cross_entropy(source, jnp.ones_like(source))


def head_correct(discriminator: nn.Module, variables, x: jax.Array, y: jax.Array, *,
                 head: str) -> jax.Array:
  """(B,) bool: 'class': the classifier predicts y; 'source': D calls the (real) image real
  (source logit > 0)."""
  _check_head(head)
  source, classes = discriminator.apply(variables, x, train=False)
  if head == 'class':
    return jnp.argmax(classes, axis=-1) == y
  return source > 0


def pgd_head(discriminator: nn.Module, variables, x: jax.Array, y: jax.Array, *, head: str,
             epsilon, step_size, num_steps: int, random_start: bool = False,
             keys: Optional[jax.Array] = None, unroll: Optional[bool] = None) -> jax.Array:
  """`pgd.pgd_linf` (same arguments, result and errors) on the mean `head_loss` of `head`."""
  _check_head(head)
  loss_fn = lambda x, y: jnp.mean(head_loss(discriminator, variables, x, y, head=head))
  return pgd.pgd_linf(loss_fn, x, y, epsilon=epsilon, step_size=step_size, num_steps=num_steps,
                      random_start=random_start, keys=keys, unroll=unroll)
