"""Losses of Rob-GAN co-training and fine-tuning, and of unconditional GANs (AS-GAN).

Notation of the paper (Liu & Hsieh, CVPR 2019): D has a source head (real/fake logit) and a class
head. L_S is the source log-likelihood, L_C the class log-likelihood. Every loss here is a mean
over the batch, written as a quantity to minimise, and follows the official code's `loss_nll`
(`miscs/loss.py`): `lam * BCE(source) + (1 - lam) * CE(class)`.

The source term is a choice of GAN loss (`config.train.gan_loss`, `GAN_LOSSES`):
- 'non_saturating' (the official code's, default): D minimises BCE against real/fake, G minimises
  BCE(D(G(z)), real) = softplus(-logit) (Goodfellow et al., 2014, the non-saturating variant);
- 'hinge' (SN-GAN, BigGAN; official `loss_hinge_d`/`loss_hinge_g`): D minimises
  relu(1 - logit) on real and relu(1 + logit) on fake, G minimises -logit;
- 'minimax' (the original saddle-point game): D as non-saturating, G minimises -BCE(D(G(z)), fake)
  = -softplus(logit), i.e. log(1 - D(G(z))).

A D without a class head (`class_logits` of shape (B, 0): an unconditional GAN, `num_classes=0`)
has losses of the source term alone, with weight 1 (official `loss_bin` of the removed
`train_cifar_nosup.py`).
"""

import jax
import jax.numpy as jnp
import optax

LOSS_TYPES = ('split', 'acgan')
GAN_LOSSES = ('non_saturating', 'hinge', 'minimax')


def check_gan_loss(gan_loss: str) -> None:
  """Raises ValueError unless `gan_loss` is one of GAN_LOSSES."""
  if gan_loss not in GAN_LOSSES:
    raise ValueError(f'train.gan_loss must be one of {GAN_LOSSES}, got {gan_loss!r}')


def source_loss(*, logits: jax.Array, real: bool, gan_loss: str = 'non_saturating') -> jax.Array:
  """D's mean source loss on logits (B,) of images whose truth is "real" or "fake".

  'non_saturating' and 'minimax': binary cross-entropy; 'hinge': mean relu(1 -+ logits).

  Raises:
    ValueError: unknown `gan_loss`.
  """
  check_gan_loss(gan_loss)
  if gan_loss == 'hinge':
    return jnp.mean(jax.nn.relu(1.0 - logits if real else 1.0 + logits))
  targets = jnp.full_like(logits, 1.0 if real else 0.0)
  return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, targets))


def generator_source_loss(*, logits: jax.Array, gan_loss: str = 'non_saturating') -> jax.Array:
  """G's mean source loss on the logits (B,) of its images (see the module docstring).

  Raises:
    ValueError: unknown `gan_loss`.
  """
  check_gan_loss(gan_loss)
  if gan_loss == 'hinge':
    return -jnp.mean(logits)
  if gan_loss == 'minimax':
    return -source_loss(logits=logits, real=False)
  return source_loss(logits=logits, real=True)


def class_loss(*, logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy of class logits (B, C) against int labels (B,)."""
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def _with_class_term(source_term: jax.Array, class_logits: jax.Array,
                     labels: jax.Array) -> jax.Array:
  """0.5 * source_term + 0.5 * CE(class_logits, labels); source_term alone without a class head."""
  if class_logits.shape[-1] == 0:
    return source_term
  return 0.5 * source_term + 0.5 * class_loss(logits=class_logits, labels=labels)


def discriminator_real_loss(*, source_logits: jax.Array, class_logits: jax.Array,
                            labels: jax.Array, gan_loss: str = 'non_saturating') -> jax.Array:
  """D's loss on (adversarial) real images: 0.5 * source_loss(real) + 0.5 * CE(class, y).

  Paper eqs. 8 and 9 (the real-data terms of -(L_S + L_C)); official `loss_nll(lam=0.5)`. With
  'non_saturating' this is also the loss that the co-training PGD attack maximises. Without a
  class head (C = 0): source_loss(real) alone (official `loss_bin`).

  Args:
    source_logits: (B,) float32.
    class_logits: (B, C) float32, C >= 0.
    labels: (B,) int true labels (unused when C = 0).
    gan_loss: one of GAN_LOSSES.
  """
  return _with_class_term(source_loss(logits=source_logits, real=True, gan_loss=gan_loss),
                          class_logits, labels)


def discriminator_fake_loss(*, source_logits: jax.Array, class_logits: jax.Array,
                            labels: jax.Array, loss_type: str = 'split',
                            gan_loss: str = 'non_saturating') -> jax.Array:
  """D's loss on generated images.

  - 'split' (paper eq. 9, the default): source_loss(fake) only; D's classifier learns from real
    images alone. The official code computes `loss_nll(lam=1)`, whose class term has weight 0;
    it is not computed here.
  - 'acgan' (paper eq. 8, original AC-GAN): 0.5 * source_loss(fake) + 0.5 * CE(class, y_fake).
  Without a class head (C = 0) both are source_loss(fake).

  Args:
    source_logits: (B,) float32.
    class_logits: (B, C) float32, C >= 0 (unused for 'split').
    labels: (B,) int labels the images were generated for (unused for 'split').
    loss_type: 'split' or 'acgan'.
    gan_loss: one of GAN_LOSSES.

  Raises:
    ValueError: unknown `loss_type` or `gan_loss`.
  """
  if loss_type not in LOSS_TYPES:
    raise ValueError(f'loss_type must be one of {LOSS_TYPES}, got {loss_type!r}')
  source_term = source_loss(logits=source_logits, real=False, gan_loss=gan_loss)
  if loss_type == 'split':
    return source_term
  return _with_class_term(source_term, class_logits, labels)


def generator_loss(*, source_logits: jax.Array, class_logits: jax.Array, labels: jax.Array,
                   gan_loss: str = 'non_saturating') -> jax.Array:
  """G's loss on its own images: 0.5 * generator_source_loss + 0.5 * CE(class, y_fake).

  The paper writes G's objective as maximising L_C - L_S on fakes (eqs. 8 and 9), i.e. minimising
  L_S(fake) - L_C(fake) with L_S(fake) = log D_src(fake) ('minimax'). The official code, like
  most GANs, uses the non-saturating form instead (the default): it replaces minimising
  log D_src(fake) = -BCE(source, fake) by minimising -log D_src(real label) = BCE(source, real),
  which has the same fixed point and stronger gradients early on; the class term is the same CE.
  Official `loss_nll(lam=0.5)`. Without a class head (C = 0): the source term alone (official
  `loss_bin`).

  Args:
    source_logits: (B,) float32 source logits of G(z, y).
    class_logits: (B, C) float32 class logits of G(z, y), C >= 0.
    labels: (B,) int labels y the images were generated for (unused when C = 0).
    gan_loss: one of GAN_LOSSES.
  """
  return _with_class_term(generator_source_loss(logits=source_logits, gan_loss=gan_loss),
                          class_logits, labels)


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
