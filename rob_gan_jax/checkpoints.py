"""Workdir layout, the run's config.json, the workdir lock, and checkpoints.

Layout of a workdir (one method per workdir: `config.method` 'robgan', 'madry' or 'asgan'):
  config.json                  the config of the run (see `check_and_write_config`)
  config_history.json          settings changed on resume, with the steps they changed at
  .train.lock, .eval.lock      held by the run using the workdir (`lock_workdir`)
  checkpoints/<step>/          stage 'cotrain' (Rob-GAN step 1, AS-GAN): the whole GANState
  finetune/checkpoints/<step>/ stage 'finetune' (Rob-GAN step 2): ClassifierState
  madry/checkpoints/<step>/    stage 'madry' (the Madry baseline): ClassifierState
  .../checkpoints/corrupt-<step>/  a damaged checkpoint, moved aside when a run resumed
Summaries go to the workdir (cotrain), `finetune/` or `madry/`.

Checkpoints are written atomically by Orbax (a temporary folder, then a rename), only from a
finite state, and with a CRC32 of every array in the step's metadata (`save`). There is one
restore path (`_restore`), which checks the structure against the config, the checksums and
finiteness: `restore_latest` reads a whole state to resume training and falls back to the
previous checkpoint if the newest is damaged; `load_weights` reads only the networks' params and
BatchNorm statistics (what sampling, classification, attacks and fine-tuning's start need),
without building any optimizer.
"""
import contextlib
import dataclasses
import fcntl
import json
import os
import socket
import time
from typing import Any, Dict, Iterator, List, Optional
import zlib

from absl import logging
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from rob_gan_jax import parallel

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
  """`config.model` as plain JSON values (tuples as lists), for comparing architectures.

  `dtype` is left out: it is how the model computes, not what it is (its parameters are float32
  either way).
  """
  model = json.loads(_config_json(config))['model']
  model.pop('dtype', None)
  return model


class WorkdirInUseError(RuntimeError):
  """Another run holds the workdir."""


@contextlib.contextmanager
def lock_workdir(workdir: str, purpose: str) -> Iterator[None]:
  """Holds the workdir for one run: a second run of the same `purpose` is refused.

  The lock is `flock` on `workdir/.<purpose>.lock`: the kernel releases it when the process
  ends, however it ends (kill -9 included), so a killed run never leaves it stuck. The file
  records who holds it. Training stages (co-training, fine-tuning, Madry) share the purpose
  'train', since they write the same config.json; `--mode=eval` uses 'eval'. In a multi-process
  run process p > 0 holds `.<purpose>.<p>.lock`, so every process of a second run is refused.

  Args:
    workdir: the run's workdir (created if missing).
    purpose: 'train' or 'eval'.

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
                             'max_to_keep', 'eval_every_steps', 'eval_num_examples',
                             'sample_every_steps', 'samples_per_class', 'inception_every_steps',
                             'inception_num_samples')),
    *(f'finetune.{k}' for k in ('num_steps', 'log_every_steps', 'checkpoint_every_steps',
                                'max_to_keep', 'eval_num_examples')))
# The config sections a stage's checkpoints depend on, besides those of every stage (seed,
# method, model, dataset).
_STAGE_SECTIONS = {'cotrain': ('attack', 'optim', 'train'), 'finetune': ('finetune',),
                   'madry': ('finetune',)}
_MISSING = '<missing>'


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
  """Whether a setting may not change, given the stages that have checkpoints."""
  if not trained_stages or _covers(RESUMABLE_CHANGES, key):
    return False
  owners = [s for s, sections in _STAGE_SECTIONS.items() if key.split('.')[0] in sections]
  return not owners or any(s in trained_stages for s in owners)


def check_and_write_config(config, workdir: str) -> None:
  """Writes the run's config to workdir/config.json; refuses changed settings on resume.

  Once a stage has checkpoints in the workdir, the settings those checkpoints depend on are
  fixed: seed, method, model and dataset for every stage, plus `attack`, `optim` and `train` for
  co-training and `finetune` for fine-tuning and the Madry baseline. The settings of
  `RESUMABLE_CHANGES` (run length, logging, evaluation) may change, and so may those named in
  `config.allow_changes` (fields or whole sections, e.g. ('optim.learning_rate',)). Every change
  that is made is appended to workdir/config_history.json (time, the checkpoints' steps, old and
  new values), so the settings of the steps already done are not lost. Every process checks;
  process 0 writes.

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
      old = _flatten(json.load(f))
    trained = {s: latest_step(checkpoint_dir(workdir, s)) for s in STAGES}
    trained = {s: step for s, step in trained.items() if step is not None}
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


def manager(directory: str, max_to_keep: int = 1) -> ocp.CheckpointManager:
  """Orbax manager of a stage's checkpoint folder.

  Save with `save` (atomic: written to a temporary folder, then renamed), which also stores a
  checksum of every array; read with `restore_latest` or `load_weights`, which verify them.
  """
  return ocp.CheckpointManager(
      os.path.abspath(directory), item_handlers=ocp.PyTreeCheckpointHandler(),
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))


