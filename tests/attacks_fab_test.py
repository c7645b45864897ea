"""Tests of FAB-T (`rob_gan_jax.attacks.fab_t`): its projection against linear programming, the
attack's contract on a tiny CNN, the minimal perturbation of a linear model, and (second lane) a
cross-check against torchattacks 3.5.1's FAB on the network of tests/attacks_torch_test.py."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from rob_gan_jax.attacks import fab_t as fab
from tests import conftest


def random_planes(num, dim, seed):
  """(t, w, b): points in [-1, 1]^dim, a fifth of the normals' entries zero, offsets that put
  about a third of the planes out of the box's reach; float64 for linprog, float32 for us."""
  rng = np.random.default_rng(seed)
  t = rng.uniform(-1, 1, (num, dim)).astype(np.float32)
  w = (rng.normal(size=(num, dim)) * (rng.random((num, dim)) > 0.2)).astype(np.float32)
  b = (np.sum(w * t, axis=1) + 2 * rng.normal(size=num)).astype(np.float32)
  return t, w, b


def test_projection_matches_linear_programming():
  t, w, b = random_planes(100, 6, seed=0)
  w[0] = 0.0  # No plane: d = 0.
  d = np.asarray(fab.projection_linf(jnp.asarray(t), jnp.asarray(w), jnp.asarray(b)))
  assert np.all(np.abs(t + d) <= 1.0)
  np.testing.assert_array_equal(d[0], 0.0)
  dim = t.shape[1]
  feasible = box_active = 0
  for n in range(1, len(t)):
    # min s over (d, s): -s <= d_i <= s, w.d = b - w.t, -1 <= t + d <= 1.
    result = optimize.linprog(
        np.r_[np.zeros(dim), 1.0],
        A_ub=np.block([[np.eye(dim), -np.ones((dim, 1))], [-np.eye(dim), -np.ones((dim, 1))]]),
        b_ub=np.zeros(2 * dim), A_eq=np.r_[w[n], 0.0][None], b_eq=[b[n] - w[n] @ t[n]],
        bounds=[(-1 - ti, 1 - ti) for ti in t[n].astype(np.float64)] + [(0, None)])
    if result.status == 0:
      feasible += 1
      assert abs(np.max(np.abs(d[n])) - result.x[-1]) <= 1e-5, n
      assert abs(w[n] @ (t[n] + d[n]) - b[n]) <= 1e-4 * (1 + np.abs(w[n]) @ np.abs(t[n])), n
      box_active += bool(np.any(np.abs(d[n]) < np.max(np.abs(d[n])) - 1e-6) &
                         np.any(np.abs(t[n] + d[n]) == 1.0))
    else:
      # Out of reach: the box's corner nearest to the plane, d = 0 where w = 0.
      assert result.status == 2, (n, result.message)
      towards = np.sign(w[n]) * np.sign(b[n] - w[n] @ t[n])
      np.testing.assert_allclose(t[n] + d[n], np.where(towards == 0, t[n], towards),
                                 atol=1e-6, err_msg=str(n))
  assert 40 <= feasible <= 90 and box_active >= 10, (feasible, box_active)


NUM_STEPS = 20
EPSILON = 0.01  # 5 of 13 survive (0.02: 3, 0.05: 1, 0.1: none).


tiny_logits_fn = conftest.tiny_logits_fn


@pytest.fixture(scope='module')
def batch():
  """16 images labelled by the tiny CNN, the first 3 wrongly."""
  return conftest.tiny_cnn_batch(16, num_wrong=3)


@functools.cache
def jitted(num_target_classes=3):
  """FAB-T (x, y, key, epsilon, num_restarts) -> (x_adv, robust) on the tiny CNN, jitted once."""
  logits_fn = tiny_logits_fn()
  return jax.jit(lambda x, y, key, epsilon, num_restarts: fab.fab_targeted_linf(
      logits_fn, x, y, epsilon=epsilon, key=key, num_steps=NUM_STEPS,
      num_target_classes=num_target_classes, num_restarts=num_restarts))


def run(x, y, *, epsilon=EPSILON, num_restarts=1, seed=0):
  return jitted()(x, y, jax.random.PRNGKey(seed), jnp.float32(epsilon), jnp.int32(num_restarts))


@pytest.mark.parametrize('num_restarts', [1, 2])
def test_fab_stays_in_ball_and_flags_exactly_the_misclassified(batch, num_restarts):
  x, y = batch
  x_adv, robust = run(x, y, num_restarts=num_restarts)
  assert x_adv.shape == x.shape and x_adv.dtype == jnp.float32
  assert robust.shape == y.shape and robust.dtype == jnp.bool_
  assert float(jnp.max(jnp.abs(x_adv - x))) <= EPSILON + 1e-6
  assert float(jnp.min(x_adv)) >= -1.0 and float(jnp.max(x_adv)) <= 1.0
  np.testing.assert_array_equal(robust, jnp.argmax(tiny_logits_fn()(x_adv), axis=-1) == y)
  np.testing.assert_array_equal(x_adv[robust], x[robust])
  # Misclassified clean images are not robust and are returned unchanged.
  assert not robust[:3].any()
  np.testing.assert_array_equal(x_adv[:3], x[:3])
  assert 0 < int(robust.sum()) < 13  # It found adversarial examples, not for every image.


