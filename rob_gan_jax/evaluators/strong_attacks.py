"""Test accuracy of D's classifier under the strong attacks of `eval.attacks` at every radius of
`eval.epsilons`, and the worst case per example over them and PGD.

'apgd-ce', 'apgd-t', 'fab-t' (Croce & Hein, ICML 2020) and 'square' (Andriushchenko et al., ECCV
2020), or 'autoattack' for `eval.autoattack` (AutoAttack's standard set, the four), with the
budgets of `eval.attack_budgets`. PGD alone can overstate robustness (gradient masking, a badly tuned step);
these are parameter-free and Square uses no gradient. An example counts in the worst case only if
it survives PGD (`accuracy_curve.pgd_curve`, computed once) and every strong attack. Nothing is
measured when `eval.attacks` names PGD only.
"""

from absl import logging
import jax
import numpy as np

from rob_gan_jax import attacks
from rob_gan_jax import evaluators
from rob_gan_jax import robustness
from rob_gan_jax.evaluators import accuracy_curve

DEFAULTS = dict(every_steps=0, every_epochs=0)


class Evaluator:

  def __init__(self, context):
    self.context = context
    e = context.config.eval
    self.names = robustness.eval_attacks(e.attacks, e.autoattack)
    self.budgets = {name: attacks.budget_of(name, e.attack_budgets) for name in self.names[1:]}

  def run(self, networks):
    c, e = self.context, self.context.config.eval
    if len(self.names) == 1:
      return evaluators.Output()
    images, labels = c.eval_sample('test')
    curves = {'pgd': accuracy_curve.pgd_curve(c, networks, 'test')}
    for name in self.names[1:]:
      logging.info('Test accuracy under %s at %s.', name, list(e.epsilons))
      curves[name] = robustness.strong_accuracy_curve(
          c.target(networks), images, labels, attack=name, epsilons=list(e.epsilons),
          budget=self.budgets[name], key=jax.random.PRNGKey(c.config.seed))
    worst = robustness.AccuracyCurve.from_correct(
        np.logical_and.reduce([curve.correct for curve in curves.values()]), e.epsilons)
    columns = [(f'test, {name}', curve.per_radius) for name, curve in curves.items()]
    columns.append(('test, worst case', worst.per_radius))
    table = accuracy_curve.radius_table(list(e.epsilons), columns) + [
        'Worst case: an example counts only if it survives every attack at that radius.']
    plotted = [evaluators.Curve(title, values, f'x:C{i + 2}')
               for i, (title, values) in enumerate(columns[1:-1])]
    plotted.append(evaluators.Curve('test, worst case', worst.per_radius, 'k^-'))
    return evaluators.Output(
        metrics=dict(attacks=list(self.names), attack_budgets=self.budgets,
                     test_accuracy_by_attack={n: curve.per_radius for n, curve in curves.items()},
                     test_accuracy_worst_case=worst.per_radius),
        table=table, curves=plotted)
