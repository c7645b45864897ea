"""Robustness evaluation of D's classifier: accuracy under L-inf PGD and local Lipschitz value.

Paper Table 1 and Fig. 5: the attack maximises the class cross-entropy of D's class head (the
official `acc_under_attack.py`, `attack_label_Linf_PGD`, step size eps / 5). An example counts as
robust only if it is classified correctly after every one of `num_restarts` attacks (the first
from the clean image, the others from random points of the eps-ball). Paper
Fig. 1 and 8: the local Lipschitz value and the train/test robustness gap.
"""

import functools
from typing import List, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from rob_gan_jax import attacks
from rob_gan_jax import input_pipeline
from rob_gan_jax import losses


def class_logits_fn(discriminator: nn.Module, variables):
  """`f(x) -> (B, C)` class logits of D in inference mode (changes no state)."""
  return lambda x: discriminator.apply(variables, x, train=False)[1]


@functools.partial(jax.jit, static_argnames=('discriminator', 'num_steps', 'random_start'))
def _correct_under_attack(discriminator, variables, x, y, epsilon, step_size, key, *,
                          num_steps, random_start):
  logits_fn = class_logits_fn(discriminator, variables)
  attack_loss = lambda x, y: losses.class_loss(logits=logits_fn(x), labels=y)
  x_adv = attacks.pgd_linf(attack_loss, input_pipeline.to_float(x), y, epsilon=epsilon,
                           step_size=step_size, num_steps=num_steps,
                           random_start=random_start, key=key)
  return jnp.argmax(logits_fn(x_adv), axis=-1) == y


@functools.partial(jax.jit, static_argnames=('discriminator',))
def _input_gradient_norm(discriminator, variables, x, y):
  logits_fn = class_logits_fn(discriminator, variables)
  # Examples do not interact in inference mode, so the gradient of the summed loss holds each
  # example's own gradient.
  loss = lambda x: jnp.sum(optax.softmax_cross_entropy_with_integer_labels(logits_fn(x), y))
  grads = jax.grad(loss)(input_pipeline.to_float(x))
  return jnp.sqrt(jnp.sum(grads**2, axis=(1, 2, 3)))


def _replicate(variables, mesh: Optional[jax.sharding.Mesh]):
  return variables if mesh is None else jax.device_put(variables, NamedSharding(mesh, P()))