def test_fab_robust_accuracy_falls_with_epsilon_and_restarts(batch):
  x, y = batch
  robust = [run(x, y, epsilon=epsilon)[1] for epsilon in (0.0, 0.005, 0.01, 0.02, 0.05, 0.1)]
  np.testing.assert_array_equal(robust[0], jnp.argmax(tiny_logits_fn()(x), axis=-1) == y)
  np.testing.assert_array_equal(run(x, y, epsilon=0.0)[0], x)
  for smaller, larger in zip(robust, robust[1:]):
    assert not jnp.any(larger & ~smaller)
  assert int(robust[0].sum()) == 13 and int(robust[-1].sum()) == 0
  # Restart 0 is the same with more restarts, so they never make an example robust.
  assert not jnp.any(run(x, y, num_restarts=3)[1] & ~robust[2])


def test_fab_examples_do_not_interact(batch):
  x, y = batch
  x_adv, robust = run(x, y, num_restarts=2)
  # Another image in row 3 changes nothing in the other rows (the key of row i is the same).
  x_other = x.at[3].set(-x[3])
  x_adv_other, robust_other = run(x_other, y, num_restarts=2)
  np.testing.assert_array_equal(x_adv_other[4:], x_adv[4:])
  np.testing.assert_array_equal(robust_other[4:], robust[4:])
  # One restart draws no random numbers: an example alone gets what it gets in the batch, up to
  # float rounding (XLA computes a batch of 1 otherwise; measured 3e-8).
  x_adv, robust = run(x, y)
  for i in (3, 7, 12):
    x_alone, robust_alone = run(x[i:i + 1], y[i:i + 1])
    np.testing.assert_allclose(x_alone[0], x_adv[i], atol=1e-6)
    assert bool(robust_alone[0]) == bool(robust[i])


def test_fab_finds_the_minimal_perturbation_of_a_linear_model():
  """Two classes, logits x.W + c: the only adversarial examples lie beyond the plane
  (W_0 - W_1).x + c_0 - c_1 = 0, at L-inf distance margin / ||W_0 - W_1||_1 when the box is
  not in the way. Each image is moved to distance 0.1 from it, well inside the box."""
  rng = np.random.default_rng(1)
  kernel, bias = rng.normal(size=(48, 2)).astype(np.float32), np.float32([0.3, -0.2])
  v = kernel[:, 0] - kernel[:, 1]
  z = rng.uniform(-0.3, 0.3, (8, 48)).astype(np.float32)
  shift = 0.1 - (z @ v + bias[0] - bias[1]) / np.abs(v).sum()
  x = jnp.asarray((z + shift[:, None] * np.sign(v)).reshape(8, 4, 4, 3))
  assert float(jnp.max(jnp.abs(x))) < 0.85  # x +- 0.1 stays inside [-1, 1].
  logits_fn = lambda x: x.reshape(x.shape[0], -1) @ kernel + bias
  y = jnp.zeros(8, jnp.int32)
  np.testing.assert_allclose((logits_fn(x) @ np.float32([1, -1])) / np.abs(v).sum(), 0.1,
                             rtol=1e-5)
  attack = jax.jit(lambda epsilon: fab.fab_targeted_linf(
      logits_fn, x, y, epsilon=epsilon, key=jax.random.PRNGKey(0)))
  assert bool(jnp.all(attack(0.0999)[1]))
  x_adv, robust = attack(0.101)  # FAB overshoots the plane by 0.5% by its second step.
  assert not bool(jnp.any(robust))
  assert float(jnp.max(jnp.abs(x_adv - x))) <= 0.101 + 1e-6


X1 = jnp.zeros((2, 8, 8, 3))
Y1 = jnp.array([0, 1])
KEY = jax.random.PRNGKey(0)


@pytest.mark.parametrize('kwargs, match', [
    (dict(epsilon=-0.1), 'epsilon'), (dict(num_steps=0), 'num_steps'),
    (dict(num_restarts=0), 'num_restarts'), (dict(num_target_classes=0), 'num_target_classes'),
    (dict(alpha_max=1.5), 'alpha_max'), (dict(eta=0.9), 'eta'), (dict(beta=0.0), 'beta'),
])
def test_fab_bad_arguments_raise(kwargs, match):
  with pytest.raises(ValueError, match=match):
    fab.fab_targeted_linf(tiny_logits_fn(), X1, Y1, **{'epsilon': 0.1, 'key': KEY, **kwargs})


