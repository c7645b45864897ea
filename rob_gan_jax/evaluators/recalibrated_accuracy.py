"""Accuracy under PGD on the test split after re-estimating D's BatchNorm running statistics on
real training images (`recalibration`), reported beside `accuracy_curve`'s figures of D as it was
saved, never instead of them: e.g. paper Fig. 5's "without fine-tuning" for a co-trained D, whose
running statistics also averaged G's images.

Settings: `mode` ('clean', or 'attacked' by `finetune.attack`, as step 2 can start),
`num_examples` training images in batches of `eval.batch_size`; the attack and radii of
`accuracy_curve`. Metrics: `recalibrated_test_accuracy` and
`recalibrated_test_accuracy_cumulative` (per radius of `eval.epsilons`), for D's classifier
`recalibrated_test_max_class_share`, `recalibrated_test_prediction_information` and the same
before recalibration (`test_*`, `robustness.prediction_statistics`), and the settings.
"""

from rob_gan_jax import evaluators
from rob_gan_jax import recalibration
from rob_gan_jax import robustness
from rob_gan_jax.evaluators import accuracy_curve

DEFAULTS = dict(every_steps=0, every_epochs=0, mode='clean', num_examples=5_000)


class Evaluator:

  def __init__(self, context):
    settings = context.settings('recalibrated_accuracy')
    recalibration.check_mode(settings.mode, context.config.model, context.task,
                             'evals.recalibrated_accuracy.mode')
    if settings.mode == 'none':
      raise ValueError("the evaluator recalibrated_accuracy needs evals.recalibrated_accuracy.mode "
                       "'clean' or 'attacked'")
    self.context, self.settings = context, settings

  def run(self, networks):
    c, s = self.context, self.settings
    recalibrated = recalibration.recalibrated(
        c.config, c.discriminator, networks, mode=s.mode, num_examples=s.num_examples,
        batch_size=c.config.eval.batch_size)
    curve = accuracy_curve.pgd_curve(c, recalibrated, 'test', variant='recalibrated')
    epsilons = [float(eps) for eps in c.config.eval.epsilons]
    metrics = {'recalibrated_batch_norm': s.mode, 'recalibration_examples': s.num_examples,
               'epsilons': epsilons, 'recalibrated_test_accuracy': curve.per_radius,
               'recalibrated_test_accuracy_cumulative': curve.cumulative}
    if c.task.head == 'class':
      images, _ = c.eval_sample('test')
      for prefix, weights in (('test', networks), ('recalibrated_test', recalibrated)):
        statistics = robustness.clean_prediction_statistics(c.target(weights), images)
        metrics.update({f'{prefix}_{k}': v for k, v in statistics.items()})
    as_saved = accuracy_curve.pgd_curve(c, networks, 'test').per_radius
    table = accuracy_curve.radius_table(epsilons, [
        ('test, as saved', as_saved),
        (f'test, BatchNorm recalibrated ({s.mode})', curve.per_radius),
        ('recalibrated, cumulative', curve.cumulative)]) + [
            f"Recalibrated: D's BatchNorm statistics re-estimated on {s.num_examples} training "
            'images.']
    return evaluators.Output(metrics=metrics, table=table, curves=[
        evaluators.Curve(f'test, recalibrated ({s.mode})', curve.per_radius, 'd-C4')])
