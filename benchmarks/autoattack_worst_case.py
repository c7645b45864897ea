"""Worst-case robust accuracy of one trained D with and without FAB-T (issue 32).

Runs PGD (the run's `eval.attack`) and each attack of the run's `eval.autoattack` (AutoAttack's
standard set: APGD-CE, APGD-T, FAB-T, Square, at the budgets of `eval.attack_budgets`) on the same
test images at one radius, keeps which examples each leaves correct, and prints the accuracy under
each, the worst case per example over all of them and over all but FAB-T, the examples only FAB-T
breaks, and each attack's time:

    python benchmarks/autoattack_worst_case.py --workdir=/work/study/runs/finetune_seed0 \
        --stage=finetune --epsilon=0.2 --num_examples=500

`--budget apgd_t.num_target_classes=3` (repeatable) changes one field of `eval.attack_budgets`,
to fit a smaller machine; the table's heading quotes the budgets used.
"""

import argparse
import time

import jax
import numpy as np

from rob_gan_jax import api
from rob_gan_jax import attacks
from rob_gan_jax import robustness


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--stage', default='latest')
  parser.add_argument('--epsilon', type=float, required=True, help='L-inf radius, [-1, 1] scale')
  parser.add_argument('--num_examples', type=int, default=500, help='test images (a fixed random subset)')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--budget', action='append', default=[], metavar='ATTACK.FIELD=INT',
                      help='overrides one field of eval.attack_budgets')
  args = parser.parse_args(argv)

  model = api.load(args.workdir, args.stage)
  for override in args.budget:
    field, value = override.split('=')
    attack, name = field.split('.')
    budgets = model.config.eval.attack_budgets
    if attack not in budgets or name not in budgets[attack]:
      raise ValueError(f'--budget {override}: eval.attack_budgets has no {attack}.{name}; it has '
                       f'{budgets.to_dict()}')
    budgets[attack][name] = int(value)
  images, labels = model.load_data('test', args.num_examples)
  target = robustness.Target(model.discriminator, model.discriminator_variables)
  e = model.config.eval
  start = time.time()
  correct = {'pgd': model.accuracy_curve(images, labels, [args.epsilon]).correct[0]}
  seconds = {'pgd': time.time() - start}
  for name in e.autoattack:
    start = time.time()
    correct[name] = robustness.correct_under_strong_attack(
        target, images, labels, attack=name, epsilon=args.epsilon,
        budget=attacks.budget_of(name, e.attack_budgets), key=jax.random.PRNGKey(args.seed))
    seconds[name] = time.time() - start
    print(f'{name}: {correct[name].mean():.4f} ({seconds[name]:.0f} s)', flush=True)

  others = np.logical_and.reduce([c for n, c in correct.items() if n != 'fab-t'])
  every = np.logical_and(others, correct['fab-t'])
  print(f'\n{model.stage} step {model.step} of {args.workdir}, {len(labels)} test images, '
        f'eps {args.epsilon}; budgets {e.attack_budgets.to_dict()}\n')
  print('| attack | accuracy | seconds |\n|---|---|---|')
  for name, c in correct.items():
    print(f'| {name} | {c.mean():.4f} | {seconds[name]:.0f} |')
  print(f'| worst case without FAB-T | {others.mean():.4f} | |')
  print(f'| worst case with FAB-T | {every.mean():.4f} | |')
  print(f'\nExamples only FAB-T breaks: {int((others & ~correct["fab-t"]).sum())} of {len(labels)}.')


if __name__ == '__main__':
  main()
