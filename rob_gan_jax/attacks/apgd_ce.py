"""APGD-CE, AutoAttack's first attack: `apgd.apgd_linf` on the class cross-entropy."""

from rob_gan_jax.attacks import apgd

BUDGET = dict(num_steps=100, num_restarts=1)  # AutoAttack's standard version.


def attack(logits_fn, x, y, *, epsilon, key, num_steps: int, num_restarts: int):
  """`apgd.apgd_linf(..., loss='ce')`: (x_adv, robust); raises as it."""
  return apgd.apgd_linf(logits_fn, x, y, epsilon=epsilon, key=key, loss='ce',
                        num_steps=num_steps, num_restarts=num_restarts)
