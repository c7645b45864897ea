"""Tests of rob_gan_jax.losses against values computed by hand."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from rob_gan_jax import losses

SOURCE = jnp.array([0.5, -1.0])
CLASSES = jnp.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
LABELS = jnp.array([0, 2])


def bce(logit, target):
  p = 1.0 / (1.0 + math.exp(-logit))
  return -(target * math.log(p) + (1 - target) * math.log(1 - p))


def ce(logits, label):
  return -logits[label] + math.log(sum(math.exp(v) for v in logits))


BCE_REAL = (bce(0.5, 1) + bce(-1.0, 1)) / 2  # 0.5 * (0.474077 + 1.313262)
BCE_FAKE = (bce(0.5, 0) + bce(-1.0, 0)) / 2  # 0.5 * (0.974077 + 0.313262)
CE = (ce([2.0, 0.0, -1.0], 0) + ce([0.0, 1.0, 0.0], 2)) / 2  # 0.5 * (0.169846 + 1.551445)


def test_hand_values_are_what_we_think():
  assert BCE_REAL == pytest.approx(0.8936695, abs=1e-6)
  assert BCE_FAKE == pytest.approx(0.6436695, abs=1e-6)
  assert CE == pytest.approx(0.8606456, abs=1e-6)


def test_discriminator_real_loss():
  value = losses.discriminator_real_loss(source_logits=SOURCE, class_logits=CLASSES,
                                         labels=LABELS, conditional=True)
  assert float(value) == pytest.approx(0.5 * BCE_REAL + 0.5 * CE, rel=1e-5)


def test_discriminator_fake_loss_split_and_acgan():
  kwargs = dict(source_logits=SOURCE, class_logits=CLASSES, labels=LABELS, conditional=True)
  split = losses.discriminator_fake_loss(**kwargs, loss_type='split')
  acgan = losses.discriminator_fake_loss(**kwargs, loss_type='acgan')
  assert float(split) == pytest.approx(BCE_FAKE, rel=1e-5)
  assert float(acgan) == pytest.approx(0.5 * BCE_FAKE + 0.5 * CE, rel=1e-5)
  with pytest.raises(ValueError, match='loss_type'):
    losses.discriminator_fake_loss(**kwargs, loss_type='hinge')


@pytest.mark.parametrize('class_weight', [None, 0.1, 0.0])  # None: the official 0.5.
def test_generator_loss_is_non_saturating_real_target(class_weight):
  kwargs = {} if class_weight is None else {'class_weight': class_weight}
  value = losses.generator_loss(source_logits=SOURCE, class_logits=CLASSES, labels=LABELS,
                                conditional=True, **kwargs)
  weight = 0.5 if class_weight is None else class_weight
  assert float(value) == pytest.approx(0.5 * BCE_REAL + weight * CE, rel=1e-5)


def test_finetune_loss_eq10():
  fake_logits = jnp.array([[0.0, 0.0, 3.0]])
  value = losses.finetune_loss(real_logits=CLASSES, real_labels=LABELS, fake_logits=fake_logits,
                               fake_labels=jnp.array([1]), fake_weight=0.5)
  assert float(value) == pytest.approx(CE + 0.5 * ce([0.0, 0.0, 3.0], 1), rel=1e-5)
  np.testing.assert_allclose(
      losses.finetune_loss(real_logits=CLASSES, real_labels=LABELS, fake_logits=fake_logits,
                           fake_labels=jnp.array([1]), fake_weight=0.0), CE, rtol=1e-5)


NO_CLASSES = jnp.zeros((2, 0))  # The class logits of an unconditional D.
HINGE_REAL = (max(0, 1 - 0.5) + max(0, 1 + 1.0)) / 2  # 0.5 * (0.5 + 2.0)
HINGE_FAKE = (max(0, 1 + 0.5) + max(0, 1 - 1.0)) / 2  # 0.5 * (1.5 + 0.0)


@pytest.mark.parametrize('gan_loss, d_real, d_fake, g', [
    ('non_saturating', BCE_REAL, BCE_FAKE, BCE_REAL),
    ('minimax', BCE_REAL, BCE_FAKE, -BCE_FAKE),
    ('hinge', HINGE_REAL, HINGE_FAKE, -(0.5 - 1.0) / 2),
])
def test_gan_losses_of_an_unconditional_discriminator(gan_loss, d_real, d_fake, g):
  kwargs = dict(source_logits=SOURCE, class_logits=NO_CLASSES, labels=LABELS, gan_loss=gan_loss,
                conditional=False)
  assert float(losses.discriminator_real_loss(**kwargs)) == pytest.approx(d_real, rel=1e-5)
  for loss_type in losses.LOSS_TYPES:
    assert float(losses.discriminator_fake_loss(**kwargs, loss_type=loss_type)) == (
        pytest.approx(d_fake, rel=1e-5))
  assert float(losses.generator_loss(**kwargs)) == pytest.approx(g, rel=1e-5)


def test_hinge_loss_with_a_class_head():
  kwargs = dict(source_logits=SOURCE, class_logits=CLASSES, labels=LABELS, gan_loss='hinge',
                conditional=True)
  assert float(losses.discriminator_real_loss(**kwargs)) == pytest.approx(
      0.5 * HINGE_REAL + 0.5 * CE, rel=1e-5)
  assert float(losses.discriminator_fake_loss(**kwargs, loss_type='acgan')) == pytest.approx(
      0.5 * HINGE_FAKE + 0.5 * CE, rel=1e-5)
  with pytest.raises(ValueError, match='train.gan_loss'):
    losses.generator_loss(**{**kwargs, 'gan_loss': 'wasserstein'})


def test_attack_objectives_per_example():
  """The table the attacks ascend: per example, and each attack's batch loss is its mean."""
  objective = losses.ATTACK_OBJECTIVES
  real = objective['real'](SOURCE, CLASSES, LABELS, None)
  assert real.shape == (2,)
  assert float(jnp.mean(real)) == pytest.approx(0.5 * BCE_REAL + 0.5 * CE, rel=1e-5)
  assert float(jnp.mean(objective['class'](SOURCE, CLASSES, LABELS, None))) == pytest.approx(
      CE, rel=1e-5)
  assert float(jnp.mean(objective['source'](SOURCE, None, LABELS, None))) == pytest.approx(
      BCE_REAL, rel=1e-5)
  # Square's margin z_y - max_{i != y} z_i: 2 - 0 and 0 - 1; DLR scales it by z_pi1 - z_pi3.
  np.testing.assert_allclose(objective['margin'](None, CLASSES, LABELS, None), [2.0, -1.0])
  np.testing.assert_allclose(objective['dlr'](None, CLASSES, LABELS, None),
                             [-2.0 / 3.0, 1.0 / 1.0], rtol=1e-5)
