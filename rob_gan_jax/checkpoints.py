"""Orbax checkpoints of a stage's folder (`workdir.checkpoint_dir`), verified both ways.

Written atomically by Orbax, only from a finite state, with a CRC32 of every array in the step's
metadata. Every restore (`restore_latest`, `load_weights`) checks the structure, the checksums
and finiteness. Arrays are named as Orbax names them ('discriminator.params.block1.conv1.kernel').
"""
import dataclasses
import errno
import glob
import os
import shutil
from typing import Any, Dict, List, Optional
import zlib

from absl import logging
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from rob_gan_jax import parallel


def manager(directory: str, max_to_keep: int = 1) -> ocp.CheckpointManager:
  """Orbax manager of a stage's checkpoint folder; save and restore through this module."""
  return ocp.CheckpointManager(
      os.path.abspath(directory), item_handlers=ocp.PyTreeCheckpointHandler(),
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))


def latest_step(directory: str) -> Optional[int]:
  """The latest checkpoint step in a stage's checkpoint folder, or None (also if missing)."""
  if not os.path.isdir(directory):
    return None
  return manager(directory).latest_step()


def _leaf_name(path) -> str:
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
  return {name: f'{zlib.crc32(np.ascontiguousarray(x)):08x}'
          for name, x in _named_leaves(jax.device_get(tree)).items()}


def last_good_checkpoint(checkpoint_manager: ocp.CheckpointManager) -> str:
  """'The last good checkpoint is step N in DIR.' (or that there is none), after pending saves."""
  checkpoint_manager.wait_until_finished()
  step = checkpoint_manager.latest_step()
  if step is None:
    return f'There is no checkpoint in {checkpoint_manager.directory} yet.'
  return f'The last good checkpoint is step {step} in {checkpoint_manager.directory}.'


def _is_disk_full(error: Optional[BaseException]) -> bool:
  """Whether `error`, or one it was raised from, says the disk is full (errno ENOSPC; TensorStore
  reports it as RESOURCE_EXHAUSTED)."""
  while error is not None:
    text = str(error)
    if (getattr(error, 'errno', None) == errno.ENOSPC or 'No space left' in text
        or 'RESOURCE_EXHAUSTED' in text):
      return True
    error = error.__cause__ or error.__context__
  return False


def _disk_full(checkpoint_manager: ocp.CheckpointManager, detail: str) -> OSError:
  """The error of a checkpoint that does not fit, after the pending save ends (whichever way: a
  process that exits during one prints Orbax's threads' tracebacks) and what Orbax left of a
  failed one is removed."""
  directory = checkpoint_manager.directory
  try:
    checkpoint_manager.wait_until_finished()
  except Exception:  # pylint: disable=broad-except
    pass  # The error being built says what happened; the leftovers go next.
  if parallel.is_main_process():
    for partial in glob.glob(os.path.join(directory, '*.orbax-checkpoint-tmp*')):
      shutil.rmtree(partial, ignore_errors=True)
  checkpoint_manager.reload()
  latest = checkpoint_manager.latest_step()
  kept = (f'the last complete checkpoint is step {latest}' if latest is not None
          else 'there is no complete checkpoint yet')
  return OSError(errno.ENOSPC, f'no space left on {directory} ({detail}); {kept}. Free space '
                 'there (or move the workdir) and run the same command to resume from it')


def save(checkpoint_manager: ocp.CheckpointManager, step: int, state) -> None:
  """Saves `state` as checkpoint `step` (asynchronously), with its checksums.

  Raises:
    FloatingPointError: a non-finite array (nothing is saved; the message names the last good
      checkpoint).
    OSError: (errno ENOSPC) the folder's file system has less free space than the state's size,
      or a save (this one or the previous, asynchronous one) filled it; the message names the
      folder and the last complete checkpoint. Later failures come from `wait_until_finished`.
  """
  bad = non_finite_arrays(state)
  if bad:
    raise FloatingPointError(f'the state at step {step} has non-finite arrays {bad[:3]}; it is '
                             f'not saved. {last_good_checkpoint(checkpoint_manager)}')
  arrays = sum(x.nbytes for x in jax.tree.leaves(state) if hasattr(x, 'nbytes'))
  needed = 1.1 * arrays + 2**20  # Metadata and checksums beside the arrays.
  free = shutil.disk_usage(checkpoint_manager.directory).free
  if free < needed:
    raise _disk_full(checkpoint_manager, f'checkpoint {step} needs about '
                     f'{needed / 2**20:.1f} MiB, {free / 2**20:.1f} MiB are free; nothing of it '
                     'was written')
  try:
    checkpoint_manager.save(step, args=ocp.args.PyTreeSave(state),
                            custom_metadata={'crc32': _checksums(state)})
    logging.info('Saving checkpoint %d in %s.', step, checkpoint_manager.directory)
  except Exception as e:  # pylint: disable=broad-except
    if _is_disk_full(e):
      raise _disk_full(checkpoint_manager, f'saving checkpoint {step}') from e
    raise