def latest_step(directory: str) -> Optional[int]:
  """The latest checkpoint step in a stage's checkpoint folder, or None (also if missing)."""
  if not os.path.isdir(directory):
    return None
  return manager(directory).latest_step()


def _leaf_name(path) -> str:
  """'discriminator.opt_state.0.mu.block1.conv1.kernel': the name Orbax gives a leaf."""
  return '.'.join(str(getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k)))) for k in path)


def _named_leaves(tree) -> Dict[str, Any]:
  return {_leaf_name(p): x for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


@jax.jit
def _finite(tree):
  return jax.tree.map(lambda x: jnp.all(jnp.isfinite(x)), tree)


def non_finite_arrays(tree) -> List[str]:
  """Names of the arrays of `tree` (e.g. a training state) that hold a NaN or an inf."""
  flags = jax.device_get(_finite(tree))
  return [name for name, ok in _named_leaves(flags).items() if not ok]


def _checksums(tree) -> Dict[str, str]:
  """CRC32 (hex) of the bytes of every array of `tree`, by leaf name."""
  return {name: f'{zlib.crc32(np.ascontiguousarray(x)):08x}'
          for name, x in _named_leaves(jax.device_get(tree)).items()}


def last_good_checkpoint(checkpoint_manager: ocp.CheckpointManager) -> str:
  """'The last good checkpoint is step N in DIR.' (or that there is none), after pending saves."""
  checkpoint_manager.wait_until_finished()
  step = checkpoint_manager.latest_step()
  if step is None:
    return f'There is no checkpoint in {checkpoint_manager.directory} yet.'
  return f'The last good checkpoint is step {step} in {checkpoint_manager.directory}.'


def save(checkpoint_manager: ocp.CheckpointManager, step: int, state) -> None:
  """Saves `state` as checkpoint `step`, with a CRC32 of every array in the step's metadata.

  Raises:
    FloatingPointError: an array of `state` is not finite (nothing is saved; the message names
      the last good checkpoint).
  """
  bad = non_finite_arrays(state)
  if bad:
    raise FloatingPointError(f'the state at step {step} has non-finite arrays {bad[:3]}; it is '
                             f'not saved. {last_good_checkpoint(checkpoint_manager)}')
  checkpoint_manager.save(step, args=ocp.args.PyTreeSave(state),
                          custom_metadata={'crc32': _checksums(state)})


class CorruptCheckpointError(RuntimeError):
  """A checkpoint that cannot be read or whose data do not match their checksums."""


def _restore(checkpoint_manager: ocp.CheckpointManager, step: int, abstract_fn, *,
             partial: bool):
  """Restores and verifies checkpoint `step`.

  Args:
    checkpoint_manager: the manager of the checkpoint folder.
    step: the checkpoint.
    abstract_fn: `abstract_fn(saved)` -> the structure to restore into (jax.ShapeDtypeStruct
      leaves), given the checkpoint's metadata tree.
    partial: read only the leaves the structure names.

  Raises:
    ValueError: the checkpoint holds other arrays (another architecture or config).
    CorruptCheckpointError: its metadata or data cannot be read, an array does not match its
      checksum, or an array is not finite (a saved state never is).
  """
  where = f'checkpoint {step} ({os.path.join(checkpoint_manager.directory, str(step))})'
  try:
    saved_tree = checkpoint_manager.item_metadata(step).tree
    checksums = (checkpoint_manager.metadata(step).custom_metadata or {}).get('crc32')
  except Exception as e:  # pylint: disable=broad-except
    raise CorruptCheckpointError(f'{where}: unreadable metadata ({type(e).__name__}: {e})') from e
  abstract = abstract_fn(saved_tree)
  spec = lambda tree: {k: (tuple(a.shape), np.dtype(a.dtype))
                       for k, a in _named_leaves(tree).items()}
  saved, wanted = spec(saved_tree), spec(abstract)
  # Scalars may differ in dtype (a fresh TrainState's step is a Python int).
  fits = lambda k: k in saved and k in wanted and saved[k][0] == wanted[k][0] and (
      saved[k][1] == wanted[k][1] or saved[k][0] == ())
  mismatch = sorted(k for k in (wanted.keys() if partial else wanted.keys() | saved.keys())
                    if not fits(k))
  if mismatch:
    raise ValueError(f'{where} does not match this config (different architecture?): '
                     + '; '.join(f'{k} saved {saved.get(k)}, expected {wanted.get(k)}'
                                 for k in mismatch[:5]))
  try:
    restored = checkpoint_manager.restore(step, args=ocp.args.PyTreeRestore(
        item=abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
        partial_restore=partial))
  except Exception as e:  # pylint: disable=broad-except
    raise CorruptCheckpointError(f'{where}: unreadable data ({type(e).__name__}: '
                                 f'{str(e).splitlines()[0] if str(e) else ""})') from e
  if checksums is None:
    logging.warning('%s has no checksums (written by an older version): not verified', where)
  else:
    damaged = [k for k, v in _checksums(restored).items() if checksums.get(k) != v]
    if damaged:
      raise CorruptCheckpointError(f'{where}: {len(damaged)} arrays do not match their '
                                   f'checksums: {damaged[:5]}')
  bad = non_finite_arrays(restored)
  if bad:
    raise CorruptCheckpointError(f'{where}: non-finite arrays {bad[:5]}')
  return restored


def _restore_newest_intact(checkpoint_manager: ocp.CheckpointManager, abstract_fn, *,
                           partial: bool, move_corrupt: bool):
  """(step, restored) of the newest checkpoint that restores intact, or (None, None) if none.

  `abstract_fn` is as in `_restore`. A damaged checkpoint is logged as an
  error; with `move_corrupt` it is moved out of the way (by process 0, the others waiting for
  it), to `<folder>/corrupt-<step>`, so that the run that resumes from an earlier one can save
  that step again.

  Raises:
    ValueError: a checkpoint of another structure (not treated as damage).
    CorruptCheckpointError: checkpoints exist but none is intact.
  """
  damaged = []
  for step in sorted(checkpoint_manager.all_steps(), reverse=True):
    try:
      return step, _restore(checkpoint_manager, step, abstract_fn, partial=partial)
    except CorruptCheckpointError as e:
      if move_corrupt:
        target = os.path.join(checkpoint_manager.directory, f'corrupt-{step}')
        while os.path.exists(target):
          target += '+'
        if parallel.is_main_process():
          os.rename(os.path.join(checkpoint_manager.directory, str(step)), target)
        e = CorruptCheckpointError(f'{e}; moved to {target}')
      logging.error('%s. Falling back to the previous checkpoint.', e)
      damaged.append(str(e))
  if move_corrupt:
    multihost_utils.sync_global_devices('rob_gan_jax: corrupt checkpoints moved')
    checkpoint_manager.reload()
  if damaged:
    raise CorruptCheckpointError('no intact checkpoint in '
                                 f'{checkpoint_manager.directory}:\n' + '\n'.join(damaged))
  return None, None


def restore_latest(checkpoint_manager: ocp.CheckpointManager, target):
  """Restores the newest intact checkpoint into the structure of `target`, or returns `target`.

  A damaged checkpoint (unreadable, checksum mismatch, non-finite) is reported by step and path,
  moved to `<folder>/corrupt-<step>` and the previous one is tried.

  Args:
    checkpoint_manager: the manager of a checkpoint folder.
    target: the state pytree (arrays) to restore into; restored arrays get its shardings.

  Raises:
    ValueError: the checkpoint does not fit `target` (another architecture or config).
    CorruptCheckpointError: no checkpoint is intact (all were moved aside; a rerun starts from
      step 0).
  """
  def abstract(x):  # Arrays, or Python scalars (a fresh TrainState's step).
    x = jnp.asarray(x)
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)

  step, restored = _restore_newest_intact(
      checkpoint_manager, lambda saved: jax.tree.map(abstract, target), partial=False,
      move_corrupt=True)
  if step is None:
    return target
  logging.info('Restored checkpoint %d from %s', step, checkpoint_manager.directory)
  return restored


