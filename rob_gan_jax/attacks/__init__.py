"""L-inf attacks: PGD (`pgd`, `heads`) and, for evaluation, APGD, APGD-T (`apgd`) and Square.

Fixed-step PGD overestimates the robust accuracy of some defences, and any gradient attack that of
a gradient-masking one; hence the strong attacks. Each returns (x_adv, robust): robust[i] iff
neither x[i] nor any point tried was misclassified, x_adv[i] (within epsilon of x[i], in [-1, 1])
a misclassified point where one was found. AutoAttack's
"standard" version (Croce & Hein, ICML 2020, Sec. 5) runs, each on the survivors of the last:
APGD-CE (100 steps, 1 restart), APGD-T (100 steps, 9 targets), FAB-T (not implemented here) and
Square (5000 queries): `strong_attack` with `AUTOATTACK_BUDGETS`.
"""

from typing import Any, Callable

import jax

from rob_gan_jax.attacks import strong
from rob_gan_jax.attacks.apgd import apgd_checkpoints
from rob_gan_jax.attacks.apgd import apgd_linf
from rob_gan_jax.attacks.apgd import apgd_loss
from rob_gan_jax.attacks.apgd import apgd_targeted_linf
from rob_gan_jax.attacks.apgd import dlr_loss
from rob_gan_jax.attacks.apgd import dlr_targeted_loss
from rob_gan_jax.attacks.apgd import top_other_classes
from rob_gan_jax.attacks.heads import class_logits
from rob_gan_jax.attacks.heads import head_correct
from rob_gan_jax.attacks.heads import head_loss
from rob_gan_jax.attacks.heads import HEADS
from rob_gan_jax.attacks.heads import pgd_head
from rob_gan_jax.attacks.pgd import check_attack_args
from rob_gan_jax.attacks.pgd import check_attack_config
from rob_gan_jax.attacks.pgd import linf_bounds
from rob_gan_jax.attacks.pgd import linf_random_start
from rob_gan_jax.attacks.pgd import pgd_linf
from rob_gan_jax.attacks.pgd import PIXEL_MAX
from rob_gan_jax.attacks.pgd import PIXEL_MIN
from rob_gan_jax.attacks.square import SQUARE_P_HALVINGS
from rob_gan_jax.attacks.square import SQUARE_P_SCHEDULE_QUERIES
from rob_gan_jax.attacks.square import square_linf
from rob_gan_jax.attacks.square import square_p_selection
from rob_gan_jax.attacks.square import square_sizes
from rob_gan_jax.attacks.strong import APGD_LOSSES
from rob_gan_jax.attacks.strong import AUTOATTACK_BUDGETS
from rob_gan_jax.attacks.strong import check_strong_attack_args
from rob_gan_jax.attacks.strong import check_strong_attack_config
from rob_gan_jax.attacks.strong import margin
from rob_gan_jax.attacks.strong import STRONG_ATTACKS


def strong_attack(name: str, logits_fn: Callable[[jax.Array], jax.Array], x: jax.Array,
                  y: jax.Array, *, epsilon, key: jax.Array,
                  settings: Any) -> tuple[jax.Array, jax.Array]:
  """The attack `name` ('apgd-ce': `apgd_linf` on the cross-entropy) with the budgets in
  `settings` (dict or ConfigDict); KeyError for a missing one, ValueError for an unknown name."""
  strong.check_attack_name(name)
  if name == 'apgd-ce':
    return apgd_linf(logits_fn, x, y, epsilon=epsilon, key=key, loss='ce',
                     num_steps=strong.setting(settings, 'num_steps'),
                     num_restarts=strong.setting(settings, 'num_restarts'))
  if name == 'apgd-t':
    return apgd_targeted_linf(logits_fn, x, y, epsilon=epsilon, key=key,
                              num_steps=strong.setting(settings, 'num_steps'),
                              num_target_classes=strong.setting(settings, 'num_target_classes'),
                              num_restarts=strong.setting(settings, 'num_restarts'))
  return square_linf(logits_fn, x, y, epsilon=epsilon, key=key,
                     num_queries=strong.setting(settings, 'num_queries'))
