"""Losses of Rob-GAN co-training and fine-tuning, and of unconditional GANs (AS-GAN).

Paper (Liu & Hsieh, CVPR 2019): D's source head (real/fake) gives the log-likelihood L_S, its
class head L_C. Losses are batch means to minimise, as the official `loss_nll` (`miscs/loss.py`):
`lam * BCE(source) + (1 - lam) * CE(class)` on logits (B,) and (B, C); with C = 0 (no class head,
`num_classes=0`) the source term alone (official `loss_bin`). The source term is
`config.train.gan_loss` (others raise ValueError):
- 'non_saturating' (official, default; Goodfellow et al., 2014): D minimises BCE on real/fake, G
  BCE(D(G(z)), real) = softplus(-logit): the fixed point of 'minimax', stronger early gradients;
- 'hinge' (SN-GAN; official `loss_hinge_d/g`): D relu(1 -+ logit) on real/fake, G -logit;
- 'minimax' (the paper's eqs. 8-9): D as above, G -BCE(D(G(z)), fake) = log(1 - D(G(z))).
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
  """D's source loss on logits of images that are `real` or fake."""
  check_gan_loss(gan_loss)
  if gan_loss == 'hinge':
    return jnp.mean(jax.nn.relu(1.0 - logits if real else 1.0 + logits))
  targets = jnp.full_like(logits, 1.0 if real else 0.0)
  return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, targets))


def generator_source_loss(*, logits: jax.Array, gan_loss: str = 'non_saturating') -> jax.Array:
  """G's source loss on the logits of its images."""
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
  """D's loss on (adversarial) real images, the real-data terms of -(L_S + L_C) (eqs. 8-9):
  0.5 * source_loss(real) + 0.5 * CE; with 'non_saturating' also what co-training PGD maximises."""
  return _with_class_term(source_loss(logits=source_logits, real=True, gan_loss=gan_loss),
                          class_logits, labels)


def discriminator_fake_loss(*, source_logits: jax.Array, class_logits: jax.Array,
                            labels: jax.Array, loss_type: str = 'split',
                            gan_loss: str = 'non_saturating') -> jax.Array:
  """D's loss on images generated for `labels`: 'split' (eq. 9, default) source_loss(fake) alone,
  D's classifier learning from real images only (official `loss_nll(lam=1)`, class weight 0);
  'acgan' (eq. 8, AC-GAN) 0.5 * source_loss(fake) + 0.5 * CE. Other `loss_type`s: ValueError."""
  if loss_type not in LOSS_TYPES:
    raise ValueError(f'loss_type must be one of {LOSS_TYPES}, got {loss_type!r}')
  source_term = source_loss(logits=source_logits, real=False, gan_loss=gan_loss)
  if loss_type == 'split':
    return source_term
  return _with_class_term(source_term, class_logits, labels)


def generator_loss(*, source_logits: jax.Array, class_logits: jax.Array, labels: jax.Array,
                   gan_loss: str = 'non_saturating') -> jax.Array:
  """G's loss on G(z, y), official `loss_nll(lam=0.5)`: 0.5 * generator_source_loss + 0.5 * CE
  (the paper's G maximises L_C - L_S on fakes, eqs. 8-9: the 'minimax' source term)."""
  return _with_class_term(generator_source_loss(logits=source_logits, gan_loss=gan_loss),
                          class_logits, labels)


def finetune_loss(*, real_logits: jax.Array, real_labels: jax.Array, fake_logits: jax.Array,
                  fake_labels: jax.Array, fake_weight: float) -> jax.Array:
  """Paper eq. 10: CE(f(x_real_adv), y) + lambda * CE(f(x_fake_adv), y_fake), logits (B, C) and
  (B', C); `fake_weight` is lambda >= 0, 0 the "no fake data" ablation (Madry training)."""
  return (class_loss(logits=real_logits, labels=real_labels)
          + fake_weight * class_loss(logits=fake_logits, labels=fake_labels))
