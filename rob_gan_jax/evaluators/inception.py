"""Inception Score and FID of G against `eval.inception_split` with the standard FID Inception
weights (`eval.inception_weights`, converted to .npz; see README), on `train.inception_num_samples`
samples during training and `eval.inception_num_samples` in `--mode=eval`. G makes them as
`models.sampling.sample` does (`eval.sample_with_running_stats`). Skipped, with one warning, without the
weights or without a G (Madry baseline)."""

from absl import logging

from rob_gan_jax import evaluators
from rob_gan_jax.metrics import fid


class Evaluator:

  def __init__(self, context):
    self.context = context
    c = context.config
    self.num_samples = (c.train if context.training else c.eval).inception_num_samples
    if not c.eval.inception_weights:
      logging.warning(fid.SKIPPED)

  def run(self, networks):
    c = self.context
    if not c.config.eval.inception_weights:
      return evaluators.Output()
    if networks.generator is None:
      logging.warning('Inception Score and FID are skipped: a %s checkpoint has no generator.',
                      networks.stage)
      return evaluators.Output()
    samples, _ = c.generated(networks, self.num_samples)
    metrics = fid.generator_metrics(samples, c.config, c.workdir, mesh=c.mesh)
    if not c.training:
      metrics['inception_num_samples'] = self.num_samples
    return evaluators.Output(metrics=metrics)
