"""L-inf attacks: PGD (`pgd`, `heads`), and a registry of the strong attacks of evaluation.

Fixed-step PGD overestimates the robust accuracy of some defences, and any gradient attack that of
a gradient-masking one; hence the strong attacks. A strong attack is one module of this package,
named after it ('apgd-ce' is `apgd_ce.py`), that defines `BUDGET` (its default budget: a dict of
the keyword arguments it takes besides the data, e.g. AutoAttack's standard numbers) and
`attack(logits_fn, x, y, *, epsilon, key, **budget) -> (x_adv, robust)` (and `MIN_CLASSES`, the
classes it needs, if more than 2): robust[i] iff neither
x[i] nor any point tried was misclassified, x_adv[i] (within epsilon of x[i], in [-1, 1]) a
misclassified point where one was found. Adding a module adds an attack (README, "Adding an
attack"); `config.eval.attack_budgets` gets its budget, `config.eval.autoattack` lists
AutoAttack's standard set (Croce & Hein, ICML 2020, Sec. 5: APGD-CE, APGD-T, FAB-T, Square, each
on the survivors of the last).
"""

import functools
import importlib
import pkgutil
from types import ModuleType
from typing import Any, Callable, Dict, Tuple

import jax

from rob_gan_jax.attacks import strong


def module_name(name: str) -> str:
  """The module of attack `name`: 'apgd-ce' -> 'apgd_ce'."""
  return name.replace('-', '_')


@functools.lru_cache(maxsize=None)
def available() -> Tuple[str, ...]:
  """The strong attacks of this package ('apgd-ce', ...): its modules that define `BUDGET`."""
  names = []
  for info in pkgutil.iter_modules(__path__):
    if hasattr(importlib.import_module(f'{__name__}.{info.name}'), 'BUDGET'):
      names.append(info.name.replace('_', '-'))
  return tuple(sorted(names))


def get(name: str) -> ModuleType:
  """The module of strong attack `name`; ValueError for an unknown one."""
  if name not in available():
    raise ValueError(f'unknown strong attack {name!r}; available: {available()}')
  return importlib.import_module(f'{__name__}.{module_name(name)}')


def default_budgets() -> Dict[str, Dict[str, Any]]:
  """{module name: BUDGET} of every strong attack: `config.eval.attack_budgets`'s defaults."""
  return {module_name(name): dict(get(name).BUDGET) for name in available()}


def budget_of(name: str, budgets) -> Dict[str, Any]:
  """Attack `name`'s budget in `budgets` ({module name: budget}, e.g. `eval.attack_budgets`),
  checked against its `BUDGET`'s fields and for counts >= 1.

  Raises:
    ValueError: an unknown attack, a missing or unknown budget field, a count < 1.
  """
  default = get(name).BUDGET
  if module_name(name) not in budgets:
    raise ValueError(f'no budget for attack {name!r} in the attack budgets (fields '
                     f'{sorted(default)})')
  budget = dict(budgets[module_name(name)])
  if set(budget) != set(default):
    raise ValueError(f'the budget of attack {name!r} must have the fields {sorted(default)}, got '
                     f'{sorted(budget)}')
  strong.check_strong_attack_args(**budget, prefix=f'attack_budgets.{module_name(name)}.')
  return budget


def check_classes(name: str, num_classes: int, field: str) -> None:
  """ValueError, naming config `field`, if attack `name` needs more classes than the model has."""
  needed = getattr(get(name), 'MIN_CLASSES', 2)
  if num_classes < needed:
    raise ValueError(f'{field}: attack {name!r} needs at least {needed} classes, the model has '
                     f'{num_classes}')


def run(name: str, logits_fn: Callable[[jax.Array], jax.Array], x: jax.Array, y: jax.Array, *,
        epsilon, key: jax.Array, budget) -> Tuple[jax.Array, jax.Array]:
  """Strong attack `name` with `budget` (its fields, e.g. `budget_of`'s): (x_adv, robust).

  Raises:
    ValueError: an unknown attack, a bad budget or argument (the attack's own checks).
  """
  return get(name).attack(logits_fn, x, y, epsilon=epsilon, key=key, **dict(budget))
