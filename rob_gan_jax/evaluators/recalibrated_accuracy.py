"""Accuracy under PGD on the test split after re-estimating D's BatchNorm running statistics on
real training images (`recalibration`), reported beside `accuracy_curve`'s figures of D as it was
saved, never instead of them: e.g. paper Fig. 5's "without fine-tuning" for a co-trained D, whose
running statistics also averaged G's images.

Settings: `eval.recalibrate_batch_norm` ('clean', or 'attacked' by `finetune.attack`, as step 2
can start), `eval.recalibration_examples` training images in batches of `eval.batch_size`; the
attack and radii of `accuracy_curve`. Metrics: `recalibrated_test_accuracy` and
`recalibrated_test_accuracy_cumulative` (per radius of `eval.epsilons`), for D's classifier
`recalibrated_test_max_class_share`, `recalibrated_test_prediction_information` and the same
before recalibration (`test_*`, `robustness.prediction_statistics`), and the settings.
"""

from rob_gan_jax import evaluators
from rob_gan_jax import recalibration
from rob_gan_jax import robustness
from rob_gan_jax.evaluators import accuracy_curve


class Evaluator:

  def __init__(self, context):
    e = context.config.eval
    recalibration.check_mode(e.recalibrate_batch_norm, context.config.model, context.task,
                             'eval.recalibrate_batch_norm')
    if e.recalibrate_batch_norm == 'none':
      raise ValueError("the evaluator recalibrated_accuracy needs eval.recalibrate_batch_norm "
                       "'clean' or 'attacked'")
    self.context = context

  def run(self, networks):
    c = self.context
    e = c.config.eval
    recalibrated = recalibration.recalibrated(
        c.config, c.discriminator, networks, mode=e.recalibrate_batch_norm,
        num_examples=e.recalibration_examples, batch_size=e.batch_size)
    curve = accuracy_curve.pgd_curve(c, recalibrated, 'test', variant='recalibrated')
    metrics = {'recalibrated_batch_norm': e.recalibrate_batch_norm,
               'recalibration_examples': e.recalibration_examples,
               'epsilons': [float(eps) for eps in e.epsilons],
               'recalibrated_test_accuracy': curve.per_radius,
               'recalibrated_test_accuracy_cumulative': curve.cumulative}
    if c.task.head == 'class':
      images, _ = c.eval_sample('test')
      for prefix, weights in (('test', networks), ('recalibrated_test', recalibrated)):
        statistics = robustness.clean_prediction_statistics(c.target(weights), images)
        metrics.update({f'{prefix}_{k}': v for k, v in statistics.items()})
    return evaluators.Output(metrics=metrics)