def wait_until_finished(checkpoint_manager: ocp.CheckpointManager) -> None:
  """Waits for the manager's pending save.

  Raises:
    OSError: (errno ENOSPC) the disk filled up during the save (its partial files are removed).
  """
  try:
    checkpoint_manager.wait_until_finished()
  except Exception as e:  # pylint: disable=broad-except
    if _is_disk_full(e):
      raise _disk_full(checkpoint_manager, 'finishing a checkpoint save') from e
    raise


class CorruptCheckpointError(RuntimeError):
  """A checkpoint that cannot be read or whose data do not match their checksums."""


def _restore(checkpoint_manager: ocp.CheckpointManager, step: int, abstract_fn, *,
             partial: bool):
  """Checkpoint `step`, read into `abstract_fn(its metadata tree)` (ShapeDtypeStruct leaves).

  Raises:
    ValueError: the checkpoint holds other arrays (another architecture or config).
    CorruptCheckpointError: unreadable metadata or data, a checksum mismatch, a non-finite array.
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
    raise CorruptCheckpointError(f'{where}: no checksums (not written by `checkpoints.save`)')
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
  """(step, restored) of the newest intact checkpoint, or (None, None) if there is none.

  With `move_corrupt`, a damaged checkpoint goes to `<folder>/corrupt-<step>`, so that a run
  resuming from an earlier one can save that step again.

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
  """The newest intact checkpoint, with the structure and shardings of `target`, else `target`.

  Damaged checkpoints are moved to `<folder>/corrupt-<step>`.

  Raises:
    ValueError: the checkpoint does not fit `target` (another architecture or config).
    CorruptCheckpointError: none is intact (all were moved aside; a rerun starts from step 0).
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


@dataclasses.dataclass(frozen=True)
class Weights:
  """A stage's networks, numpy {'params', 'batch_stats'}; G is None for the Madry baseline."""
  config: ml_collections.ConfigDict
  stage: str
  step: int
  generator: Optional[Dict[str, Any]]
  discriminator: Dict[str, Any]


def load_networks(directory: str, networks, step: Optional[int]) -> Dict[str, Any]:
  """{'step', and per name of `networks` ('generator', 'discriminator') its {'params',
  'batch_stats'}} of the checkpoint of `step` in a stage's checkpoint folder, or of its newest
  intact one (step None), without the optimizer states.

  Raises:
    FileNotFoundError: no checkpoint (of that step; the message lists the saved ones).
    ValueError: a checkpoint without those networks.
    CorruptCheckpointError: the checkpoint of `step` is damaged.
  """
  def abstract(saved):
    try:
      wanted = {'step': saved['step'], **{
          net: {'params': saved[net]['params'], 'batch_stats': saved[net]['batch_stats']}
          for net in networks}}
    except KeyError as e:
      raise ValueError(f'a checkpoint in {directory} has no {e}: not a checkpoint of this '
                       'project') from e
    return jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), wanted)

  checkpoint_manager = manager(directory)
  if step is not None:
    if step not in checkpoint_manager.all_steps():
      raise FileNotFoundError(f'no checkpoint of step {step} in {directory}; saved steps: '
                              f'{sorted(checkpoint_manager.all_steps())}')
    return _restore(checkpoint_manager, step, abstract, partial=True)
  step, loaded = _restore_newest_intact(checkpoint_manager, abstract, partial=True,
                                        move_corrupt=False)
  if step is None:
    raise FileNotFoundError(f'no checkpoint in {directory}')
  return loaded
