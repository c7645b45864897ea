"""APGD-T, AutoAttack's second attack: `apgd.apgd_targeted_linf` (targeted DLR) towards the
`num_target_classes` most likely other classes in turn."""

from rob_gan_jax.attacks import apgd

BUDGET = dict(num_steps=100, num_restarts=1, num_target_classes=9)  # AutoAttack's standard.
MIN_CLASSES = 4  # The targeted DLR loss reads the 4 largest logits.


def attack(logits_fn, x, y, *, epsilon, key, num_steps: int, num_restarts: int,
           num_target_classes: int):
  """`apgd.apgd_targeted_linf`: (x_adv, robust); raises as it."""
  return apgd.apgd_targeted_linf(logits_fn, x, y, epsilon=epsilon, key=key, num_steps=num_steps,
                                 num_restarts=num_restarts, num_target_classes=num_target_classes)
