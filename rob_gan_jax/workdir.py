"""A run's workdir: its layout, its lock and the policy of its config.json.

One method per workdir (`config.method` 'robgan', 'madry' or 'asgan'):
  workdir_version.json         the layout version (`FORMAT_VERSION`) of the package that wrote it
  config.json                  the config of the run (`check_and_write_config`)
  config_history.json          settings changed on resume, with the steps they changed at
  data_identity.json           what the data is, wherever it lies (a moved data set resumes)
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
from typing import Any, Dict, Iterator, Optional, Tuple

from absl import logging
import jax
import ml_collections

from rob_gan_jax import checkpoints
from rob_gan_jax import parallel
from rob_gan_jax import task as task_lib
from rob_gan_jax.input_pipeline import splits
from rob_gan_jax.input_pipeline import tfds_data

STAGES = task_lib.STAGES
_STAGE_DIRS = {'cotrain': '', 'finetune': 'finetune', 'madry': 'madry'}


def summary_dir(workdir: str, stage: str) -> str:
  return os.path.join(workdir, _STAGE_DIRS[stage])


def checkpoint_dir(workdir: str, stage: str) -> str:
  return os.path.join(summary_dir(workdir, stage), 'checkpoints')


def _trained_stages(workdir: str) -> Dict[str, int]:
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
# frequency, everything of --mode=eval and of G's reference metrics, and how the same computation is compiled (activation
# dtype, loop unrolling). Any other setting of a stage with checkpoints is fixed, unless named in
# `config.allow_changes`.
RESUMABLE_CHANGES = (
    'allow_changes', 'cpu_eigen_convolutions', 'eval', 'evals', 'model.dtype', 'reference',
    'unroll',
    *(f'{group}.{k}' for group in ('train', 'finetune')
      for k in ('num_steps', 'log_every_steps', 'checkpoint_every_steps', 'max_to_keep',
                'collapse_guard')))
# The config sections a stage's checkpoints depend on, besides those of every stage (seed,
# method, model, dataset).
_STAGE_SECTIONS = {'cotrain': ('attack', 'optim', 'train'), 'finetune': ('finetune',),
                   'madry': ('finetune',)}
_MISSING = '<missing>'
# The layout of a workdir and its config.json that this package writes and reads; a workdir of
# another is refused (`check_version`) rather than read with guesses for what it lacks.
FORMAT_VERSION = 1
_VERSION_FILE = 'workdir_version.json'
# Where the data lies, not what it is: on resume these may change to a location holding the same
# data (`_check_same_data`), as when a run moves to another machine or mount point.
DATA_LOCATION_FIELDS = ('dataset.image_folder', 'dataset.data_dir')
_DATA_IDENTITY_FILE = 'data_identity.json'


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
    check_version(workdir)
    old = _flatten(read_json(path))
    trained = _trained_stages(workdir)
    changes = {k: (old.get(k, _MISSING), new.get(k, _MISSING))
               for k in sorted(old.keys() | new.keys())
               if old.get(k, _MISSING) != new.get(k, _MISSING)}
    refused = {k: v for k, v in changes.items()
               if _is_fixed(k, trained) and not _covers(config.allow_changes, k)}
    moved = [k for k in refused if k in DATA_LOCATION_FIELDS]
    if moved:
      _check_same_data(config, workdir, {k: refused[k] for k in moved})
      refused = {k: v for k, v in refused.items() if k not in moved}
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
    identity_path = os.path.join(workdir, _DATA_IDENTITY_FILE)
    if not os.path.exists(identity_path) and _data_is_there(config.dataset):
      write_atomically(identity_path, json.dumps(
          splits.data_identity(config.dataset, config.model.num_classes), indent=1))
    write_atomically(os.path.join(workdir, _VERSION_FILE),
                     json.dumps({'format': FORMAT_VERSION}))
    write_atomically(path, _config_json(config))


def _data_is_there(dataset_config) -> bool:
  """Whether the data can be identified without downloading it."""
  if dataset_config.image_folder is not None:
    return os.path.isdir(dataset_config.image_folder)
  return tfds_data.is_prepared(dataset_config)


def _check_same_data(config, workdir: str, moved: Dict[str, Tuple[Any, Any]]) -> None:
  """Refuses unless the data at the new locations of `moved` ({field of
  `DATA_LOCATION_FIELDS`: (saved value, requested value)}) is the data the checkpoints were
  trained on: `splits.data_identity` against the one saved in the workdir at its first
  run, or, for a workdir without it, computed at the old location.

  Raises:
    ValueError: it is other data, or it cannot be told (the old location is gone and nothing
      was saved); the message says what differs and how to go on.
  """
  saved_path = os.path.join(workdir, _DATA_IDENTITY_FILE)
  was = ', '.join(f'{k}={v[0]!r}' for k, v in moved.items())
  now = ', '.join(f'{k}={v[1]!r}' for k, v in moved.items())
  if os.path.exists(saved_path):
    saved = read_json(saved_path)
  else:
    before = ml_collections.ConfigDict(config.dataset.to_dict())
    for key, (saved_value, _) in moved.items():
      setattr(before, key.split('.', 1)[1], saved_value)
    if not _data_is_there(before):
      raise ValueError(
          f'{workdir} was trained on the data at {was}, which is gone, and it has no '
          f'{_DATA_IDENTITY_FILE} (the data was not there when the run started), so whether '
          f'{now} holds the same data cannot be told. If it does, resume with '
          f'--config.allow_changes="{tuple(moved)!r}"')
    saved = splits.data_identity(before, config.model.num_classes)
  found = splits.data_identity(config.dataset, config.model.num_classes)
  if found != saved:
    differ = sorted(k for k in saved.keys() | found.keys() if saved.get(k) != found.get(k))
    raise ValueError(
        f'{workdir} was trained on the data at {was}; {now} holds other data (these differ: '
        f'{differ}; the identity saved at the first run is in {saved_path}). Resume on the same '
        'data, or use another --workdir.')
  logging.info('The data moved (%s, was %s) and is the same: resuming.', now, was)


def write_atomically(path: str, text: str) -> None:
  """Writes `text` to `path` whole: a reader (or a run killed mid-write) sees the old file or
  the new one, never part of one."""
  with open(path + '.tmp', 'w') as f:
    f.write(text)
  os.replace(path + '.tmp', path)


def read_json(path: str) -> Any:
  """The JSON value of a workdir file that runs write whole (`write_atomically`).

  Raises:
    ValueError: the file is not JSON (damaged, or edited by hand); the message names it and
      how to go on. Nothing is changed.
  """
  with open(path) as f:
    text = f.read()
  try:
    return json.loads(text)
  except json.JSONDecodeError as e:
    raise ValueError(
        f'{path} is damaged: it is not JSON ({e}). Runs write it whole (a temporary file, then a '
        'rename), so it was edited by hand or its disk failed. Restore it from a copy, or move '
        'it away and run again; the checkpoints are kept (a config.json is then written anew '
        'from the flags, and the settings the checkpoints were trained with can no longer be '
        'checked).') from None


def _append_history(workdir: str, entry: dict) -> None:
  path = os.path.join(workdir, 'config_history.json')
  history = read_json(path) if os.path.exists(path) else []
  write_atomically(path, json.dumps(history + [entry], indent=2))


class WorkdirVersionError(ValueError):
  """A workdir written by a version of this package with another layout."""


def check_version(workdir: str) -> None:
  """Raises WorkdirVersionError unless the workdir (which has a config.json) was written with
  this package's `FORMAT_VERSION`; the message names both."""
  path = os.path.join(workdir, _VERSION_FILE)
  found = read_json(path)['format'] if os.path.exists(path) else None
  if found != FORMAT_VERSION:
    written = (f'workdir format {found}' if found is not None else
               f'an earlier, unreleased layout (no {_VERSION_FILE})')
    raise WorkdirVersionError(
        f'{workdir} was written by rob_gan_jax with {written}; this version reads and resumes '
        f'workdir format {FORMAT_VERSION} only. Start a new --workdir, or use the version of '
        'rob_gan_jax that wrote it.')


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config saved in `workdir/config.json`.

  Raises:
    FileNotFoundError: the workdir has no config.json (no run was started there).
    WorkdirVersionError: it was written with another layout (`check_version`).
  """
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{workdir} has no config.json: no run was started there')
  check_version(workdir)
  return ml_collections.ConfigDict(read_json(path))


def load_weights(workdir: str, stage: str = 'latest', *,
                 config: Optional[ml_collections.ConfigDict] = None,
                 task: Optional[task_lib.Task] = None,
                 step: Optional[int] = None) -> checkpoints.Weights:
  """The networks of a stage (`resolve_stage`) at its newest intact checkpoint, or at
  `step`, without any optimizer state.

  `config` defaults to workdir/config.json, and its `model` must equal the saved one; `task` is
  the run's `task.Task`, built from that config when not given (opening a workdir). A fine-tuning
  checkpoint holds the co-trained G it was trained with.

  Raises:
    FileNotFoundError: no config.json or no checkpoint of that stage (or step).
    ValueError: unknown stage, a config of another architecture, or a checkpoint without the
      networks.
    CorruptCheckpointError: the checkpoint of `step` is damaged.
  """
  saved = load_config(workdir)
  config = saved if config is None else config
  if model_section(saved) != model_section(config):
    raise ValueError(f'the config\'s model differs from the one saved in {workdir}/config.json '
                     '(a checkpoint of another architecture)')
  task = task_lib.Task.from_config(config) if task is None else task
  stage = resolve_stage(workdir, task, stage)
  networks = ('generator',) * task.has_generator(stage) + ('discriminator',)
  loaded = checkpoints.load_networks(checkpoint_dir(workdir, stage), networks, step)
  generator = loaded.get('generator')
  return checkpoints.Weights(config=config, stage=stage, step=int(loaded['step']), generator=generator,
                 discriminator=loaded['discriminator'])
