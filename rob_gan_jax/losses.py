"""Losses of Rob-GAN co-training and fine-tuning, of unconditional GANs (AS-GAN), and the
objectives the attacks ascend (`ATTACK_OBJECTIVES`).

Paper (Liu & Hsieh, CVPR 2019): D's source head (real/fake) gives the log-likelihood L_S, its
class head L_C. Losses are batch means to minimise, as the official `loss_nll` (`miscs/loss.py`):
`lam * BCE(source) + (1 - lam) * CE(class)` on logits (B,) and (B, C); for an unconditional D
(`conditional=False`, `task.Task.conditional`: no class head) the source term alone (official
`loss_bin`). The source term is
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


def _with_class_term(source_term: jax.Array, class_logits: jax.Array, labels: jax.Array,
                     conditional: bool, class_weight: float = 0.5) -> jax.Array:
  """0.5 * source_term + class_weight * CE(class_logits, labels); source_term alone without a
  class head."""
  if not conditional:
    return source_term
  return 0.5 * source_term + class_weight * class_loss(logits=class_logits, labels=labels)


def discriminator_real_loss(*, source_logits: jax.Array, class_logits: jax.Array,
                            labels: jax.Array, conditional: bool,
                            gan_loss: str = 'non_saturating') -> jax.Array:
  """D's loss on (adversarial) real images, the real-data terms of -(L_S + L_C) (eqs. 8-9):
  0.5 * source_loss(real) + 0.5 * CE; with 'non_saturating' also what co-training PGD maximises."""
  return _with_class_term(source_loss(logits=source_logits, real=True, gan_loss=gan_loss),
                          class_logits, labels, conditional)


def discriminator_fake_loss(*, source_logits: jax.Array, class_logits: jax.Array,
                            labels: jax.Array, conditional: bool, loss_type: str = 'split',
                            gan_loss: str = 'non_saturating') -> jax.Array:
  """D's loss on images generated for `labels`: 'split' (eq. 9, default) source_loss(fake) alone,
  D's classifier learning from real images only (official `loss_nll(lam=1)`, class weight 0);
  'acgan' (eq. 8, AC-GAN) 0.5 * source_loss(fake) + 0.5 * CE. Other `loss_type`s: ValueError."""
  if loss_type not in LOSS_TYPES:
    raise ValueError(f'loss_type must be one of {LOSS_TYPES}, got {loss_type!r}')
  source_term = source_loss(logits=source_logits, real=False, gan_loss=gan_loss)
  if loss_type == 'split':
    return source_term
  return _with_class_term(source_term, class_logits, labels, conditional)


def generator_loss(*, source_logits: jax.Array, class_logits: jax.Array, labels: jax.Array,
                   conditional: bool, gan_loss: str = 'non_saturating',
                   class_weight: float = 0.5) -> jax.Array:
  """G's loss on G(z, y), official `loss_nll(lam=0.5)`: 0.5 * generator_source_loss + 0.5 * CE
  (the paper's G maximises L_C - L_S on fakes, eqs. 8-9: the 'minimax' source term).
  `class_weight` (`train.generator_class_weight`) replaces the CE term's 0.5: AC-GAN's class
  term pulls G towards images D's classifier is sure of, at the cost of variety within a class."""
  return _with_class_term(generator_source_loss(logits=source_logits, gan_loss=gan_loss),
                          class_logits, labels, conditional, class_weight)


def finetune_loss(*, real_logits: jax.Array, real_labels: jax.Array, fake_logits: jax.Array,
                  fake_labels: jax.Array, fake_weight: float) -> jax.Array:
  """Paper eq. 10: CE(f(x_real_adv), y) + lambda * CE(f(x_fake_adv), y_fake), logits (B, C) and
  (B', C); `fake_weight` is lambda >= 0, 0 the "no fake data" ablation (Madry training)."""
  return (class_loss(logits=real_logits, labels=real_labels)
          + fake_weight * class_loss(logits=fake_logits, labels=fake_labels))


# The attacks' objectives, per example, in one table: `ATTACK_OBJECTIVES[name](source_logits,
# class_logits, labels, target) -> (B,)` float32, the loss an attack raises (Square lowers
# 'margin'). source_logits (B,), class_logits (B, C) (None where an attack sees only a
# classifier's logits), labels (B,) int32, target (B,) int32 for a targeted objective, else None.


def _take(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]


def margin(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """(B,) z_y - max_{i != y} z_i, < 0 iff misclassified: Square's loss (Andriushchenko et al.
  2020, Sec. 3, Algorithm 1's L, untargeted)."""
  is_y = jax.nn.one_hot(labels, logits.shape[-1], dtype=bool)
  return _take(logits, labels) - jnp.max(jnp.where(is_y, -jnp.inf, logits), axis=-1)


def targeted_margin(logits: jax.Array, labels: jax.Array, target: jax.Array) -> jax.Array:
  """(B,) z_t - z_y, > 0 once the target class t outscores y: the function whose zero FAB-T's
  linearisation projects onto (Croce & Hein, ICML 2020, Sec. 3)."""
  return _take(logits, target) - _take(logits, labels)


_DLR_EPS = 1e-12  # AutoAttack's guard against a zero DLR denominator.


def dlr(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """(B,) DLR, -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3 + 1e-12), z_pi sorted (Croce & Hein
  2020, Eq. 6): C >= 3; invariant to shifting and scaling the logits; > 0 iff misclassified."""
  top = jax.lax.top_k(logits, 3)[0]
  return -margin(logits, labels) / (top[:, 0] - top[:, 2] + _DLR_EPS)


def dlr_targeted(logits: jax.Array, labels: jax.Array, target: jax.Array) -> jax.Array:
  """(B,) targeted DLR, -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12) (Eq. 7), C >= 4:
  the margin towards the target class, scaled."""
  top = jax.lax.top_k(logits, 4)[0]
  return -(_take(logits, labels) - _take(logits, target)) / (
      top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + _DLR_EPS)


def _cross_entropy(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def _called_real(source_logits):
  return optax.sigmoid_binary_cross_entropy(source_logits, jnp.ones_like(source_logits))


ATTACK_OBJECTIVES = {
    # The class head's cross-entropy: fine-tuning's and Madry's attack, evaluation (official
    # `attack_label_Linf_PGD`, `acc_under_attack.py`), APGD-CE.
    'class': lambda source, classes, y, target: _cross_entropy(classes, y),
    # An unconditional D calling a real image real (official `attack_Linf_PGD_bin`; its sign
    # gradient is that of -logit): AS-GAN's co-training attack and its evaluation.
    'source': lambda source, classes, y, target: _called_real(source),
    # A class-conditional D's non-saturating loss on a real image, both heads (paper eqs. 8-9,
    # official `attack_Linf_PGD`): Rob-GAN's co-training attack, whatever `train.gan_loss`.
    'real': lambda source, classes, y, target: 0.5 * _called_real(source)
            + 0.5 * _cross_entropy(classes, y),
    'dlr': lambda source, classes, y, target: dlr(classes, y),  # APGD-DLR.
    'dlr_targeted': lambda source, classes, y, target: dlr_targeted(classes, y, target),  # APGD-T.
    'margin': lambda source, classes, y, target: margin(classes, y),  # Square (lowered).
    'targeted_margin': lambda source, classes, y, target: targeted_margin(classes, y, target),
}
