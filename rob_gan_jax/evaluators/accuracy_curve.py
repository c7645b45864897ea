"""Accuracy under PGD at each radius of `eval.epsilons` on the test split and on a sample of the
training split (paper Table 1 and Figs. 1, 5, 8: the train/test robustness gap).

Each radius is attacked on its own, as the official `acc_under_attack.py` does (`test_accuracy`,
`train_accuracy`); from the same attacks `*_accuracy_cumulative` counts an example at eps only if
it survived every radius <= eps. The attack is PGD with `eval.attack.num_steps` steps of eps times
`eval.attack`'s step_size / epsilon, `eval.num_restarts` restarts, keys from `PRNGKey(seed)`; on
D's classifier, or its source head for an unconditional model (`head` says which). Its part of
`--mode=eval`'s table and plot: per radius and cumulative, test and train.
"""

from typing import List

import jax

from rob_gan_jax import evaluators
from rob_gan_jax import robustness

DEFAULTS = dict(every_steps=0, every_epochs=0)


def pgd_curve(context, networks, which: str, variant: str = '') -> robustness.AccuracyCurve:
  """The PGD curve of `context.eval_sample(which)`, computed once per networks (`variant` names
  networks derived from a checkpoint's, e.g. 'recalibrated') and sample (the strong-attack
  evaluator's worst case reuses the test one)."""
  e = context.config.eval

  def compute():
    images, labels = context.eval_sample(which)
    return robustness.accuracy_curve(
        context.target(networks), images, labels, epsilons=list(e.epsilons),
        step_size_factor=robustness.step_size_factor(e.attack), num_steps=e.attack.num_steps,
        num_restarts=e.num_restarts, random_start=e.attack.random_start,
        key=jax.random.PRNGKey(context.config.seed))

  return context.cached(('pgd_curve', networks.stage, networks.step, variant, which), compute)


class Evaluator:

  def __init__(self, context):
    self.context = context

  def run(self, networks):
    e = self.context.config.eval
    curves = {which: pgd_curve(self.context, networks, which) for which in ('test', 'train')}
    metrics = {'head': self.context.task.head, 'split': e.split,
               'epsilons': [float(eps) for eps in e.epsilons]}
    for which, curve in curves.items():
      metrics[f'{which}_accuracy'] = curve.per_radius
      metrics[f'{which}_accuracy_cumulative'] = curve.cumulative
      metrics[f'num_{which}_examples'] = int(curve.correct.shape[1])
    metrics['attack'] = {'num_steps': e.attack.num_steps,
                         'step_size_factor': robustness.step_size_factor(e.attack),
                         'random_start': e.attack.random_start, 'num_restarts': e.num_restarts}
    what = 'accuracy' if self.context.task.head == 'class' else 'source accuracy'
    columns = []
    for which, marker, color in (('test', 's', 'C1'), ('train', 'o', 'C0')):
      columns += [(f'{which} {what}', curves[which].per_radius, f'{marker}-{color}'),
                  (f'{which}, cumulative', curves[which].cumulative, f'{marker}--{color}')]
    table = radius_table(metrics['epsilons'], [(title, values) for title, values, _ in columns])
    table.append('\nPer radius: each radius attacked on its own (official acc_under_attack.py); '
                 'cumulative: robust at every radius <= epsilon.')
    if self.context.task.head == 'source':
      table.append('Source accuracy: the fraction of real images D calls real, under PGD that '
                   'pushes them towards fake.')
    return evaluators.Output(metrics=metrics, table=table, curves=[
        evaluators.Curve(title, values, style) for title, values, style in columns])


def radius_table(epsilons, columns) -> List[str]:
  """Markdown rows of one row per radius (in both pixel scales) and the given (title, values)."""
  lines = ['| epsilon ([-1, 1] scale) | same in /255 of [0, 1] | '
           + ' | '.join(title for title, _ in columns) + ' |',
           '|---|---|' + '---|' * len(columns)]
  for i, eps in enumerate(epsilons):
    lines.append(f'| {eps:.3f} | {eps * 127.5:.1f} | '
                 + ' | '.join(f'{values[i]:.4f}' for _, values in columns) + ' |')
  return lines