def map_batches(fn, images: np.ndarray, labels: np.ndarray, batch_size: int,
                mesh: Optional[jax.sharding.Mesh]) -> np.ndarray:
  """Concatenated per-example outputs of `fn(x, y, start)` over padded batches.

  Batches of `batch_size` (rounded up to a multiple of the mesh size) are padded at the end and
  split over the mesh's 'batch' axis when a mesh is given; padding rows are dropped.
  """
  if mesh is not None:
    batch_size = -(-batch_size // mesh.size) * mesh.size
  sharding = NamedSharding(mesh, P('batch')) if mesh is not None else None
  outputs = []
  for start in range(0, len(labels), batch_size):
    x, y = images[start:start + batch_size], labels[start:start + batch_size]
    valid, pad = len(y), batch_size - len(y)
    x = np.pad(x, ((0, pad), (0, 0), (0, 0), (0, 0)))
    y = np.pad(y, (0, pad))
    if sharding is not None:
      x, y = jax.device_put((x, y), sharding)
    outputs.append(np.asarray(fn(x, y, start))[:valid])
  return np.concatenate(outputs)


def correct_under_attack(discriminator: nn.Module, variables, images: np.ndarray,
                         labels: np.ndarray, *, epsilon: float, step_size: float,
                         num_steps: int, num_restarts: int = 1, key: jax.Array,
                         batch_size: int = 500, mesh: Optional[jax.sharding.Mesh] = None
                         ) -> np.ndarray:
  """Which examples D's classifier still gets right under L-inf PGD on the class cross-entropy.

  The first attack starts at the clean image; each further restart starts at a random point of
  the eps-ball. An example counts as correct only if it survives all of them, so more restarts
  never raise accuracy. `epsilon = 0` (or `num_steps = 0`) gives clean correctness.

  Args:
    discriminator: the D module; its class head is the classifier.
    variables: D's {'params', 'batch_stats'}.
    images: (N, H, W, 3) uint8.
    labels: (N,) int.
    epsilon: L-inf radius in the [-1, 1] pixel scale.
    step_size: PGD step in the same scale (ignored when epsilon is 0).
    num_steps: PGD steps.
    num_restarts: attacks per example (>= 1).
    key: PRNG key for the random starts (restart r uses `fold_in(fold_in(key, batch start),
      r)`, so a run with more restarts repeats those of a run with fewer).
    batch_size: examples per compiled call (the last batch is padded).
    mesh: if given, each batch is split over its 'batch' axis (data parallel).

  Returns:
    (N,) bool.

  Raises:
    ValueError: epsilon < 0, step_size <= 0, num_steps < 0 or num_restarts < 1.
  """
  if num_restarts < 1:
    raise ValueError(f'num_restarts must be >= 1, got {num_restarts}')
  if epsilon == 0:  # Clean accuracy; any step size is acceptable.
    num_steps, num_restarts, step_size = 0, 1, 1.0
  attacks.check_attack_args(epsilon=epsilon, step_size=step_size, num_steps=num_steps)
  variables = _replicate(variables, mesh)

  def fn(x, y, start):
    ok = True
    for restart in range(num_restarts):
      ok = ok & _correct_under_attack(
          discriminator, variables, x, y, jnp.float32(epsilon), jnp.float32(step_size),
          jax.random.fold_in(jax.random.fold_in(key, start), restart),
          num_steps=num_steps, random_start=restart > 0)
    return ok

  return map_batches(fn, images, labels, batch_size, mesh)


def accuracy_under_attack(discriminator: nn.Module, variables, images: np.ndarray,
                          labels: np.ndarray, **kwargs) -> float:
  """Mean of `correct_under_attack` (same arguments): accuracy in [0, 1]."""
  return float(np.mean(correct_under_attack(discriminator, variables, images, labels,
                                            **kwargs)))


def accuracy_curve(discriminator: nn.Module, variables, images: np.ndarray, labels: np.ndarray,
                   *, epsilons: Sequence[float], step_size_factor: float, num_steps: int,
                   num_restarts: int = 1, key: jax.Array, batch_size: int = 500,
                   mesh: Optional[jax.sharding.Mesh] = None) -> List[float]:
  """Accuracy under PGD at each radius (paper Table 1 and Fig. 5), step size eps * factor.

  The eps-ball of a smaller radius lies inside that of a larger one, so an example counts as
  robust at eps only if it survived the attacks at every radius <= eps in `epsilons`; the curve
  is therefore non-increasing in eps.

  Returns:
    Accuracies aligned with `epsilons`.

  Raises:
    ValueError: a negative epsilon, step_size_factor <= 0, num_steps < 0 or num_restarts < 1.
  """
  check_eval_args(epsilons=epsilons, step_size_factor=step_size_factor, num_steps=num_steps,
                  num_restarts=num_restarts)
  robust = np.ones(len(labels), bool)
  accuracy = {}
  for eps in sorted(set(epsilons)):
    robust &= correct_under_attack(
        discriminator, variables, images, labels, epsilon=eps, step_size=eps * step_size_factor,
        num_steps=num_steps, num_restarts=num_restarts, key=key, batch_size=batch_size,
        mesh=mesh)
    accuracy[eps] = float(np.mean(robust))
  return [accuracy[eps] for eps in epsilons]


def check_eval_args(*, epsilons, step_size_factor, num_steps, num_restarts) -> None:
  """Raises ValueError for a negative radius, step_size_factor <= 0, num_steps < 0, or
  num_restarts < 1."""
  for eps in epsilons:
    attacks.check_attack_args(epsilon=eps, step_size=step_size_factor, num_steps=num_steps)
  if step_size_factor <= 0:
    raise ValueError(f'step_size_factor must be > 0, got {step_size_factor}')
  if num_restarts < 1:
    raise ValueError(f'num_restarts must be >= 1, got {num_restarts}')


def local_lipschitz_value(discriminator: nn.Module, variables, images: np.ndarray,
                          labels: np.ndarray, *, batch_size: int = 500,
                          mesh: Optional[jax.sharding.Mesh] = None) -> float:
  """Mean over examples of ||d CE(f(x), y) / d x||_2, paper Fig. 1 (right) and Fig. 8.

  Args:
    discriminator, variables: D and its variables; f is its class head in inference mode.
    images: (N, H, W, 3) uint8; the gradient is taken in the [-1, 1] pixel scale.
    labels: (N,) int.

  Returns:
    The mean L2 norm of the input gradient of the class cross-entropy.
  """
  variables = _replicate(variables, mesh)
  fn = lambda x, y, start: _input_gradient_norm(discriminator, variables, x, y)
  return float(np.mean(map_batches(fn, images, labels, batch_size, mesh)))
