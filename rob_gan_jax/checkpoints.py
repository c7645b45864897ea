"""Workdir layout, the run's config.json, and checkpoints: save atomically, resume, load weights.

Layout of a workdir (one method per workdir: `config.method` 'robgan' or 'madry'):
  config.json                  the config of the run (its `model` section must not change)
  checkpoints/<step>/          stage 'cotrain' (Rob-GAN step 1): the whole GANState
  finetune/checkpoints/<step>/ stage 'finetune' (Rob-GAN step 2): ClassifierState
  madry/checkpoints/<step>/    stage 'madry' (the Madry baseline): ClassifierState
Summaries go to the workdir (cotrain), `finetune/` or `madry/`.

There is one restore path (`_restore`): `restore_latest` reads a whole state to resume training,
`load_weights` reads only the networks' params and BatchNorm statistics (what sampling,
classification, attacks and fine-tuning's start need), without building any optimizer.
"""

import dataclasses
import json
import os
from typing import Any, Dict, Optional

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import orbax.checkpoint as ocp

STAGES = ('cotrain', 'finetune', 'madry')
_STAGE_DIRS = {'cotrain': '', 'finetune': 'finetune', 'madry': 'madry'}


def summary_dir(workdir: str, stage: str) -> str:
  """Where a stage writes its TensorBoard summaries."""
  return os.path.join(workdir, _STAGE_DIRS[stage])


def checkpoint_dir(workdir: str, stage: str) -> str:
  """Where a stage ('cotrain', 'finetune', 'madry') keeps its checkpoints."""
  return os.path.join(summary_dir(workdir, stage), 'checkpoints')


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


def manager(directory: str, max_to_keep: int = 1) -> ocp.CheckpointManager:
  """Orbax manager of a stage's checkpoint folder.

  Saves (`manager.save(step, args=ocp.args.PyTreeSave(state))`) are atomic: written to a
  temporary folder, then renamed.
  """
  return ocp.CheckpointManager(
      os.path.abspath(directory), item_handlers=ocp.PyTreeCheckpointHandler(),
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))


def latest_step(directory: str) -> Optional[int]:
  """The latest checkpoint step in a stage's checkpoint folder, or None (also if missing)."""
  if not os.path.isdir(directory):
    return None
  return manager(directory).latest_step()


def _restore(checkpoint_manager: ocp.CheckpointManager, step: int, abstract, *, partial: bool):
  """Restores `step` into the structure of `abstract` (jax.ShapeDtypeStruct leaves); with
  `partial`, only the leaves `abstract` names are read."""
  try:
    return checkpoint_manager.restore(step, args=ocp.args.PyTreeRestore(
        item=abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
        partial_restore=partial))
  except (ValueError, KeyError, TypeError) as e:
    raise ValueError(f'checkpoint {step} in {checkpoint_manager.directory} does not match this '
                     f'config (different architecture?): {e}') from e


def restore_latest(checkpoint_manager: ocp.CheckpointManager, target):
  """Restores the latest checkpoint into the structure of `target`, or returns `target`.

  Args:
    checkpoint_manager: the manager of a checkpoint folder.
    target: the state pytree (arrays) to restore into; restored arrays get its shardings.

  Raises:
    ValueError: the checkpoint does not fit `target` (another architecture or config).
  """
  step = checkpoint_manager.latest_step()
  if step is None:
    return target
  def abstract(x):  # Arrays, or Python scalars (a fresh TrainState's step).
    x = jnp.asarray(x)
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)

  restored = _restore(checkpoint_manager, step, jax.tree.map(abstract, target), partial=False)
  logging.info('Restored checkpoint %d from %s', step, checkpoint_manager.directory)
  return restored


