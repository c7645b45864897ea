"""The one training loop of every stage: resume, step, log, periodic hooks, checkpoint.

A training stage (`stage.train`: co-training, fine-tuning, the Madry baseline) gives `run` a fresh
state, a jitted train step, the host batch of each step and its hooks (its evaluators). `run`
resumes from the stage's latest checkpoint; at the steps where it is time (CLU `periodic_actions`:
every N steps and at the last) it writes the averaged metrics, runs the hooks and saves a
checkpoint. Only there does it wait for the step, and first stops with an error if a metric or
state array is NaN or inf, so a diverged state never replaces the last good checkpoint; likewise
`CollapseGuard` stops a stage whose classifier has come to predict one class. SIGTERM (or SIGINT)
stops it too, at a step every process agrees on, after a checkpoint of that step is saved
(`PreemptionNotice`, `Preempted`).
"""

import dataclasses
import os
import signal
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from absl import logging
import jax
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np
import orbax.checkpoint as ocp

from rob_gan_jax import checkpoints
from rob_gan_jax import console
from rob_gan_jax import parallel
from rob_gan_jax import task as task_lib
from rob_gan_jax import workdir as workdir_lib

@dataclasses.dataclass(frozen=True)
class Hook:
  """A periodic action `fn(step, state, writer)` (the replicated state after `step` updates), run
  at multiples of `every_steps` (None: none) and at the last step; `name` labels its timings.
  `fn` may return the scalars it wrote, for `CollapseGuard`."""
  name: str
  every_steps: Optional[int]
  fn: Callable[[int, Any, Any], Optional[Dict[str, float]]]  # The writer: a CLU MetricWriter.


# The exit status of a run stopped by `Preempted` (EX_TEMPFAIL: run the same command again).
PREEMPTED_EXIT_STATUS = 75


class Preempted(Exception):
  """The run was told to stop (SIGTERM or SIGINT) and stopped at a step boundary, after saving
  a checkpoint of that step (unless `CollapseGuard` held saves back).

  Attributes:
    step: the step it stopped at; the same in every process.
    saved: the latest checkpoint's step.
  """

  def __init__(self, stage: str, step: int, saved: Optional[int], directory: str,
               signal_name: str):
    kept = (f'saved step {step}' if saved == step
            else f'kept its latest checkpoint, step {saved}')
    super().__init__(f'{stage} was stopped by {signal_name} after step {step} and {kept} in '
                     f'{directory}; run the same command again to resume')
    self.step, self.saved = step, saved


class PreemptionNotice:
  """Whether the run has been told to stop, as a context around the steps.

  One process: SIGTERM and SIGINT are caught (the run ends at the next step boundary instead of
  at once; a second signal ends it at once). Several processes (`jax.distributed`): JAX's preemption service catches SIGTERM in
  every process and `multihost_utils.reached_preemption_sync_point` says True at the same step in
  all of them, the first step after the notice that every process can still reach; SIGINT is
  left as it is (it would stop one process only).
  """

  def __init__(self):
    self.received: Optional[str] = None
    self._previous = {}

  def __enter__(self):
    if jax.process_count() == 1:
      for number in (signal.SIGTERM, signal.SIGINT):
        self._previous[number] = signal.signal(number, self._handle)
    return self

  def __exit__(self, *exc_info):
    for number, handler in self._previous.items():
      signal.signal(number, handler)

  def _handle(self, number, frame):
    del frame
    if self.received:  # A second signal: stop at once, as without this handler.
      self.__exit__()
      os.kill(os.getpid(), number)
      return
    self.received = signal.Signals(number).name
    logging.warning('%s received: stopping after this step, once it is saved (send it again to '
                    'stop at once).', self.received)

  def reached(self, step: int) -> bool:
    """Whether to save `step` and stop; to be called at every step, in every process."""
    if multihost_utils.reached_preemption_sync_point(step):
      self.received = self.received or 'SIGTERM'
      return True
    return self.received is not None


class ClassifierCollapseError(RuntimeError):
  """D's classifier came to ignore its input (`CollapseGuard`)."""


# What to try when a stage's classifier collapses.
_COLLAPSE_ADVICE = {
    'cotrain': 'a lower optim.learning_rate, or more co-training before judging the classifier',
    'finetune': "finetune.recalibrate_batch_norm='clean', finetune.discriminator_train_mode=True "
                'or a lower finetune.learning_rate',
    'madry': 'a lower finetune.learning_rate',
}
# A classifier stage's start is called near-degenerate when it gave this share of the test
# images one class (or its predictions had less information than this many times the bound).
_DEGENERATE_START_SHARE = 0.5
_DEGENERATE_START_INFORMATION = 5
# The metrics (by name suffix) the guard watches: the `collapse_guard` field bounding each, and
# whether a collapsed classifier lies above (+1) or below (-1) it.
_WATCHED = {'max_class_share': ('max_class_share', +1),
            'prediction_information': ('min_information', -1)}


