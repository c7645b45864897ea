"""Local Lipschitz value of D (paper Fig. 1 and 8): the mean L2 norm of the input gradient of the
attacked head's loss (`robustness.local_lipschitz_value`) on the test split and the training
sample of `--mode=eval` (`llv_test`, `llv_train`), and their bar plot (`local_lipschitz.png`)."""

from rob_gan_jax import evaluators
from rob_gan_jax import robustness

DEFAULTS = dict(every_steps=0, every_epochs=0)


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

    def plot(ax):
      ax.bar(['train', 'test'], [metrics['llv_train'], metrics['llv_test']], color=['C0', 'C1'])
      ax.set_ylabel('mean ||d loss / d x||_2')
      ax.set_title('local Lipschitz value')

    return evaluators.Output(
        metrics=metrics, plots={'local_lipschitz': plot},
        table=[f'Local Lipschitz value: train {metrics["llv_train"]:.4f}, '
               f'test {metrics["llv_test"]:.4f}'])
