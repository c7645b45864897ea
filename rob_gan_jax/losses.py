"""Losses of Rob-GAN co-training and fine-tuning.

Notation of the paper (Liu & Hsieh, CVPR 2019): D has a source head (real/fake logit) and a class
head. L_S is the source log-likelihood, L_C the class log-likelihood. Every loss here is a mean
over the batch, written as a quantity to minimise, and follows the official code's `loss_nll`
(`miscs/loss.py`): `lam * BCE(source) + (1 - lam) * CE(class)`.
"""

import jax
import jax.numpy as jnp
import optax

LOSS_TYPES = ('split', 'acgan')


def source_loss(*, logits: jax.Array, real: bool) -> jax.Array:
  """Mean binary cross-entropy of source logits (B,) against the target "real" or "fake"."""
  targets = jnp.full_like(logits, 1.0 if real else 0.0)
  return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, targets))


def class_loss(*, logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy of class logits (B, C) against int labels (B,)."""
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def discriminator_real_loss(*, source_logits: jax.Array, class_logits: jax.Array,
                            labels: jax.Array) -> jax.Array:
  """D's loss on (adversarial) real images: 0.5 * BCE(source, real) + 0.5 * CE(class, y).

  Paper eqs. 8 and 9 (the real-data terms of -(L_S + L_C)); official `loss_nll(lam=0.5)`. This is
  also the loss that the step-1 PGD attack maximises.

  Args:
    source_logits: (B,) float32.
    class_logits: (B, C) float32.
    labels: (B,) int true labels.
  """
  return (0.5 * source_loss(logits=source_logits, real=True)
          + 0.5 * class_loss(logits=class_logits, labels=labels))


def discriminator_fake_loss(*, source_logits: jax.Array, class_logits: jax.Array,
                            labels: jax.Array, loss_type: str = 'split') -> jax.Array:
  """D's loss on generated images.

  - 'split' (paper eq. 9, the default): BCE(source, fake) only; D's classifier learns from real
    images alone. The official code computes `loss_nll(lam=1)`, whose class term has weight 0;
    it is not computed here.
  - 'acgan' (paper eq. 8, original AC-GAN): 0.5 * BCE(source, fake) + 0.5 * CE(class, y_fake).

  Args:
    source_logits: (B,) float32.
    class_logits: (B, C) float32 (unused for 'split').
    labels: (B,) int labels the images were generated for (unused for 'split').
    loss_type: 'split' or 'acgan'.

  Raises:
    ValueError: unknown `loss_type`.
  """
  if loss_type == 'split':
    return source_loss(logits=source_logits, real=False)
  if loss_type == 'acgan':
    return (0.5 * source_loss(logits=source_logits, real=False)
            + 0.5 * class_loss(logits=class_logits, labels=labels))
  raise ValueError(f'loss_type must be one of {LOSS_TYPES}, got {loss_type!r}')


def generator_loss(*, source_logits: jax.Array, class_logits: jax.Array,
                   labels: jax.Array) -> jax.Array:
  """G's loss on its own images: 0.5 * BCE(source, real) + 0.5 * CE(class, y_fake).

  The paper writes G's objective as maximising L_C - L_S on fakes (eqs. 8 and 9), i.e. minimising
  L_S(fake) - L_C(fake) with L_S(fake) = log D_src(fake). The official code, like most GANs,
  uses the non-saturating form instead: it replaces minimising log D_src(fake) = -BCE(source,
  fake) by minimising -log D_src(real label) = BCE(source, real), which has the same fixed point
  and stronger gradients early on; the class term is the same CE. Official `loss_nll(lam=0.5)`.

  Args:
    source_logits: (B,) float32 source logits of G(z, y).
    class_logits: (B, C) float32 class logits of G(z, y).
    labels: (B,) int labels y the images were generated for.
  """
  return discriminator_real_loss(source_logits=source_logits, class_logits=class_logits,
                                 labels=labels)


def finetune_loss(*, real_logits: jax.Array, real_labels: jax.Array, fake_logits: jax.Array,
                  fake_labels: jax.Array, fake_weight: float) -> jax.Array:
  """Fine-tuning loss, paper eq. 10: CE(f(x_real_adv), y) + lambda * CE(f(x_fake_adv), y_fake).

  Args:
    real_logits: (B, C) class logits of adversarial real images.
    real_labels: (B,) int true labels.
    fake_logits: (B', C) class logits of adversarial generated images.
    fake_labels: (B',) int labels the images were generated for.
    fake_weight: lambda >= 0; 0 is the "no fake data" ablation (Madry adversarial training).
  """
  return (class_loss(logits=real_logits, labels=real_labels)
          + fake_weight * class_loss(logits=fake_logits, labels=fake_labels))