def resolve_stage(workdir: str, method: str, stage: str = 'latest') -> str:
  """Which checkpoint `stage` means in a workdir of `method`: 'cotrain', 'finetune' or 'madry'.

  'latest' is the fine-tuned D if step 2 has a checkpoint, else the co-trained one (an AS-GAN
  workdir has only that); a Madry workdir has the one stage 'madry'.

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
  """{'step', and per network its {'params', 'batch_stats'}} of the newest intact checkpoint."""
  def abstract(saved):
    try:
      wanted = {'step': saved['step'], **{
          net: {'params': saved[net]['params'], 'batch_stats': saved[net]['batch_stats']}
          for net in networks}}
    except KeyError as e:
      raise ValueError(f'a checkpoint in {directory} has no {e}: not a checkpoint of this '
                       'project') from e
    return jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), wanted)

  step, loaded = _restore_newest_intact(manager(directory), abstract, partial=True,
                                        move_corrupt=False)
  if step is None:
    raise FileNotFoundError(f'no checkpoint in {directory}')
  return loaded


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
  networks = ('discriminator',) if stage == 'madry' else ('generator', 'discriminator')
  loaded = _load_networks(checkpoint_dir(workdir, stage), networks)
  generator = loaded.get('generator')
  return Weights(config=config, stage=stage, step=int(loaded['step']), generator=generator,
                 discriminator=loaded['discriminator'])
