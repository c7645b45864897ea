"""What every training stage sets up around `loop.run`, written once: the models and the device
mesh, the workdir's lock and config check, the training data, the evaluators' hooks.

Co-training (`cotrain`) and classifier training (`finetune`: fine-tuning, the Madry baseline)
each give `train` a `plan`: from the training data and the evaluators' context, the fresh state,
the jitted step (`parallel.train_step`), the number of steps and what else the stage needs. A
stage's settings are the config group `train` (co-training) or `finetune` (the others); its
evaluators run at their `config.evals.<name>.every_steps` (co-training, G steps) or
`every_epochs` (the others).
"""

import dataclasses
import os
from typing import Any, Callable, Dict, List, Optional, Sequence

from absl import logging

from rob_gan_jax import checkpoints
from rob_gan_jax import evaluators
from rob_gan_jax import loop
from rob_gan_jax import models
from rob_gan_jax import parallel
from rob_gan_jax import task as task_lib
from rob_gan_jax import visualize
from rob_gan_jax import workdir as workdir_lib
from rob_gan_jax.input_pipeline import batches
from rob_gan_jax.input_pipeline import splits

LOOP_FIELDS = ('batch_size', 'log_every_steps', 'checkpoint_every_steps', 'max_to_keep')


def group_name(stage: str) -> str:
  """The config group of a stage's settings: 'train' (co-training) or 'finetune'."""
  return 'train' if stage == 'cotrain' else 'finetune'


def period_field(stage: str) -> str:
  """The field of `config.evals.<name>` that says how often the stage runs an evaluator."""
  return 'every_steps' if stage == 'cotrain' else 'every_epochs'


def check_config(config, stage: str) -> None:
  """Raises ValueError, naming the field, if a `LOOP_FIELDS` setting of the stage's group is < 1,
  its batch size does not divide by the device count, its `collapse_guard` has a bound outside
  [0, 1] or a negative patience, or `config.evals` is not as `evaluators.check_config` wants."""
  field = group_name(stage)
  group = config[field]
  for name in LOOP_FIELDS:
    if group[name] < 1:
      raise ValueError(f'{field}.{name} must be >= 1, got {group[name]}')
  parallel.check_batch_size(group.batch_size, parallel.make_mesh(), f'{field}.batch_size')
  guard = group.collapse_guard
  for name in ('max_class_share', 'min_information'):
    if not 0 <= guard[name] <= 1:
      raise ValueError(f'{field}.collapse_guard.{name} must be in [0, 1], got {guard[name]}')
  if guard.patience < 0:
    raise ValueError(f'{field}.collapse_guard.patience must be >= 0 (0 = off), got '
                     f'{guard.patience}')
  evaluators.check_config(config.evals)


@dataclasses.dataclass(frozen=True)
class Plan:
  """What a stage trains: `loop.run`'s state, step and length, how an evaluator sees the state
  (`networks(step, state)`), the unit of its evaluators' periods in steps (an epoch's, for
  `every_epochs`), more hooks, and the classifier's metrics at the start (`loop.CollapseGuard`)."""
  state: Any
  train_step: Callable
  num_steps: int
  networks: Callable[[int, Any], checkpoints.Weights]
  steps_per_unit: int = 1
  hooks: Sequence[loop.Hook] = ()
  start_metrics: Optional[Dict[str, float]] = None


def evaluator_hooks(context: evaluators.Context, periods, *, directory: str,
                    networks: Callable[[int, Any], checkpoints.Weights],
                    steps_per_unit: int = 1) -> List[loop.Hook]:
  """Hooks running the evaluators of `periods` ({name: every N units of `steps_per_unit` steps,
  0 = off}) on `networks(step, state)`: scalars to the writer and log, image grids to the writer
  and, x2 by process 0, to `directory/<image name>/step_<step>.png` (samples/step_0002500.png)."""
  hooks = []
  for name, every in periods.items():
    if not every:
      continue
    evaluator = evaluators.create(name, context)

    def run_evaluator(step, state, writer, name=name, evaluator=evaluator):
      output = evaluator.run(networks(step, state))
      scalars = {k: v for k, v in output.metrics.items() if isinstance(v, (int, float))}
      if scalars:
        writer.write_scalars(step, scalars)
        logging.info('step %d, %s: %s', step, name, {k: round(v, 4) for k, v in scalars.items()})
      if output.images and parallel.is_main_process():
        writer.write_images(step, {k: grid[None] for k, grid in output.images.items()})
        for image_name, grid in output.images.items():
          os.makedirs(os.path.join(directory, image_name), exist_ok=True)
          visualize.save_png(grid, os.path.join(directory, image_name, f'step_{step:07d}.png'),
                             scale=2)
      return scalars

    hooks.append(loop.Hook(name, max(1, int(round(every * steps_per_unit))), run_evaluator))
  return hooks


def train(config, task: task_lib.Task, workdir: str, *, stage: str, batches_per_step: int,
          plan: Callable[[batches.TrainingData, evaluators.Context], Plan]):
  """Runs (or resumes) `stage` in `workdir`: builds the models and the mesh, holds the workdir,
  writes (or checks) its config.json, reads the training data, and runs `loop.run` on what
  `plan(training data, context)` gives, with the evaluators whose period (`period_field`) is
  not 0.

  Returns:
    The final state.

  Raises:
    ValueError: settings that differ from those of the workdir's checkpoints (`workdir.check_and_write_config`), wrong image
      size or class count; as `plan` and `loop.run`.
    workdir.WorkdirInUseError: another training run holds the workdir.
    FileNotFoundError: the data set is missing.
  """
  field = group_name(stage)
  group = config[field]
  generator, discriminator = models.create_models(config.model, axis_name=parallel.AXIS)
  mesh = parallel.make_mesh()
  with workdir_lib.lock(workdir, 'train'):
    workdir_lib.check_and_write_config(config, workdir)
    data = splits.training_data(config, batch_size=group.batch_size,
                                        batches_per_step=batches_per_step,
                                        rows=parallel.process_rows(group.batch_size, mesh))
    logging.info('%s on %d training examples.', task_lib.STAGE_TITLES[stage], data.num_examples)
    context = evaluators.Context(config, task, workdir, stage=stage, training=True,
                                 generator=generator, discriminator=discriminator, mesh=mesh)
    p = plan(data, context)
    periods = {name: s[period_field(stage)] for name, s in config.evals.items()}
    hooks = evaluator_hooks(context, periods, steps_per_unit=p.steps_per_unit,
                            directory=workdir_lib.summary_dir(workdir, stage),
                            networks=p.networks)
    return loop.run(state=p.state, train_step=p.train_step, host_batch=data.host_batch,
                    num_steps=p.num_steps, settings=group, mesh=mesh, workdir=workdir,
                    stage=stage, hooks=[*hooks, *p.hooks], start_metrics=p.start_metrics)
