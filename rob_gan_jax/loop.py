"""The one training loop of every stage: resume, step, log, periodic hooks, checkpoint.

A stage program (co-training, fine-tuning, the Madry baseline) supplies a fresh state, a jitted
`train_step(state, *batch) -> (state, metrics)`, a function giving the host batch of step s, and
its periodic hooks (test accuracy, sample grids, IS/FID). `run` restores the latest checkpoint of
the stage (so a killed run resumes where it stopped), replicates the state over the mesh, and for
each step: runs the step, and at the steps where it is time (CLU `periodic_actions`, every N steps
and always at the last step) writes the averaged metrics, runs the hooks and saves a checkpoint.
At each of those points it checks the metrics and every array of the state, and stops with an
error if one is NaN or inf, so a diverged state is never saved and the last good checkpoint is
never deleted by the retention of later ones. The step is never waited for except at those points.
"""

import dataclasses
from typing import Any, Callable, Dict, List, Optional, Sequence

from absl import logging
from clu import metric_writers
from clu import periodic_actions
import jax
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np
import orbax.checkpoint as ocp

from rob_gan_jax import checkpoints
from rob_gan_jax import parallel

LOOP_FIELDS = ('batch_size', 'log_every_steps', 'checkpoint_every_steps', 'max_to_keep')


@dataclasses.dataclass(frozen=True)
class Hook:
  """A periodic action of the loop.

  Attributes:
    name: shown in the progress report's timings.
    every_steps: run at every multiple of this step (and at the last step); None: only at the
      last step.
    fn: `fn(step, state, writer)`, with the replicated state after `step` updates.
  """
  name: str
  every_steps: Optional[int]
  fn: Callable[[int, Any, metric_writers.MetricWriter], None]


def check_loop_config(group, field: str) -> None:
  """Raises ValueError if a loop setting of a config group (`LOOP_FIELDS`) is < 1.

  Args:
    group: e.g. `config.train` or `config.finetune`.
    field: its name in the config, used in the message.
  """
  for name in LOOP_FIELDS:
    if group[name] < 1:
      raise ValueError(f'{field}.{name} must be >= 1, got {group[name]}')


def check_finite(step: int, manager: ocp.CheckpointManager, state,
                 metrics: Optional[Dict[str, float]] = None) -> None:
  """Raises FloatingPointError if a metric or an array of the state is NaN or inf.

  The state is checked itself, not only the logged losses: a compiled step can return finite
  losses from non-finite weights. The message names the last good checkpoint, which the
  non-finite state never replaces.
  """
  bad = {k: v for k, v in (metrics or {}).items() if not np.isfinite(v)}
  bad_arrays = checkpoints.non_finite_arrays(state)
  if bad or bad_arrays:
    what = [f'metrics {bad}'] if bad else []
    if bad_arrays:
      what.append(f'{len(bad_arrays)} of {len(jax.tree.leaves(state))} state arrays, e.g. '
                  f'{bad_arrays[:3]}')
    raise FloatingPointError(
        f'training diverged at step {step}: non-finite {" and ".join(what)}. '
        f'{checkpoints.last_good_checkpoint(manager)} Lower the learning rate or check the data '
        'before resuming.')


def run(*, state, train_step: Callable, host_batch: Callable[[int], Sequence[np.ndarray]],
        num_steps: int, settings, mesh: jax.sharding.Mesh, workdir: str, stage: str,
        hooks: Sequence[Hook] = ()):
  """Runs (or resumes) the training loop of a stage to `num_steps`.

  Args:
    state: the fresh state (`step` 0) of the stage; replaced by the latest checkpoint if any.
    train_step: jitted `train_step(state, *batch) -> (state, metrics)`; `batch` are the global
      arrays of the step, (k, settings.batch_size, ...), split over the mesh along their second
      axis (P(None, 'batch')).
    host_batch: `host_batch(s)` -> numpy arrays (k, b, ...) of the 0-based step s: this
      process's rows of them (`parallel.process_rows`, all of them in a single process).
    num_steps: the step to train to.
    settings: the stage's config group (`LOOP_FIELDS`).
    mesh: the devices.
    workdir: the run's workdir.
    stage: 'cotrain', 'finetune' or 'madry' (where checkpoints and summaries go).
    hooks: periodic actions, run in order after the metrics and before the checkpoint.

  Returns:
    The final state.

  Raises:
    ValueError: the latest checkpoint does not fit `state`, or is beyond `num_steps`.
    checkpoints.CorruptCheckpointError: checkpoints exist but none is intact.
    FloatingPointError: a non-finite metric or state array (the last good checkpoint is kept).
  """
  manager = checkpoints.manager(checkpoints.checkpoint_dir(workdir, stage), settings.max_to_keep)
  state = checkpoints.restore_latest(manager, parallel.replicate(state, mesh))
  initial_step = int(state.step)
  if initial_step > num_steps:
    raise ValueError(f'the {stage} checkpoint in {manager.directory} is at step {initial_step}, '
                     f'beyond the {num_steps} steps asked for: nothing to do. Ask for more steps '
                     'or use another --workdir.')
  writer = metric_writers.create_default_writer(checkpoints.summary_dir(workdir, stage),
                                                just_logging=jax.process_index() > 0)
  logging.info('%s on %d devices from step %d to %d.', stage, mesh.size, initial_step, num_steps)
  report_progress = periodic_actions.ReportProgress(num_train_steps=num_steps, writer=writer)
  batch_sharding = NamedSharding(mesh, P(None, parallel.AXIS))
  pending: List[Dict[str, jax.Array]] = []

  def write_metrics(step, t):
    del t
    summary = {k: float(v) for k, v in jax.tree.map(lambda *x: np.mean(x), *pending).items()}
    pending.clear()
    check_finite(step, manager, state, summary)  # Waits for the step to finish,
    writer.write_scalars(step, summary)
    report_progress(step)  # so steps/s counts computed steps, not dispatched ones.

  def run_hook(hook, step, t):
    del t
    with report_progress.timed(hook.name):
      hook.fn(step, state, writer)

  checkpoint_steps = range(settings.checkpoint_every_steps, num_steps + 1,
                           settings.checkpoint_every_steps)
  actions = [periodic_actions.PeriodicCallback(
      every_steps=settings.log_every_steps, on_steps=[*checkpoint_steps, num_steps],
      callback_fn=write_metrics)]
  actions += [periodic_actions.PeriodicCallback(
      every_steps=hook.every_steps, on_steps=[num_steps],
      callback_fn=lambda step, t, hook=hook: run_hook(hook, step, t)) for hook in hooks]
  actions.append(periodic_actions.PeriodicCallback(
      every_steps=settings.checkpoint_every_steps, on_steps=[num_steps],
      callback_fn=lambda step, t: checkpoints.save(manager, step, state)))
  for step in range(initial_step + 1, num_steps + 1):
    batch = parallel.global_batch(host_batch(step - 1), batch_sharding, 1, settings.batch_size)
    state, metrics = train_step(state, *batch)
    pending.append(metrics)
    for action in actions:
      action(step)
  manager.wait_until_finished()
  writer.flush()
  return state
