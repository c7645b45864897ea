"""Checkpoints and the workdir's config: save atomically, resume, refuse what does not fit.

Layout of a workdir:
  config.json                  the config of the run (its `model` section must not change)
  checkpoints/<step>/          step 1 (co-training): the whole GANState
  finetune/checkpoints/<step>/ step 2 (fine-tuning) or the Madry baseline: ClassifierState
"""

import json
import os

from absl import logging
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

COTRAIN = 'checkpoints'
FINETUNE = os.path.join('finetune', 'checkpoints')


def _config_json(config) -> str:
  return config.to_json_best_effort(indent=2, sort_keys=True)


def model_section(config) -> dict:
  """`config.model` as plain JSON values (tuples as lists), for comparing architectures."""
  return json.loads(_config_json(config))['model']


def check_and_write_config(config, workdir: str) -> None:
  """Writes config.json to the workdir; refuses a workdir trained with another model shape.

  Raises:
    ValueError: workdir/config.json exists and its `model` section differs from this config's.
  """
  path = os.path.join(workdir, 'config.json')
  new = model_section(config)
  if os.path.exists(path):
    with open(path) as f:
      old = json.load(f).get('model', {})
    if old != new:
      diff = {k: (old.get(k), v) for k, v in new.items() if old.get(k) != v}
      raise ValueError(f'{workdir} holds a run with a different model (saved, requested): '
                       f'{diff}; use another --workdir')
  os.makedirs(workdir, exist_ok=True)
  with open(path + '.tmp', 'w') as f:
    f.write(_config_json(config))
  os.replace(path + '.tmp', path)


def manager(directory: str, max_to_keep: int = 1) -> ocp.CheckpointManager:
  """Orbax manager; saves are atomic (written to a temporary folder, then renamed)."""
  return ocp.CheckpointManager(
      os.path.abspath(directory),
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))


def restore_latest(checkpoint_manager: ocp.CheckpointManager, target):
  """Restores the latest checkpoint into the structure of `target`, or returns `target`.

  Args:
    checkpoint_manager: the manager of a checkpoint folder.
    target: a pytree (arrays or jax.ShapeDtypeStruct) with the structure to restore into.

  Raises:
    ValueError: the checkpoint does not fit `target` (another architecture or config).
  """
  step = checkpoint_manager.latest_step()
  if step is None:
    return target
  def abstract(x):  # Arrays, ShapeDtypeStructs or Python scalars (a fresh TrainState's step).
    x = x if hasattr(x, 'shape') else np.asarray(x)
    sharding = getattr(x, 'sharding', None) or jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)

  abstract = jax.tree.map(abstract, target)
  try:
    restored = checkpoint_manager.restore(step, args=ocp.args.StandardRestore(abstract))
  except (ValueError, KeyError, TypeError) as e:
    raise ValueError(f'checkpoint {step} in {checkpoint_manager.directory} does not match this '
                     f'config (different architecture?): {e}') from e
  logging.info('Restored checkpoint %d from %s', step, checkpoint_manager.directory)
  return restored


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config saved in `workdir/config.json`.

  Raises:
    FileNotFoundError: the workdir has no config.json (no run was started there).
  """
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{workdir} has no config.json: no run was started there')
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))