def resolve_stage(workdir: str, method: str, stage: str = 'latest') -> str:
  """Which checkpoint `stage` means in a workdir of `method`: 'cotrain', 'finetune' or 'madry'.

  'latest' is the fine-tuned D if step 2 has a checkpoint, else the co-trained one; a Madry
  workdir has the one stage 'madry'.

  Raises:
    ValueError: unknown stage, or a stage the method does not have.
    FileNotFoundError: the workdir has no checkpoint of that stage.
  """
  if stage not in ('latest',) + STAGES:
    raise ValueError(f'stage must be one of {("latest",) + STAGES}, got {stage!r}')
  has = lambda s: latest_step(checkpoint_dir(workdir, s)) is not None
  if method == 'madry':
    if stage not in ('latest', 'madry'):
      raise ValueError(f'a Madry-baseline workdir has no {stage!r} stage')
    stage = 'madry'
  elif stage == 'madry':
    raise ValueError(f'a {method!r} workdir has no Madry-baseline stage')
  elif stage == 'latest':
    stage = 'finetune' if has('finetune') else 'cotrain'
  if not has(stage):
    what, mode = {'cotrain': ('co-training', 'train'), 'finetune': ('fine-tuning', 'finetune'),
                  'madry': ('Madry-baseline', 'train')}[stage]
    raise FileNotFoundError(f'no {what} checkpoint in {checkpoint_dir(workdir, stage)}: run '
                            f'--mode={mode} first')
  return stage


@dataclasses.dataclass(frozen=True)
class Weights:
  """The networks of one stage of a workdir.

  Attributes:
    config: the config they were loaded with.
    stage: 'cotrain', 'finetune' or 'madry'.
    step: the checkpoint's step.
    generator: G's {'params', 'batch_stats'} (numpy arrays), or None (Madry baseline).
    discriminator: D's {'params', 'batch_stats'}.
  """
  config: ml_collections.ConfigDict
  stage: str
  step: int
  generator: Optional[Dict[str, Any]]
  discriminator: Dict[str, Any]


def _load_networks(directory: str, networks) -> Dict[str, Any]:
  """{'step', and per network its {'params', 'batch_stats'}} of the latest checkpoint."""
  checkpoint_manager = manager(directory)
  step = checkpoint_manager.latest_step()
  saved = checkpoint_manager.item_metadata(step).tree
  try:
    wanted = {'step': saved['step'], **{
        net: {'params': saved[net]['params'], 'batch_stats': saved[net]['batch_stats']}
        for net in networks}}
  except KeyError as e:
    raise ValueError(f'checkpoint {step} in {directory} has no {e}: not a checkpoint of this '
                     'project') from e
  abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), wanted)
  return _restore(checkpoint_manager, step, abstract, partial=True)


def load_weights(workdir: str, stage: str = 'latest', *,
                 config: Optional[ml_collections.ConfigDict] = None) -> Weights:
  """Loads the networks of a stage of a workdir (params and BatchNorm statistics only).

  Args:
    workdir: a workdir written by main.py.
    stage: 'latest', 'cotrain', 'finetune' or 'madry' (see `resolve_stage`).
    config: the config to load with (default: workdir/config.json); its `model` section must
      equal the saved one.

  Returns:
    Weights. D comes from the stage's checkpoint; G from the co-training checkpoint (for
    'finetune', of `finetune.init_workdir` or `workdir`), None for the Madry baseline.

  Raises:
    FileNotFoundError: no config.json or no checkpoint of that stage.
    ValueError: unknown stage, a config of another architecture, or a checkpoint without the
      networks.
  """
  saved = load_config(workdir)
  config = saved if config is None else config
  if model_section(saved) != model_section(config):
    raise ValueError(f'the config\'s model differs from the one saved in {workdir}/config.json '
                     '(a checkpoint of another architecture)')
  stage = resolve_stage(workdir, config.method, stage)
  if stage == 'cotrain':
    loaded = _load_networks(checkpoint_dir(workdir, stage), ('generator', 'discriminator'))
    generator = loaded['generator']
  else:
    loaded = _load_networks(checkpoint_dir(workdir, stage), ('discriminator',))
    generator = None
    if stage == 'finetune':
      cotrain_workdir = config.finetune.init_workdir or workdir
      resolve_stage(cotrain_workdir, config.method, 'cotrain')
      generator = _load_networks(checkpoint_dir(cotrain_workdir, 'cotrain'),
                                 ('generator',))['generator']
  return Weights(config=config, stage=stage, step=int(loaded['step']), generator=generator,
                 discriminator=loaded['discriminator'])
