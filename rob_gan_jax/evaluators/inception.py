"""Inception Score and FID of G against the `split` of the data with the standard FID Inception
weights (`weights`, converted to .npz; see README), on `num_samples` samples during training and
`eval_num_samples` in `--mode=eval`, extracted in batches of `batch_size`. G makes them as
`models.sampling.sample` does (`eval.sample_with_running_stats`). Skipped, with one warning,
without the weights or without a G (Madry baseline)."""

from absl import logging
from ml_collections import config_dict

from rob_gan_jax import evaluators
from rob_gan_jax.metrics import fid

DEFAULTS = dict(every_steps=0, every_epochs=0, weights=config_dict.placeholder(str),
                num_samples=5_000, eval_num_samples=50_000, split='train', batch_size=200)


class Evaluator:

  def __init__(self, context):
    self.context = context
    s = self.settings = context.settings('inception')
    self.num_samples = s.num_samples if context.training else s.eval_num_samples
    if not s.weights:
      logging.warning(fid.SKIPPED)

  def run(self, networks):
    c = self.context
    if not self.settings.weights:
      return evaluators.Output()
    if networks.generator is None:
      logging.warning('Inception Score and FID are skipped: a %s checkpoint has no generator.',
                      networks.stage)
      return evaluators.Output()
    samples, _ = c.generated(networks, self.num_samples)
    metrics = fid.generator_metrics(samples, c.config, c.workdir, mesh=c.mesh)
    if not c.training:
      metrics['inception_num_samples'] = self.num_samples
    return evaluators.Output(metrics=metrics, table=[
        f'Inception Score {metrics["inception_score"]:.3f} +- '
        f'{metrics["inception_score_std"]:.3f}, FID {metrics["fid"]:.2f} '
        f'({self.num_samples} samples)'])
