"""A run's workdir: its layout, its lock and the policy of its config.json.

One method per workdir (`config.method` 'robgan', 'madry' or 'asgan'):
  config.json                  the config of the run (`check_and_write_config`)
  config_history.json          settings changed on resume, with the steps they changed at
  .train.lock, .eval.lock      held by the run using the workdir (`lock`)
  checkpoints/<step>/          stage 'cotrain' (Rob-GAN step 1, AS-GAN): the whole GANState
  finetune/checkpoints/<step>/ stage 'finetune' (Rob-GAN step 2): ClassifierState
  madry/checkpoints/<step>/    stage 'madry' (the Madry baseline): ClassifierState
  .../checkpoints/corrupt-<step>/  a damaged checkpoint, moved aside when a run resumed
A stage's summaries go to the folder of its `checkpoints/`.
"""
import contextlib
import fcntl
import json
import os
import socket
import time
from typing import Any, Dict, Iterator

import jax
import ml_collections

from rob_gan_jax import input_pipeline
from rob_gan_jax import parallel
from rob_gan_jax import task as task_lib

STAGES = task_lib.STAGES
_STAGE_DIRS = {'cotrain': '', 'finetune': 'finetune', 'madry': 'madry'}


def summary_dir(workdir: str, stage: str) -> str:
  return os.path.join(workdir, _STAGE_DIRS[stage])


def checkpoint_dir(workdir: str, stage: str) -> str:
  return os.path.join(summary_dir(workdir, stage), 'checkpoints')


def _trained_stages(workdir: str) -> Dict[str, int]:
  # Imported here: checkpoints imports this module for the layout.
  from rob_gan_jax import checkpoints  # pylint: disable=g-import-not-at-top,cyclic-import
  steps = {s: checkpoints.latest_step(checkpoint_dir(workdir, s)) for s in STAGES}
  return {s: step for s, step in steps.items() if step is not None}


def resolve_stage(workdir: str, task: task_lib.Task, stage: str = 'latest') -> str:
  """The stage that `stage` ('latest' or one of STAGES) names in a workdir of `task`
  (`task.Task.resolve_stage`: 'latest' is the method's last stage with a checkpoint).

  Raises:
    ValueError: unknown stage, or a stage the method does not have.
    FileNotFoundError: the workdir has no checkpoint of that stage.
  """
  trained = _trained_stages(workdir)
  return task.resolve_stage(stage, lambda s: s in trained,
                            lambda s: checkpoint_dir(workdir, s))


class WorkdirInUseError(RuntimeError):
  """Another run holds the workdir."""


@contextlib.contextmanager
def lock(workdir: str, purpose: str) -> Iterator[None]:
  """Holds the workdir for one run of `purpose` ('train' for every training stage, or 'eval').

  `flock` on `.<purpose>.lock` (`.<purpose>.<p>.lock` in process p > 0), which the kernel releases
  however the process ends (kill -9 included); the file names the holder.

  Raises:
    NotADirectoryError: `workdir` exists and is not a directory.
    WorkdirInUseError: another run holds the lock; the message says which process.
  """
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise NotADirectoryError(f'--workdir {workdir!r} is a file, not a directory')
  os.makedirs(workdir, exist_ok=True)
  process = f'.{jax.process_index()}' if jax.process_index() else ''
  path = os.path.join(workdir, f'.{purpose}{process}.lock')
  with open(path, 'a+') as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      raise WorkdirInUseError(
          f'{workdir} is in use by another {purpose} run ({f.read().strip() or "unknown"}, lock '
          f'{path}); wait for it to end or use another --workdir') from None
    f.seek(0)
    f.truncate()
    f.write(f'pid {os.getpid()} on {socket.gethostname()} since '
            f'{time.strftime("%Y-%m-%d %H:%M:%S")}\n')
    f.flush()
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


# Settings that may change when a run is resumed: run length, logging, checkpoint and evaluation
# frequency, everything of --mode=eval, and how the same computation is compiled (activation
# dtype, loop unrolling). Any other setting of a stage with checkpoints is fixed, unless named in
# `config.allow_changes`.
RESUMABLE_CHANGES = (
    'allow_changes', 'cpu_eigen_convolutions', 'eval', 'model.dtype', 'unroll',
    *(f'train.{k}' for k in ('num_steps', 'log_every_steps', 'checkpoint_every_steps',
                             'max_to_keep', 'evaluators', 'eval_num_examples',
                             'samples_per_class', 'inception_num_samples',
                             # Fields of configs older than `train.evaluators`.
                             'eval_every_steps', 'sample_every_steps',
                             'inception_every_steps')),
    'train.collapse_guard',
    *(f'finetune.{k}' for k in ('num_steps', 'log_every_steps', 'checkpoint_every_steps',
                                'max_to_keep', 'evaluators', 'eval_num_examples',
                                'collapse_guard')))
# What a setting added since a config.json was written did then: its value there.
_VALUES_BEFORE_FIELD = {'finetune.recalibrate_batch_norm': 'none',
                        'finetune.recalibration_examples': 5_000}
