"""What the strong attacks (`attacks.available()`: APGD-CE, APGD-T, FAB-T, Square) share:
argument checks and per-example helpers.

They are pure, jittable functions of a batch and a PRNG key: example i draws only from
`example_keys(key, B)[i]`, and `logits_fn(x) -> (B, C)` runs the model in inference mode, so an
example's result depends on its own image, label and key. Logits are (B, C), labels y (B,) int32.
"""

import jax
import jax.numpy as jnp

APGD_LOSSES = ('ce', 'dlr', 'dlr-targeted')


def is_number(value) -> bool:
  """A Python int or float (not a bool, not a traced value)."""
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_strong_attack_args(*, epsilon=None, num_steps=None, num_restarts=None,
                             num_target_classes=None, num_queries=None, loss=None,
                             num_classes=None, rho=None, momentum=None, p_init=None,
                             prefix: str = '') -> None:
  """ValueError for a bad argument of the strong attacks; None and traced values pass.

  Needed: epsilon >= 0; integer budgets >= 1; loss in `APGD_LOSSES`; num_classes C >= 2, >= 3
  for 'dlr' (z_pi3), >= 4 for 'dlr-targeted' (z_pi4); rho, momentum, p_init in (0, 1]. `prefix`
  (e.g. 'eval.strong.') is put before the argument's name in the message.
  """
  if is_number(epsilon) and epsilon < 0:
    raise ValueError(f'{prefix}epsilon must be >= 0, got {epsilon}')
  for name, value in (('num_steps', num_steps), ('num_restarts', num_restarts),
                      ('num_target_classes', num_target_classes), ('num_queries', num_queries)):
    if value is not None and is_number(value) and (value < 1 or value != int(value)):
      raise ValueError(f'{prefix}{name} must be an integer >= 1, got {value}')
  if loss is not None and loss not in APGD_LOSSES:
    raise ValueError(f'{prefix}loss must be one of {APGD_LOSSES}, got {loss!r}')
  if num_classes is not None:
    needed = {'dlr': 3, 'dlr-targeted': 4}.get(loss, 2)
    if num_classes < needed:
      what = f'loss {loss!r}' if loss else 'the attack'
      raise ValueError(f'{what} needs at least {needed} classes, the model has {num_classes}')
  for name, value in (('rho', rho), ('momentum', momentum), ('p_init', p_init)):
    if value is not None and is_number(value) and not 0 < value <= 1:
      raise ValueError(f'{prefix}{name} must be in (0, 1], got {value}')


def count_classes(logits_fn, x) -> int:
  """C of `logits_fn`'s (B, C) output on x (not run); ValueError for another shape."""
  shape = jax.eval_shape(logits_fn, x).shape
  if len(shape) != 2 or shape[0] != x.shape[0]:
    raise ValueError(f'logits_fn must map (B, ...) images to (B, C) logits, got {shape} for a '
                     f'batch of {x.shape[0]}')
  return shape[1]


def misclassified(logits: jax.Array, y: jax.Array) -> jax.Array:
  return jnp.argmax(logits, axis=-1) != y


def example_keys(key: jax.Array, batch_size: int) -> jax.Array:
  return jax.random.split(key, batch_size)


def fold_in(keys: jax.Array, data) -> jax.Array:
  return jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, data)


def per_example(mask: jax.Array, x: jax.Array) -> jax.Array:
  return mask.reshape(mask.shape + (1,) * (x.ndim - 1))


def select(mask: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
  """Per example: a where the (B,) mask is True, else b."""
  return jnp.where(per_example(mask, a), a, b)
