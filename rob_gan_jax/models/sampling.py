"""Running G outside co-training (fine-tuning's frozen G, sample grids, FID, notebooks), keeping
no BatchNorm update. `variables` are G's {'params', 'batch_stats'}."""

from typing import Optional

import jax
import jax.numpy as jnp

from rob_gan_jax import parallel
from rob_gan_jax.models import base


@parallel.jit(static_argnums=0, static_argnames='train')
def generate(generator: base.GeneratorBase, variables, z: jax.Array, y: Optional[jax.Array], *,
             train: bool) -> jax.Array:
  """G(z, y); `train=True` uses batch statistics averaged over G's `axis_name` (so it must run
  where that axis is bound, e.g. in a train step), `train=False` the running statistics."""
  if train:
    return generator.apply(variables, z, y, train=True, mutable=['batch_stats'])[0]
  return generator.apply(variables, z, y, train=False)


def sample(generator: base.GeneratorBase, variables, labels, *, seed: int,
           running_stats: bool = False) -> jax.Array:
  """One image per label (B,) (an unconditional G uses only B), z ~ N(0, I) from `seed`.

  `running_stats=False` is the official way (it never calls `gen.eval()`, so its grids and
  `eval_inception.py` use batch statistics): training mode on this batch alone, so an image
  depends on the batch's other latents and labels. `running_stats=True`
  (`config.eval.sample_with_running_stats`) uses G's running statistics.
  """
  labels = jnp.asarray(labels, jnp.int32)
  z = jax.random.normal(jax.random.PRNGKey(seed), (labels.shape[0], generator.z_dim))
  return generate(generator.clone(axis_name=None), variables, z, labels,
                  train=not running_stats)
