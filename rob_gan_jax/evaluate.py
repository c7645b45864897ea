"""Robustness evaluation of D's classifier: accuracy under L-inf PGD.

Paper Table 1 and Fig. 5: the attack maximises the class cross-entropy of D's class head (the
official `acc_under_attack.py`, `attack_label_Linf_PGD`, step size eps / 5). An example counts as
robust only if it is classified correctly after every one of `num_restarts` attacks.
"""

import functools
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
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


def accuracy_under_attack(discriminator: nn.Module, variables, images: np.ndarray,
                          labels: np.ndarray, *, epsilon: float, step_size: float,
                          num_steps: int, num_restarts: int = 1, key: jax.Array,
                          batch_size: int = 500, mesh: Optional[jax.sharding.Mesh] = None
                          ) -> float:
  """Accuracy of D's classifier on images attacked by L-inf PGD on the class cross-entropy.

  With `num_restarts` > 1 every attack starts from a random point in the eps-ball and an example
  counts as correct only if it survives all of them; with 1 the attack starts at the clean image.
  `epsilon = 0` (or `num_steps = 0`) gives the clean accuracy.

  Args:
    discriminator: the D module; its class head is the classifier.
    variables: D's {'params', 'batch_stats'}.
    images: (N, H, W, 3) uint8.
    labels: (N,) int.
    epsilon: L-inf radius in the [-1, 1] pixel scale.
    step_size: PGD step in the same scale (ignored when epsilon is 0).
    num_steps: PGD steps.
    num_restarts: attacks per example (>= 1).
    key: PRNG key for the random starts.
    batch_size: examples per compiled call (the last batch is padded).
    mesh: if given, each batch is split over its 'batch' axis (data parallel).

  Returns:
    Accuracy in [0, 1].

  Raises:
    ValueError: epsilon < 0, step_size <= 0, num_steps < 0 or num_restarts < 1.
  """
  if num_restarts < 1:
    raise ValueError(f'num_restarts must be >= 1, got {num_restarts}')
  if epsilon == 0:  # Clean accuracy; any step size is acceptable.
    num_steps, num_restarts, step_size = 0, 1, 1.0
  attacks.check_attack_args(epsilon=epsilon, step_size=step_size, num_steps=num_steps)
  n = len(labels)
  if mesh is not None:
    batch_size = -(-batch_size // mesh.size) * mesh.size
  sharding = NamedSharding(mesh, P('batch')) if mesh is not None else None
  correct = 0
  for start in range(0, n, batch_size):
    x, y = images[start:start + batch_size], labels[start:start + batch_size]
    valid = len(y)
    pad = batch_size - valid
    x = np.pad(x, ((0, pad), (0, 0), (0, 0), (0, 0)))
    y = np.pad(y, (0, pad))
    if sharding is not None:
      x, y = jax.device_put((x, y), sharding)
    ok = True
    for restart in range(num_restarts):
      ok = ok & _correct_under_attack(
          discriminator, variables, x, y, jnp.float32(epsilon), jnp.float32(step_size),
          jax.random.fold_in(jax.random.fold_in(key, start), restart),
          num_steps=num_steps, random_start=num_restarts > 1)
    correct += int(np.sum(np.asarray(ok)[:valid]))
  return correct / n
