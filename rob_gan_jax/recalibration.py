"""Re-estimating D's BatchNorm running statistics on real training images before it is used with
them (`torch.optim.swa_utils.update_bn`, which does this for SWA averages).

In co-training every training-mode pass updates D's running statistics, those over G's images
included (`train.keep_all_bn_updates`, official behaviour), so they need not describe real
images. Step 2 in the official mode (`finetune.discriminator_train_mode=False`) normalises with
them throughout, and `--mode=eval` of a co-trained D always does. `recalibrate_batch_norm`
replaces them by the average, over batches of real images, of each batch's mean and (biased)
variance: the clean images, or the images as step 2 attacks them ('attacked': PGD on the class
cross-entropy of the un-recalibrated D, `finetune.attack`). Parameters are left unchanged.
"""

import dataclasses
from typing import Any, Dict, Optional

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rob_gan_jax import checkpoints
from rob_gan_jax import parallel
from rob_gan_jax import task as task_lib
from rob_gan_jax.attacks import heads
from rob_gan_jax.input_pipeline import splits
from rob_gan_jax.input_pipeline import transforms

MODES = ('none', 'clean', 'attacked')


def check_mode(mode: str, model_config, task: task_lib.Task, field: str) -> None:
  """Raises ValueError, naming config field `field`, for an unknown mode, a recalibration of a D
  without BatchNorm (`model.normalization` other than 'batch_norm'), or 'attacked' for a D
  without classifier (an unconditional task)."""
  if mode not in MODES:
    raise ValueError(f'{field} must be one of {MODES}, got {mode!r}')
  if mode != 'none' and model_config.normalization != 'batch_norm':
    raise ValueError(f'{field}={mode!r} re-estimates BatchNorm statistics, but '
                     f'model.normalization={model_config.normalization!r} has none; set {field}='
                     "'none'")
  if mode == 'attacked' and not task.conditional:
    raise ValueError(f"{field}='attacked' attacks D's classifier; an unconditional model has "
                     "none: use 'clean'")


@parallel.jit(static_argnames=('discriminator', 'num_steps', 'random_start', 'unroll'))
def _batch_statistics(discriminator, variables, x, y, keys, epsilon, step_size, *, num_steps,
                      random_start, unroll):
  x = transforms.to_float(x)
  if num_steps:
    x = heads.pgd_on(discriminator, variables, x, y, objective='class', epsilon=epsilon,
                     step_size=step_size, num_steps=num_steps, random_start=random_start,
                     keys=keys, unroll=unroll)
  # Momentum 0: the running statistics after one training-mode pass are that batch's own.
  probe = discriminator.clone(bn_momentum=0.0, axis_name=None)
  _, updates = probe.apply(variables, x, train=True, mutable=['batch_stats'])
  return updates['batch_stats']


def recalibrate_batch_norm(discriminator: nn.Module, variables: Dict[str, Any],
                           images: np.ndarray, labels: np.ndarray, *, batch_size: int,
                           attack_config=None, key: jax.Array,
                           unroll: Optional[bool] = None) -> Dict[str, Any]:
  """D's variables with running statistics re-estimated on `images`, on the default device.

  Args:
    discriminator: D (a BatchNorm D: `check_mode`); its `axis_name` is ignored.
    variables: D's {'params', 'batch_stats'}.
    images: (N, H, W, C) uint8 real images; labels: (N,) int32, their classes (for the attack).
    batch_size: images per pass; the N % batch_size left over are not used.
    attack_config: None for the clean images, or an attack sub-config (`finetune.attack`) to
      re-estimate on the images PGD makes of them against the un-recalibrated D's classifier.
    key: random starts of the attack (batch s: `fold_in(key, s)`).

  Returns:
    {'params' (unchanged), 'batch_stats'}: each BatchNorm's mean and variance are the averages of
    the per-batch ones.

  Raises:
    ValueError: fewer images than `batch_size`.
  """
  num_batches = len(labels) // batch_size
  if not num_batches:
    raise ValueError(f'BatchNorm recalibration needs at least one batch of {batch_size} images, '
                     f'got {len(labels)}')
  a = attack_config
  attack = dict(epsilon=jnp.float32(a.epsilon if a else 0.0),
                step_size=jnp.float32(a.step_size if a else 0.0),
                num_steps=a.num_steps if a else 0, random_start=bool(a and a.random_start))
  total = None
  for s in range(num_batches):
    batch = slice(s * batch_size, (s + 1) * batch_size)
    stats = _batch_statistics(discriminator, variables, images[batch], labels[batch],
                              jax.random.split(jax.random.fold_in(key, s), batch_size),
                              unroll=unroll, **attack)
    total = stats if total is None else jax.tree.map(jnp.add, total, stats)
  batch_stats = jax.tree.map(lambda t: np.asarray(t / num_batches), total)
  means = lambda tree: np.concatenate([np.ravel(leaf) for path, leaf in
                                       jax.tree_util.tree_leaves_with_path(tree)
                                       if path[-1].key == 'mean'])
  old, new = means(variables['batch_stats']), means(batch_stats)
  logging.info('BatchNorm recalibrated on %d %s images: the running means moved by %.0f %% of '
               'their mean size.', num_batches * batch_size, 'attacked' if a else 'clean',
               100 * np.mean(np.abs(new - old)) / (np.mean(np.abs(old)) + 1e-12))
  return {'params': variables['params'], 'batch_stats': batch_stats}


def recalibrated(config, discriminator: nn.Module, networks: checkpoints.Weights, *, mode: str,
                 num_examples: int, batch_size: int) -> checkpoints.Weights:
  """`networks` with D recalibrated on the first `num_examples` of the training split's fixed
  random order (`splits.load_subset`), clean or, `mode` 'attacked', under
  `config.finetune.attack` (random starts from `PRNGKey(config.seed)`); `mode` 'none' returns
  `networks` itself."""
  if mode == 'none':
    return networks
  images, labels = splits.load_subset(config, config.dataset.train_split, num_examples)
  variables = recalibrate_batch_norm(
      discriminator, networks.discriminator, images, labels, batch_size=batch_size,
      attack_config=config.finetune.attack if mode == 'attacked' else None,
      key=jax.random.PRNGKey(config.seed), unroll=config.unroll)
  return dataclasses.replace(networks, discriminator=variables)
