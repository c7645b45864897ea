"""The fixed-noise sample grid of G (`samples`): one row of `samples_per_class` images per class,
or 10 such rows for an unconditional G; latents from `seed + 1`, so every grid of a run shows the
same latents. G uses the grid's batch statistics, or its running ones with
`eval.sample_with_running_stats`. Nothing for a checkpoint without G (Madry baseline)."""

import numpy as np

from rob_gan_jax import evaluators
from rob_gan_jax import visualize
from rob_gan_jax.models import sampling

DEFAULTS = dict(every_steps=2_500, every_epochs=0, samples_per_class=10)


class Evaluator:

  def __init__(self, context):
    self.context = context

  def run(self, networks):
    c = self.context
    if networks.generator is None:
      return evaluators.Output()
    per_row = c.settings('sample_grid').samples_per_class
    rows = c.task.num_classes if c.task.conditional else 10
    labels = np.repeat(np.arange(rows), per_row) % c.task.label_range
    images = sampling.sample(c.generator, networks.generator, labels, seed=c.config.seed + 1,
                             running_stats=c.config.eval.sample_with_running_stats)
    return evaluators.Output(images={'samples': visualize.image_grid(images, rows=rows)})
