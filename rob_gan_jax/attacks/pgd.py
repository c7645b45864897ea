"""L-inf PGD and the L-inf box that all the attacks share.

Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks" (ICLR 2018), as used
by Rob-GAN (Liu & Hsieh, CVPR 2019, Sec. 4); official code `miscs/pgd.py` (`attack_Linf_PGD`).
Images are (B, ...) float32 in [-1, 1]. `epsilon` and `step_size` are in that scale (8/255 in
[0, 1] units is 16/255 = 0.0627 here): Python floats or scalar arrays (one compile, many radii).
"""

import dataclasses
from typing import Callable, Optional

import jax
import jax.numpy as jnp

from rob_gan_jax import parallel

PIXEL_MIN, PIXEL_MAX = -1.0, 1.0


def check_attack_args(*, epsilon, step_size, num_steps, prefix: str = '') -> None:
  """ValueError for epsilon < 0, step_size <= 0 or num_steps < 0 (Python numbers only); `prefix`
  (e.g. 'attack.') is put before the argument's name in the message."""
  if isinstance(epsilon, (int, float)) and epsilon < 0:
    raise ValueError(f'{prefix}epsilon must be >= 0, got {epsilon}')
  if isinstance(step_size, (int, float)) and step_size <= 0:
    raise ValueError(f'{prefix}step_size must be > 0, got {step_size}')
  if isinstance(num_steps, int) and num_steps < 0:
    raise ValueError(f'{prefix}num_steps must be >= 0, got {num_steps}')


@dataclasses.dataclass(frozen=True)
class AttackSpec:
  """A PGD attack's settings: the shape of the config groups `attack`, `finetune.attack` and
  `eval.attack` (radius and step size in the [-1, 1] scale), frozen so that a jitted step can
  hold it."""
  epsilon: float
  step_size: float
  num_steps: int
  random_start: bool = False

  @classmethod
  def from_config(cls, attack_config, field: str) -> 'AttackSpec':
    """The spec of the attack sub-config named `field` (e.g. 'eval.attack'); ValueError as
    `check_attack_args`, naming the field."""
    spec = cls(epsilon=float(attack_config.epsilon), step_size=float(attack_config.step_size),
               num_steps=int(attack_config.num_steps),
               random_start=bool(attack_config.random_start))
    check_attack_args(epsilon=spec.epsilon, step_size=spec.step_size, num_steps=spec.num_steps,
                      prefix=f'{field}.')
    return spec


def linf_bounds(x: jax.Array, epsilon) -> tuple[jax.Array, jax.Array]:
  """(lower, upper): the eps-ball around x and [-1, 1]; projecting onto both is clipping to it."""
  return (jnp.maximum(x - epsilon, PIXEL_MIN), jnp.minimum(x + epsilon, PIXEL_MAX))


def linf_random_start(keys: jax.Array, x: jax.Array, epsilon) -> jax.Array:
  """APGD's random start, x + epsilon t / ||t||_inf, t ~ U(-1, 1)^d drawn with keys[i], clipped.

  As AutoAttack's `autopgd_base.py`: on the sphere before clipping (`pgd_linf`: in the ball).
  """
  def direction(key):
    t = jax.random.uniform(key, x.shape[1:], jnp.float32, -1.0, 1.0)
    return t / jnp.maximum(jnp.max(jnp.abs(t)), jnp.finfo(jnp.float32).tiny)

  lower, upper = linf_bounds(x, epsilon)
  return jnp.clip(x + epsilon * jax.vmap(direction)(keys), lower, upper)


def pgd_linf(loss_fn: Callable[[jax.Array, jax.Array], jax.Array], x: jax.Array, y: jax.Array,
             *, epsilon, step_size, num_steps: int, random_start: bool = False,
             keys: Optional[jax.Array] = None, unroll: Optional[bool] = None) -> jax.Array:
  """x_adv after `num_steps` sign-gradient ascent steps on `loss_fn(x, y) -> scalar`, projected.

  Only x is differentiated, and x_adv is under `stop_gradient`. The model in `loss_fn` should run
  in inference mode (official `dis.eval()`), so that the attack changes no state and examples do
  not interact.

  Args:
    random_start: start from a uniform point in the eps-ball (Madry et al.) drawn with `keys[i]`
      ((B,) PRNG keys), independent of how a batch is split over devices; num_steps=0 returns
      the start.
    unroll: unroll the `fori_loop`; None: on CPU only (`parallel.unroll_loops`). XLA:CPU runs
      convolutions in a `while` body ~3x slower (5 steps of the CIFAR-10 D at batch 64: 5.3 s vs
      1.6 s); unrolling costs compile time that grows with num_steps.

  Raises:
    ValueError: epsilon < 0, step_size <= 0, num_steps < 0, or random_start without keys.
  """
  check_attack_args(epsilon=epsilon, step_size=step_size, num_steps=num_steps)
  x = jax.lax.stop_gradient(x)
  lower, upper = linf_bounds(x, epsilon)
  x_adv = x
  if random_start:
    if keys is None:
      raise ValueError('random_start=True needs PRNG keys, one per example')
    noise = jax.vmap(lambda k: jax.random.uniform(k, x.shape[1:], x.dtype, -1.0, 1.0))(keys)
    x_adv = jnp.clip(x + epsilon * noise, lower, upper)
  grad_fn = jax.grad(loss_fn)

  def step(_, x_adv):
    x_adv = x_adv + step_size * jnp.sign(grad_fn(x_adv, y))
    return jnp.clip(x_adv, lower, upper)

  unroll = parallel.unroll_loops(unroll) if num_steps else None
  x_adv = jax.lax.fori_loop(0, num_steps, step, x_adv, unroll=unroll)
  return jax.lax.stop_gradient(x_adv)
