"""G measured in the features of the data set's reference classifier (`metrics.reference`), with
no downloaded weights: `fd_ref`, `kid_ref` (+ `kid_ref_std`), `precision_ref`, `recall_ref`
(k = 3) of `num_samples` samples (training) or `eval_num_samples` (`--mode=eval`, the API)
against the whole `eval.split`; for a class-conditional G also GAN-test (`gan_test_accuracy`,
per class `gan_test_per_class`) and CAS (`cas_accuracy`, a fresh classifier trained on
`cas_num_samples` / `eval_cas_num_samples` samples, 0 = none, beside `cas_real_accuracy`, the same
classifier trained on as many real images). Every result carries `reference_test_accuracy`, the
reference classifier's clean accuracy; `--mode=eval` adds its identity (`reference_classifier`). The classifier is trained on
first use when not cached (`reference.cache_dir`, default `<workdir>/../reference_classifiers`).
Skipped, with a warning, for a checkpoint without G (Madry baseline)."""

import os

from absl import logging

from rob_gan_jax import evaluators
from rob_gan_jax.metrics import reference
from rob_gan_jax.metrics import sample_quality


DEFAULTS = dict(every_steps=0, every_epochs=0, num_samples=2_000, eval_num_samples=10_000,
                cas_num_samples=0, eval_cas_num_samples=10_000)


class Evaluator:

  def __init__(self, context):
    self.context = context
    c, s = context.config, context.settings('reference_metrics')
    self.num_samples = s.num_samples if context.training else s.eval_num_samples
    self.cas_num_samples = s.cas_num_samples if context.training else s.eval_cas_num_samples
    self.cache_dir = c.reference.cache_dir or os.path.join(
        os.path.dirname(os.path.abspath(context.workdir)), 'reference_classifiers')

  def _reference(self):
    """(classifier, features of the real test split), loaded once per run."""
    c = self.context
    def load():
      classifier = reference.load_or_train(c.config, self.cache_dir, mesh=c.mesh)
      return classifier, reference.real_features(c.config, classifier, self.cache_dir,
                                                  mesh=c.mesh)
    return c.cached(('reference_classifier',), load)

  def run(self, networks):
    c = self.context
    if networks.generator is None:
      logging.warning('reference_metrics is skipped: a %s checkpoint has no generator.',
                      networks.stage)
      return evaluators.Output()
    classifier, real_features = self._reference()
    samples, labels = c.generated(networks, self.num_samples)
    logits, features = classifier.outputs(samples, mesh=c.mesh)
    metrics = {'reference_test_accuracy': classifier.info['test_accuracy'],
               **sample_quality.metrics(real_features, features)}
    if c.task.conditional:
      accuracy, per_class = sample_quality.gan_test(logits, labels, c.config.model.num_classes)
      metrics.update(gan_test_accuracy=accuracy, gan_test_per_class=per_class.tolist())
      if self.cas_num_samples:
        test = c.cached(('reference_test_split',), lambda: reference.test_split(c.config))
        cas_samples, cas_labels = c.generated(networks, self.cas_num_samples)
        metrics.update(
            cas_accuracy=reference.trained_accuracy(cas_samples, cas_labels, c.config, test,
                                                    mesh=c.mesh),
            cas_real_accuracy=reference.real_data_accuracy(
                c.config, self.cache_dir, self.cas_num_samples, test, mesh=c.mesh))
    if not c.training:
      metrics.update(reference_num_samples=self.num_samples,
                     reference_classifier={k: v for k, v in classifier.info.items()
                                           if k != 'sha256'})
    line = (f"In the reference classifier's features (clean test accuracy "
            f'{metrics["reference_test_accuracy"]:.4f}; not FID): fd_ref {metrics["fd_ref"]:.3f}, '
            f'KID {metrics["kid_ref"]:.4f} +- {metrics["kid_ref_std"]:.4f}, precision '
            f'{metrics["precision_ref"]:.3f}, recall {metrics["recall_ref"]:.3f}')
    if 'gan_test_accuracy' in metrics:
      line += f', GAN-test {metrics["gan_test_accuracy"]:.4f}'
    if 'cas_accuracy' in metrics:
      line += (f', CAS {metrics["cas_accuracy"]:.4f} (the same classifier on as many real '
               f'images: {metrics["cas_real_accuracy"]:.4f})')
    return evaluators.Output(metrics=metrics, table=[f'{line} ({self.num_samples} samples)'])
