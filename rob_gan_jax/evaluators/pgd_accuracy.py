"""Clean accuracy and accuracy under `eval.attack` on a fixed subset of the test split: the
figures logged while training (`test_accuracy_clean`, `test_accuracy_pgd`), of D's classifier or,
for an unconditional model, of its source head (`robustness`).

The subset has `cotrain_num_examples` examples in co-training, `finetune_num_examples` in
fine-tuning and the Madry baseline (None: the whole split), `eval.num_examples` elsewhere; the
random start of step s uses `PRNGKey(s)`. A result is computed once per stage and step of the
networks measured (fine-tuning compares its last one with its start's).
"""

import jax
from ml_collections import config_dict

from rob_gan_jax import evaluators
from rob_gan_jax import robustness

DEFAULTS = dict(every_steps=2_500, every_epochs=1.0, cotrain_num_examples=1_000,
                finetune_num_examples=config_dict.placeholder(int))


class Evaluator:

  def __init__(self, context):
    c, settings = context.config, context.settings('pgd_accuracy')
    if not context.training:
      num_examples = c.eval.num_examples
    elif context.stage == 'cotrain':
      num_examples = settings.cotrain_num_examples
    else:
      num_examples = settings.finetune_num_examples
    self.context = context
    self.images, self.labels = context.subset(c.dataset.test_split, num_examples)

  def run(self, networks):
    c = self.context
    return c.cached(('pgd_accuracy', networks.stage, networks.step),
                    lambda: evaluators.Output(metrics=robustness.clean_and_pgd_accuracy(
                        c.target(networks), self.images, self.labels,
                        attack_config=c.config.eval.attack,
                        key=jax.random.PRNGKey(networks.step))))