# The config sections a stage's checkpoints depend on, besides those of every stage (seed,
# method, model, dataset).
_STAGE_SECTIONS = {'cotrain': ('attack', 'optim', 'train'), 'finetune': ('finetune',),
                   'madry': ('finetune',)}
_MISSING = '<missing>'
_EXAMPLE_ORDER_FILE = '.example_order'


def _config_json(config) -> str:
  return config.to_json_best_effort(indent=2, sort_keys=True)


def model_section(config) -> dict:
  """`config.model` as JSON values, without `dtype` (how it computes, not what it is)."""
  model = json.loads(_config_json(config))['model']
  model.pop('dtype', None)
  return model


def _flatten(tree: dict, prefix: str = '') -> Dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def _covers(patterns, key: str) -> bool:
  return any(key == p or key.startswith(p + '.') for p in patterns)


def _is_fixed(key: str, trained_stages) -> bool:
  if not trained_stages or _covers(RESUMABLE_CHANGES, key):
    return False
  owners = [s for s, sections in _STAGE_SECTIONS.items() if key.split('.')[0] in sections]
  return not owners or any(s in trained_stages for s in owners)


def check_and_write_config(config, workdir: str) -> None:
  """Writes config.json (process 0); refuses settings that changed under a stage's checkpoints.

  Those are fixed except `RESUMABLE_CHANGES` and `config.allow_changes` (fields or sections,
  e.g. ('optim.learning_rate',)). Changes made go to config_history.json with the steps.

  Raises:
    ValueError: a fixed setting differs from the saved config.json (the message lists every
      such field with its saved and requested value), or `allow_changes` names an unknown field.
  """
  path = os.path.join(workdir, 'config.json')
  new = _flatten(json.loads(_config_json(config)))
  unknown = [a for a in config.allow_changes if not any(_covers([a], k) for k in new)]
  if unknown:
    raise ValueError(f'allow_changes names fields that do not exist: {unknown}')
  if os.path.exists(path):
    with open(path) as f:
      old = {**_VALUES_BEFORE_FIELD, **_flatten(json.load(f))}
    trained = _trained_stages(workdir)
    _check_example_order(config, workdir, trained)
    changes = {k: (old.get(k, _MISSING), new.get(k, _MISSING))
               for k in sorted(old.keys() | new.keys())
               if old.get(k, _MISSING) != new.get(k, _MISSING)}
    refused = {k: v for k, v in changes.items()
               if _is_fixed(k, trained) and not _covers(config.allow_changes, k)}
    if refused:
      lines = '\n'.join(f'  {k}: saved {old_v!r}, requested {new_v!r}'
                         for k, (old_v, new_v) in refused.items())
      raise ValueError(
          f'{workdir} holds checkpoints ({", ".join(f"{s} step {n}" for s, n in trained.items())}) '
          f'trained with other settings; these differ from its config.json:\n{lines}\n'
          'Resume with the saved settings, use another --workdir, or, to change them knowingly, '
          f'--config.allow_changes="{tuple(refused)!r}"')
    if changes and trained and parallel.is_main_process():
      _append_history(workdir, {'time': time.strftime('%Y-%m-%d %H:%M:%S'), 'checkpoints': trained,
                                'changes': {k: list(v) for k, v in changes.items()}})
  if parallel.is_main_process():
    os.makedirs(workdir, exist_ok=True)
    _write_atomically(path, _config_json(config))
    _write_atomically(os.path.join(workdir, _EXAMPLE_ORDER_FILE),
                      str(input_pipeline.EXAMPLE_ORDER_VERSION))


def _check_example_order(config, workdir: str, trained) -> None:
  """Refuses to resume checkpoints whose batches came from another example order.

  Workdirs written before `input_pipeline.EXAMPLE_ORDER_VERSION` have no `.example_order` file;
  only the splits `input_pipeline.example_order_version` names changed order (not CIFAR-10).
  """
  if not trained or os.path.exists(os.path.join(workdir, _EXAMPLE_ORDER_FILE)):
    return
  if input_pipeline.example_order_version(config.dataset) != 1:
    raise ValueError(
        f'{workdir} holds checkpoints trained on the examples of {config.dataset.image_folder} '
        'in the order of an earlier version of this code, and this data set is now read in '
        'another order (class folders in the order of dataset.classes, then file names; see '
        'input_pipeline.EXAMPLE_ORDER_VERSION), so a resumed run would not continue the same '
        'batches. Start a new --workdir, or evaluate the checkpoints as they are.')


def _write_atomically(path: str, text: str) -> None:
  with open(path + '.tmp', 'w') as f:
    f.write(text)
  os.replace(path + '.tmp', path)


def _append_history(workdir: str, entry: dict) -> None:
  path = os.path.join(workdir, 'config_history.json')
  history = []
  if os.path.exists(path):
    with open(path) as f:
      history = json.load(f)
  _write_atomically(path, json.dumps(history + [entry], indent=2))


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