class CollapseGuard:
  """Stops a stage whose classifier has come to ignore its input: predicting one class for most
  inputs, or the same distribution for all. It watches the metrics of
  `robustness.prediction_statistics`, of the training batches (`max_class_share`,
  `prediction_information`) and of `pgd_accuracy` (`test_*`): a share above
  `settings.max_class_share` or an information below `settings.min_information`, at
  `settings.patience` consecutive observations of one metric or at the last step, raises, once
  that metric has been within its bound (a classifier that has not learned yet, e.g. a random D
  after a few updates of co-training, has not collapsed). A classifier stage (fine-tuning, the
  Madry baseline) that ends with its test images' metrics beyond a bound raises whatever they
  were before: its classifier is the stage's product. Such a classifier is not worth keeping, so
  while the latest observation of a metric is beyond its bound no checkpoint is saved
  (`collapsed`): the last one saved is a good one. `settings.patience` = 0 turns the guard off.

  `start` are the `test_*` metrics of the classifier the stage started from (fine-tuning's
  co-trained D), which the message quotes."""

  def __init__(self, settings, *, stage: str, num_steps: int, manager: ocp.CheckpointManager,
               start: Optional[Dict[str, float]] = None):
    self.settings, self.stage, self.num_steps, self.manager = settings, stage, num_steps, manager
    self.start = start or {}
    self.streaks: Dict[str, List[Tuple[int, float]]] = {}
    self.been_within_bounds = set()
    self.last_step = 0

  @property
  def collapsed(self) -> bool:
    """Whether the latest observation of a watched metric is beyond its bound, so the checkpoint
    waits. After the last step a training batch's metric is one batch's noise: only the test-set
    metrics keep the final checkpoint from being saved."""
    return any(streak for name, streak in self.streaks.items()
               if self.last_step != self.num_steps or self._final_test_metric(name, self.last_step))

  def _final_test_metric(self, name: str, step: int) -> bool:
    """A test-set metric at the last step: final, judged without patience. A training batch's
    metric there is one batch's noise."""
    return step == self.num_steps and name.startswith('test_')

  def observe(self, step: int, scalars: Optional[Dict[str, float]]) -> None:
    """Raises ClassifierCollapseError if the classifier has collapsed by step `step`."""
    self.last_step = step
    if not self.settings.patience:
      return
    for name, value in (scalars or {}).items():
      watched = [rule for suffix, rule in _WATCHED.items() if name.endswith(suffix)]
      if not watched:
        continue
      (field, sign), = watched
      bound = self.settings[field]
      streak = self.streaks.setdefault(name, [])
      if sign * (value - bound) <= 0:
        self.been_within_bounds.add(name)
        streak.clear()
        continue
      ends_collapsed = self.stage != 'cotrain' and self._final_test_metric(name, step)
      if name not in self.been_within_bounds and not ends_collapsed:
        continue
      streak.append((step, value))
      if len(streak) >= self.settings.patience or self._final_test_metric(name, step):
        values = ', '.join(f'{v:.3f} at step {t}' for t, v in streak)
        raise ClassifierCollapseError(
            f'{self.stage}: D\'s classifier collapsed: {name} was {values}, '
            f'{"above" if sign > 0 else "below"} collapse_guard.{field}={bound} '
            f'(robustness.prediction_statistics). {self._start_note()}'
            f'{checkpoints.last_good_checkpoint(self.manager)} It is kept: no checkpoint is '
            f'saved while the classifier looks collapsed. Try {_COLLAPSE_ADVICE[self.stage]}; '
            f'--config.{"train" if self.stage == "cotrain" else "finetune"}.collapse_guard.'
            'patience=0 turns this check off.')

  def _start_note(self) -> str:
    """What the classifier was when the stage started, if known."""
    share = self.start.get('test_max_class_share')
    information = self.start.get('test_prediction_information')
    if share is None or information is None:
      return ''
    note = (f'When {task_lib.STAGE_TITLES[self.stage]} started, its test_max_class_share was '
            f'{share:.3f} and its test_prediction_information {information:.3f}')
    if (share > _DEGENERATE_START_SHARE or
        information < _DEGENERATE_START_INFORMATION * self.settings.min_information):
      note += (': it was already near-degenerate, so co-train longer (a larger '
               'train.num_steps) before step 2, and lower finetune.learning_rate')
    return note + '. '


