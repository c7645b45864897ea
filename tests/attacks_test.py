"""Tests of rob_gan_jax.attacks: PGD, and APGD, APGD-T and Square on a tiny CNN.

tests/attacks_torch_test.py compares the strong attacks with torchattacks.
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import tiny
from rob_gan_jax import attacks
from rob_gan_jax import losses
from rob_gan_jax import models
from rob_gan_jax.attacks import apgd
from rob_gan_jax.attacks import pgd
from rob_gan_jax.attacks import square
from tests import conftest


@pytest.fixture(scope='module', params=['batch_norm', 'spectral_norm'])
def discriminator_and_variables(request):
  config = tiny.get_config().model
  config.normalization = request.param
  discriminator = models.create_models(config)[1]
  x = jax.random.uniform(jax.random.PRNGKey(0), (8, 32, 32, 3), minval=-1, maxval=1)
  variables = discriminator.init(jax.random.PRNGKey(1), x, train=False)
  # Non-trivial running statistics, so inference mode differs from batch statistics.
  _, updates = discriminator.apply(variables, x, train=True, mutable=['batch_stats'])
  return discriminator, {**variables, **updates}, x


def real_loss_fn(discriminator, variables):
  def loss_fn(x, y):
    source, classes = discriminator.apply(variables, x, train=False)
    return losses.discriminator_real_loss(source_logits=source, class_logits=classes, labels=y,
                                          conditional=True)
  return loss_fn


@pytest.mark.parametrize('random_start', [False, True])
def test_pgd_stays_in_ball_and_pixel_range_and_increases_loss(discriminator_and_variables,
                                                              random_start):
  discriminator, variables, x = discriminator_and_variables
  x = x.at[:, :4].set(1.0).at[:, 4:8].set(-1.0)  # Pixels at the range limits.
  y = jnp.arange(8) % 10
  loss_fn = real_loss_fn(discriminator, variables)
  x_adv = pgd.pgd_linf(loss_fn, x, y, epsilon=0.03125, step_size=0.0078, num_steps=5,
                           random_start=random_start,
                           keys=jax.random.split(jax.random.PRNGKey(3), 8))
  assert x_adv.shape == x.shape
  assert float(jnp.max(jnp.abs(x_adv - x))) <= 0.03125 + 1e-6
  assert float(jnp.min(x_adv)) >= -1.0 and float(jnp.max(x_adv)) <= 1.0
  assert float(loss_fn(x_adv, y)) >= float(loss_fn(x, y))
  assert float(jnp.max(jnp.abs(x_adv - x))) > 0.0


def test_pgd_zero_steps_returns_input(discriminator_and_variables):
  discriminator, variables, x = discriminator_and_variables
  x_adv = pgd.pgd_linf(real_loss_fn(discriminator, variables), x, jnp.zeros(8, jnp.int32),
                           epsilon=0.1, step_size=0.01, num_steps=0)
  np.testing.assert_array_equal(x_adv, x)


@pytest.mark.parametrize('random_start', [False, True])
def test_pgd_changes_no_state_and_attacks_each_example_alone(discriminator_and_variables,
                                                            random_start):
  discriminator, variables, x = discriminator_and_variables
  before = jax.tree.map(np.array, variables)
  y = jnp.arange(8) % 10
  loss_fn = real_loss_fn(discriminator, variables)
  keys = jax.random.split(jax.random.PRNGKey(2), 8)
  kwargs = dict(epsilon=0.05, step_size=0.01, num_steps=3, random_start=random_start)
  # D runs in inference mode (flax raises if it tried to update statistics) ...
  x_adv = pgd.pgd_linf(loss_fn, x, y, keys=keys, **kwargs)
  jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.array, variables))
  # ... so an example's attack, its random start included (one key per example), does not
  # depend on the rest of the batch, e.g. on how a batch is split over devices.
  x_adv_last = pgd.pgd_linf(loss_fn, x[5:], y[5:], keys=keys[5:], **kwargs)
  np.testing.assert_allclose(x_adv_last, x_adv[5:], atol=1e-6)


def test_pgd_has_no_gradient_to_its_result(discriminator_and_variables):
  discriminator, variables, x = discriminator_and_variables
  loss_fn = real_loss_fn(discriminator, variables)
  y = jnp.zeros(8, jnp.int32)
  grad = jax.grad(lambda x: jnp.sum(pgd.pgd_linf(loss_fn, x, y, epsilon=0.1, step_size=0.01,
                                                     num_steps=2)))(x)
  assert float(jnp.max(jnp.abs(grad))) == 0.0


@pytest.mark.parametrize('kwargs, match', [
    (dict(epsilon=-0.1, step_size=0.01, num_steps=1), 'epsilon'),
    (dict(epsilon=0.1, step_size=0.0, num_steps=1), 'step_size'),
    (dict(epsilon=0.1, step_size=0.01, num_steps=-1), 'num_steps'),
    (dict(epsilon=0.1, step_size=0.01, num_steps=1, random_start=True), 'keys'),
])
def test_pgd_bad_arguments_raise(kwargs, match):
  with pytest.raises(ValueError, match=match):
    pgd.pgd_linf(lambda x, y: jnp.sum(x), jnp.zeros((1, 2, 2, 3)), None, **kwargs)


# Strong attacks (APGD, APGD-T, Square) on a tiny CNN: 8x8 images, 10 classes.

NUM_STEPS, NUM_QUERIES = 20, 200
EPSILON = 0.03  # Some examples survive each attack, others do not.


tiny_logits_fn = conftest.tiny_logits_fn


@pytest.fixture(scope='module')
def batch():
  """32 images labelled by the tiny CNN, the first 4 wrongly."""
  return conftest.tiny_cnn_batch(32, num_wrong=4)


def wiggly_logits_fn(x):
  """A model whose loss has many local maxima in the eps-ball: logits linear in sin(60 x) of 4
  pixels, plus a bias towards class 0. The ReLU CNN is nearly linear in the ball, so that one
  sign step reaches its best corner from any start and restarts cannot matter there."""
  w = jax.random.normal(jax.random.PRNGKey(7), (12, 10)) / np.sqrt(12)
  return (jnp.zeros(10).at[0].set(2.5) +
          jnp.sin(60 * x[:, :2, :2].reshape(x.shape[0], -1)) @ w)


@functools.cache
def jitted(name, model='cnn', **settings):
  """A jitted attack (x, y, key, epsilon, num_restarts) -> (x_adv, robust) on the tiny CNN or
  `wiggly_logits_fn`.

  epsilon and num_restarts are traced, so one compiled attack serves all their values.
  """
  logits_fn = tiny_logits_fn() if model == 'cnn' else wiggly_logits_fn

  def attack(x, y, key, epsilon, num_restarts):
    if name == 'square':
      return square.square_linf(logits_fn, x, y, epsilon=epsilon, key=key, **settings)
    if name == 'apgd-t':
      return apgd.apgd_targeted_linf(logits_fn, x, y, epsilon=epsilon, key=key,
                                        num_restarts=num_restarts, **settings)
    return apgd.apgd_linf(logits_fn, x, y, epsilon=epsilon, key=key,
                             num_restarts=num_restarts, loss=name.removeprefix('apgd-'),
                             **settings)
  return jax.jit(attack)


STRONG = {'apgd-ce': dict(num_steps=NUM_STEPS), 'apgd-dlr': dict(num_steps=NUM_STEPS),
          'apgd-t': dict(num_steps=NUM_STEPS, num_target_classes=3),
          'square': dict(num_queries=NUM_QUERIES)}


def run_strong(name, x, y, *, epsilon=EPSILON, num_restarts=1, seed=0):
  return jitted(name, **STRONG[name])(x, y, jax.random.PRNGKey(seed), jnp.float32(epsilon),
                                      jnp.int32(num_restarts))


@pytest.mark.parametrize('name', list(STRONG))
def test_strong_attack_stays_in_ball_and_flags_exactly_the_misclassified(batch, name):
  x, y = batch
  x_adv, robust = run_strong(name, x, y)
  assert x_adv.shape == x.shape and x_adv.dtype == jnp.float32
  assert robust.shape == y.shape and robust.dtype == jnp.bool_
  assert float(jnp.max(jnp.abs(x_adv - x))) <= EPSILON + 1e-6
  assert float(jnp.min(x_adv)) >= -1.0 and float(jnp.max(x_adv)) <= 1.0
  # robust is False iff the returned point is misclassified.
  correct = jnp.argmax(tiny_logits_fn()(x_adv), axis=-1) == y
  np.testing.assert_array_equal(robust, correct)
  # Misclassified clean images are not robust and are returned unchanged.
  assert not robust[:4].any()
  np.testing.assert_array_equal(x_adv[:4], x[:4])
  # The attack found adversarial examples, but not for every image.
  assert 0 < int(robust.sum()) < 28


@pytest.mark.parametrize('name', list(STRONG))
def test_strong_attack_with_zero_epsilon_returns_the_clean_images(batch, name):
  x, y = batch
  x_adv, robust = run_strong(name, x, y, epsilon=0.0)
  np.testing.assert_array_equal(x_adv, x)
  np.testing.assert_array_equal(robust, jnp.argmax(tiny_logits_fn()(x), axis=-1) == y)


@pytest.fixture(scope='module')
def wiggly_batch(batch):
  x, _ = batch
  return x, jnp.argmax(wiggly_logits_fn(x), axis=-1)


WIGGLY = dict(num_steps=5)  # Few steps, so that a single restart misses adversarial examples.


@pytest.mark.parametrize('model', ['cnn', 'wiggly'])
@pytest.mark.parametrize('name', ['apgd-ce', 'apgd-dlr'])
def test_apgd_never_returns_a_lower_loss_than_the_clean_images(batch, wiggly_batch, name, model):
  x, y = batch if model == 'cnn' else wiggly_batch
  logits_fn = tiny_logits_fn() if model == 'cnn' else wiggly_logits_fn
  attack = jitted(name, model, **(STRONG[name] if model == 'cnn' else WIGGLY))
  loss = lambda x: apgd.apgd_loss(logits_fn(x), y, loss=name.removeprefix('apgd-'))
  epsilon = EPSILON if model == 'cnn' else 0.05
  for num_restarts in (1, 2):
    x_adv, robust = attack(x, y, jax.random.PRNGKey(0), jnp.float32(epsilon),
                           jnp.int32(num_restarts))
    assert bool(robust.any())
    gain = loss(x_adv) - loss(x)
    assert float(jnp.min(jnp.where(robust, gain, 0.0))) >= -1e-5
    assert float(jnp.max(jnp.where(robust, gain, 0.0))) > 0  # It found higher losses.


@pytest.mark.parametrize('name', ['apgd-ce', 'apgd-dlr', 'apgd-t'])
def test_apgd_more_restarts_never_make_an_example_robust(wiggly_batch, name):
  x, y = wiggly_batch
  attack = jitted(name, 'wiggly', **WIGGLY, **({'num_target_classes': 3} if name == 'apgd-t'
                                               else {}))
  robust = [attack(x, y, jax.random.PRNGKey(0), jnp.float32(0.05), jnp.int32(n))[1]
            for n in (1, 2, 4, 8)]
  for fewer, more in zip(robust, robust[1:]):
    assert not jnp.any(more & ~fewer)
  # Measured: 11, 5, 1, 0 (CE), 22, 9, 2, 0 (DLR), 8, 2, 1, 1 (APGD-T) robust of 32.
  assert int(robust[0].sum()) > int(robust[-1].sum())


@pytest.mark.parametrize('name', list(STRONG))
def test_strong_attack_examples_do_not_interact(batch, name):
  x, y = batch
  x_adv, robust = run_strong(name, x, y)
  # Another image in row 4 changes nothing in the other rows (the key of row i is the same).
  x_other = x.at[4].set(-x[4])
  x_adv_other, robust_other = run_strong(name, x_other, y)
  np.testing.assert_array_equal(x_adv_other[5:], x_adv[5:])
  np.testing.assert_array_equal(robust_other[5:], robust[5:])


def test_apgd_targeted_attacks_the_top_other_classes(batch):
  x, y = batch
  logits = tiny_logits_fn()(x)
  targets = apgd.top_other_classes(logits, y, 3)
  assert not jnp.any(targets == y[:, None])
  ranked = jnp.argsort(-jnp.where(jax.nn.one_hot(y, 10, dtype=bool), -jnp.inf, logits), axis=-1)
  np.testing.assert_array_equal(targets, ranked[:, :3])
  # APGD-T with one target is APGD on the targeted DLR loss towards the top other class.
  logits_fn = tiny_logits_fn()
  key = jax.random.PRNGKey(3)
  targeted = apgd.apgd_targeted_linf(logits_fn, x, y, epsilon=EPSILON, key=key, num_steps=5,
                                        num_target_classes=1)
  direct = apgd.apgd_linf(logits_fn, x, y, epsilon=EPSILON, key=key, num_steps=5,
                             loss='dlr-targeted', target=targets[:, 0])
  jax.tree.map(np.testing.assert_array_equal, targeted, direct)


def test_strong_attack_registry_passes_the_budgets(monkeypatch):
  """Every strong attack is a module with its default budget, run by name with its budget."""
  assert attacks.available() == ('apgd-ce', 'apgd-t', 'fab-t', 'square')
  assert attacks.default_budgets() == {
      'apgd_ce': dict(num_steps=100, num_restarts=1),
      'apgd_t': dict(num_steps=100, num_restarts=1, num_target_classes=9),
      'fab_t': dict(num_steps=100, num_restarts=1, num_target_classes=9),
      'square': dict(num_queries=5000)}  # AutoAttack's standard version.
  calls = []
  for name in attacks.available():
    monkeypatch.setattr(attacks.get(name), 'attack', lambda *args, name=name, **kwargs: calls.append(
        (name, args, kwargs)) or ('x_adv', 'robust'))
  budgets = ml_collections.ConfigDict(dict(
      apgd_ce=dict(num_steps=7, num_restarts=2), apgd_t=dict(num_steps=7, num_restarts=2,
                                                            num_target_classes=3),
      fab_t=dict(num_steps=5, num_restarts=1, num_target_classes=2), square=dict(num_queries=11)))
  common = dict(epsilon=0.1, key='key')
  for name in attacks.available():
    assert attacks.run(name, 'logits_fn', 'x', 'y', budget=attacks.budget_of(name, budgets),
                       **common) == ('x_adv', 'robust')
  assert calls == [
      (name, ('logits_fn', 'x', 'y'), dict(common, **budgets[attacks.module_name(name)]))
      for name in attacks.available()]


def test_dlr_and_margin_losses_by_hand():
  logits = jnp.array([[4.0, 1.0, 3.0, 2.0]] * 3)  # Sorted: z_pi1..4 = 4, 3, 2, 1.
  y = jnp.array([0, 1, 2])
  np.testing.assert_allclose(losses.margin(logits, y), [4 - 3, 1 - 4, 3 - 4])
  # -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3).
  np.testing.assert_allclose(losses.dlr(logits, y), [-1 / 2, 3 / 2, 1 / 2], rtol=1e-6)
  # -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2).
  target = jnp.array([2, 0, 3])
  np.testing.assert_allclose(losses.dlr_targeted(logits, y, target),
                             [-1 / 2.5, 3 / 2.5, -1 / 2.5], rtol=1e-6)
  np.testing.assert_allclose(apgd.apgd_loss(logits, y, loss='dlr-targeted', target=target),
                             losses.dlr_targeted(logits, y, target))
  np.testing.assert_allclose(apgd.apgd_loss(logits, y, loss='ce'),
                             -jax.nn.log_softmax(logits)[jnp.arange(3), y], rtol=1e-6)
  # DLR is invariant to shifting and scaling the logits.
  np.testing.assert_allclose(losses.dlr(3 * logits + 7, y), losses.dlr(logits, y),
                             rtol=1e-5)


def test_square_p_schedule_by_hand():
  p = functools.partial(square.square_p_selection, p_init=0.8)
  # 10,000 queries: halved after iterations 10, 50, 200, ..., 8000.
  assert [p(i, 10000) for i in (0, 10, 11, 50, 51, 200, 201, 8000, 8001, 9999)] == [
      0.8, 0.8, 0.4, 0.4, 0.2, 0.2, 0.1, 0.8 / 256, 0.8 / 512, 0.8 / 512]
  # 1000 queries: int(i / 1000 * 10000); 5 / 1000 * 10000 is 50.00000000000001 in floats.
  assert [p(i, 1000) for i in (0, 1, 2, 5, 6, 20, 21, 800, 801)] == [
      0.8, 0.8, 0.4, 0.4, 0.2, 0.2, 0.1, 0.8 / 256, 0.8 / 512]
  # AutoAttack's 5000 queries.
  assert [p(i, 5000) for i in (5, 6, 25, 26, 4000, 4001)] == [0.8, 0.4, 0.4, 0.2, 0.8 / 256,
                                                             0.8 / 512]
  # Square sides max(round(sqrt(p h w)), 1): sqrt(0.8 * 256) = 14.3, sqrt(0.2 * 256) = 7.2,
  # sqrt(0.8 / 512 * 256) = 0.63.
  sizes = square.square_sizes(10000, 0.8, 16, 16)
  assert (sizes[0], sizes[51], sizes[9999]) == (14, 7, 1)
  assert square.square_sizes(1, 1.0, 4, 6).tolist() == [4]  # round(sqrt(24)) = 5 > min(h, w).


def test_apgd_checkpoints_by_hand():
  # p_j = 0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99.
  assert apgd.apgd_checkpoints(100) == (22, 41, 57, 70, 80, 87, 93, 99)
  assert apgd.apgd_checkpoints(10) == (3, 5, 6, 7, 8, 9, 10)
  assert apgd.apgd_checkpoints(1) == (1,)


def test_linf_random_start_is_on_the_sphere_in_the_pixel_range(batch):
  x, _ = batch
  start = pgd.linf_random_start(jax.random.split(jax.random.PRNGKey(0), 32), x, 0.1)
  delta = jnp.abs(start - x).reshape(32, -1)
  assert float(jnp.max(delta)) <= 0.1 + 1e-6
  assert float(jnp.min(jnp.max(delta[:, 2 * 8 * 3:], axis=1))) > 0.09  # Rows 2-7 are inside.
  assert float(jnp.min(start)) >= -1.0 and float(jnp.max(start)) <= 1.0


X1 = jnp.zeros((2, 8, 8, 3))
Y1 = jnp.array([0, 1])
KEY = jax.random.PRNGKey(0)


@pytest.mark.parametrize('call, match', [
    (lambda: apgd.apgd_linf(tiny_logits_fn(), X1, Y1, epsilon=-0.1, key=KEY), 'epsilon'),
    (lambda: apgd.apgd_linf(tiny_logits_fn(), X1, Y1, epsilon=0.1, key=KEY, num_steps=0),
     'num_steps'),
    (lambda: apgd.apgd_linf(tiny_logits_fn(), X1, Y1, epsilon=0.1, key=KEY, num_restarts=0),
     'num_restarts'),
    (lambda: apgd.apgd_linf(tiny_logits_fn(), X1, Y1, epsilon=0.1, key=KEY, loss='l2'),
     'loss must be one of'),
    (lambda: apgd.apgd_linf(tiny_logits_fn(2), X1, Y1, epsilon=0.1, key=KEY, loss='dlr'),
     "'dlr' needs at least 3 classes"),
    (lambda: apgd.apgd_linf(tiny_logits_fn(3), X1, Y1, epsilon=0.1, key=KEY,
                               loss='dlr-targeted', target=jnp.array([1, 2])),
     "'dlr-targeted' needs at least 4 classes"),
    (lambda: apgd.apgd_linf(tiny_logits_fn(), X1, Y1, epsilon=0.1, key=KEY,
                               loss='dlr-targeted'), 'target'),
    (lambda: apgd.apgd_linf(tiny_logits_fn(), X1, Y1, epsilon=0.1, key=KEY,
                               target=jnp.array([1, 2])), 'target'),
    (lambda: apgd.apgd_linf(tiny_logits_fn(), X1, Y1, epsilon=0.1, key=KEY,
                               loss='dlr-targeted', target=jnp.array([1, 1])),
     'must differ from the true labels'),
    (lambda: apgd.apgd_linf(tiny_logits_fn(), X1, Y1, epsilon=0.1, key=KEY, rho=0.0), 'rho'),
    (lambda: apgd.apgd_linf(tiny_logits_fn(), X1, Y1, epsilon=0.1, key=KEY, momentum=1.5),
     'momentum'),
    (lambda: apgd.apgd_targeted_linf(tiny_logits_fn(), X1, Y1, epsilon=0.1, key=KEY,
                                        num_target_classes=0), 'num_target_classes'),
    (lambda: apgd.apgd_targeted_linf(tiny_logits_fn(3), X1, Y1, epsilon=0.1, key=KEY),
     'needs at least 4 classes'),
    (lambda: square.square_linf(tiny_logits_fn(), X1, Y1, epsilon=-1.0, key=KEY), 'epsilon'),
    (lambda: square.square_linf(tiny_logits_fn(), X1, Y1, epsilon=0.1, key=KEY, num_queries=0),
     'num_queries'),
    (lambda: square.square_linf(tiny_logits_fn(), X1, Y1, epsilon=0.1, key=KEY, p_init=0.0),
     'p_init'),
    (lambda: square.square_linf(tiny_logits_fn(1), X1, Y1, epsilon=0.1, key=KEY),
     'at least 2 classes'),
    (lambda: attacks.run('fab', tiny_logits_fn(), X1, Y1, epsilon=0.1, key=KEY, budget={}),
     "unknown strong attack 'fab'"),
    (lambda: attacks.run('square', tiny_logits_fn(), X1, Y1, epsilon=0.1, key=KEY,
                         budget=dict(num_queries=0)), 'num_queries must be an integer >= 1'),
    (lambda: attacks.budget_of('square', {'square': dict(num_steps=1)}),
     r"budget of attack 'square' must have the fields \['num_queries'\]"),
    (lambda: attacks.budget_of('apgd-t', {'square': dict(num_queries=1)}),
     "no budget for attack 'apgd-t'"),
    (lambda: attacks.check_classes('apgd-t', 3, 'eval.attacks'),
     "eval.attacks: attack 'apgd-t' needs at least 4 classes"),
])
def test_strong_attack_bad_arguments_raise(call, match):
  with pytest.raises(ValueError, match=match):
    call()