def test_fab_needs_two_classes():
  with pytest.raises(ValueError, match='at least 2 classes'):
    fab.fab_targeted_linf(lambda x: jnp.zeros((x.shape[0], 1)), X1, Y1, epsilon=0.1, key=KEY)


# Second lane: against torchattacks (`FAB(multi_targeted=True)`, the official targeted FAB of
# AutoAttack's standard set on the top n_classes - 1 other classes, one run each).

CROSS_EPSILON = 0.012  # As tests/attacks_torch_test.py: 0.006 in torchattacks' [0, 1] scale.
CROSS_TARGETS = 3  # torchattacks' FAB(n_classes=4); 9 targets gave the same 69 (and took 60 s).
# Robust examples of 200, ours vs torchattacks, measured: 98 vs 98, 69 vs 69 and 52 vs 52 at
# epsilon 0.008, 0.012, 0.016 with one restart; 69 vs 69 with two (keys and seeds 0, 1, 2); the
# same examples each time. Both draw no random numbers in their one run and take the same steps,
# so they differ only by float rounding (XLA vs PyTorch convolutions, logits within 1e-5), which
# could flip an example whose iterate lands next to the boundary: 2 examples' tolerance.
CROSS_TOLERANCE = 2


@pytest.mark.slow
def test_fab_projection_matches_torchattacks():
  torch = conftest.require('torch')
  torch_fab = conftest.require('torchattacks.attacks.fab')
  t, w, b = random_planes(200, 50, seed=1)
  ours = fab.projection_linf(jnp.asarray(t), jnp.asarray(w), jnp.asarray(b))
  # Theirs projects within [0, 1]: z = (t + 1) / 2 gives w.t = 2 w.z - sum(w).
  theirs = torch_fab.projection_linf(torch.from_numpy((t + 1) / 2), torch.from_numpy(2 * w),
                                     torch.from_numpy(b + w.sum(axis=1)))
  np.testing.assert_allclose(ours, 2 * theirs.numpy(), atol=2e-6)


@pytest.mark.slow
def test_fab_robust_accuracy_matches_torchattacks():
  torch = conftest.require('torch')
  torchattacks = conftest.require('torchattacks')
  from tests import attacks_torch_test as cross  # pylint: disable=g-import-not-at-top
  low = np.random.default_rng(0).uniform(-1, 1, (cross.NUM_IMAGES, cross.SIZE // 4,
                                                 cross.SIZE // 4, 3))
  x = jnp.clip(jax.image.resize(jnp.asarray(low, jnp.float32),
                                (cross.NUM_IMAGES, cross.SIZE, cross.SIZE, 3), 'linear'), -1, 1)
  net = cross.Net()
  variables = net.init(jax.random.PRNGKey(0), x[:1])
  logits_fn = lambda x: net.apply(variables, x)
  y = jnp.argmax(logits_fn(x), axis=-1)
  x_adv, robust = jax.jit(lambda x, y, key: fab.fab_targeted_linf(
      logits_fn, x, y, epsilon=CROSS_EPSILON, key=key, num_target_classes=CROSS_TARGETS))(
          x, y, jax.random.PRNGKey(0))
  assert float(jnp.max(jnp.abs(x_adv - x))) <= CROSS_EPSILON + 1e-6
  np.testing.assert_array_equal(robust, jnp.argmax(logits_fn(x_adv), axis=-1) == y)

  torch_net = cross.TorchNet(variables['params']).eval()
  x_torch = torch.from_numpy(np.array((x + 1) / 2)).permute(0, 3, 1, 2).contiguous()
  y_torch = torch.from_numpy(np.array(y)).long()
  threads = torch.get_num_threads()
  torch.set_num_threads(1)  # As tests/attacks_torch_test.py: faster on 2 shared cores.
  try:
    attack = torchattacks.FAB(torch_net, norm='Linf', eps=CROSS_EPSILON / 2, steps=100,
                              n_restarts=1, alpha_max=0.1, eta=1.05, beta=0.9, seed=0,
                              multi_targeted=True, n_classes=CROSS_TARGETS + 1)
    x_adv_torch = attack(x_torch, y_torch)
    with torch.no_grad():
      reference = (torch_net(x_adv_torch).argmax(1) == y_torch).numpy()
  finally:
    torch.set_num_threads(threads)
  assert float((x_adv_torch - x_torch).abs().max()) <= CROSS_EPSILON / 2 + 1e-6
  robust = np.asarray(robust)
  assert abs(int(robust.sum()) - int(reference.sum())) <= CROSS_TOLERANCE, (
      robust.sum(), reference.sum())
  assert int(np.sum(robust != reference)) <= CROSS_TOLERANCE
  assert 0.2 * cross.NUM_IMAGES <= reference.sum() <= 0.8 * cross.NUM_IMAGES
