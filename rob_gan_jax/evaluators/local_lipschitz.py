"""Local Lipschitz value of D (paper Fig. 1 and 8): the mean L2 norm of the input gradient of the
attacked head's loss (`robustness.local_lipschitz_value`) on the test split and the training
sample of `--mode=eval` (`llv_test`, `llv_train`)."""

from rob_gan_jax import evaluators
from rob_gan_jax import robustness


class Evaluator:

  def __init__(self, context):
    self.context = context

  def run(self, networks):
    c = self.context
    metrics = {}
    for which in ('train', 'test'):
      images, labels = c.eval_sample(which)
      metrics[f'llv_{which}'] = robustness.local_lipschitz_value(c.target(networks), images,
                                                                 labels)
    return evaluators.Output(metrics=metrics)