def check_finite(step: int, manager: ocp.CheckpointManager, state,
                 metrics: Optional[Dict[str, float]] = None) -> None:
  """Raises FloatingPointError, naming the last good checkpoint, if a metric or state array is
  NaN or inf (the state too: a compiled step can return finite losses from non-finite weights)."""
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
        hooks: Sequence[Hook] = (), start_metrics: Optional[Dict[str, float]] = None):
  """Runs (or resumes) `stage` ('cotrain', 'finetune', 'madry') to `num_steps`; returns the state.

  Args:
    state: the fresh (step 0) state; replaced by the latest checkpoint if any.
    train_step: jitted `train_step(state, *batch) -> (state, metrics)`; `batch` are global arrays
      (k, settings.batch_size, ...) split over the mesh along axis 1 (P(None, 'batch')).
    host_batch: `host_batch(s)` -> this process's rows (`parallel.process_rows`) of the numpy
      arrays (k, b, ...) of 0-based step s.
    settings: the stage's config group (`LOOP_FIELDS`, `collapse_guard`).
    hooks: run in order after the metrics and before the checkpoint.
    start_metrics: the `test_*` metrics of the classifier the stage starts from
      (`CollapseGuard`'s message quotes them).

  Raises:
    ValueError: the latest checkpoint does not fit `state`, or is beyond `num_steps`.
    checkpoints.CorruptCheckpointError: checkpoints exist but none is intact.
    FloatingPointError: see `check_finite`.
    ClassifierCollapseError: see `CollapseGuard`.
    Preempted: SIGTERM or SIGINT (`PreemptionNotice`); the step reached is saved first.
  """
  manager = checkpoints.manager(workdir_lib.checkpoint_dir(workdir, stage), settings.max_to_keep)
  state = checkpoints.restore_latest(manager, parallel.replicate(state, mesh))
  initial_step = int(state.step)
  if initial_step > num_steps:
    raise ValueError(f'the {stage} checkpoint in {manager.directory} is at step {initial_step}, '
                     f'beyond the {num_steps} steps asked for: nothing to do. Ask for more steps '
                     'or use another --workdir.')
  # CLU's writers import TensorFlow: imported here, so that the train steps of cotrain and
  # finetune import without it (benchmarks/accelerator_check.sh on an image without TF).
  from clu import metric_writers  # pylint: disable=g-import-not-at-top
  from clu import periodic_actions  # pylint: disable=g-import-not-at-top
  writer = metric_writers.create_default_writer(workdir_lib.summary_dir(workdir, stage),
                                                just_logging=jax.process_index() > 0)
  title = task_lib.STAGE_TITLES[stage]
  logging.info('%s on %d devices from step %d to %d.', title, mesh.size, initial_step, num_steps)
  # CLU's ReportProgress writes steps/s and uptime to the writer; `console.Progress` is the line.
  report_progress = periodic_actions.ReportProgress(num_train_steps=num_steps, writer=writer)
  progress = console.Progress(title, initial_step, num_steps)
  batch_sharding = NamedSharding(mesh, P(None, parallel.AXIS))
  guard = CollapseGuard(settings.collapse_guard, stage=stage, num_steps=num_steps, manager=manager,
                        start=start_metrics)
  pending: List[Dict[str, jax.Array]] = []

  def write_metrics(step, t):
    del t
    summary = {k: float(v) for k, v in jax.tree.map(lambda *x: np.mean(x), *pending).items()}
    pending.clear()
    check_finite(step, manager, state, summary)  # Waits for the step to finish,
    writer.write_scalars(step, summary)
    report_progress(step)  # so steps/s counts computed steps, not dispatched ones.
    logging.info('%s', progress.line(step, summary))
    guard.observe(step, summary)

  def run_hook(hook, step, t):
    del t
    with report_progress.timed(hook.name):
      guard.observe(step, hook.fn(step, state, writer))

  def save(step, t):
    del t
    if guard.collapsed:
      logging.warning('step %d: no checkpoint saved, the classifier looks collapsed (%s).',
                      step, {k: v[-1][1] for k, v in guard.streaks.items() if v})
    elif manager.latest_step() != step:
      checkpoints.save(manager, step, state)

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
      callback_fn=save))
  with PreemptionNotice() as notice:
    for step in range(initial_step + 1, num_steps + 1):
      batch = parallel.global_batch(host_batch(step - 1), batch_sharding, 1, settings.batch_size)
      state, metrics = train_step(state, *batch)
      pending.append(metrics)
      for action in actions:
        action(step)
      if notice.reached(step) and step < num_steps:
        if pending:
          write_metrics(step, None)  # Checks the state is finite first.
        save(step, None)
        checkpoints.wait_until_finished(manager)
        writer.flush()
        raise Preempted(stage, step, manager.latest_step(), manager.directory, notice.received)
  checkpoints.wait_until_finished(manager)
  writer.flush()
  return state
