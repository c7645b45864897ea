"""`--mode=eval`: the evaluators of `eval.evaluators` on one stage's networks (paper Table 1,
Figs. 1, 5 and 8, and G's samples and IS/FID), written to the workdir's `eval/`.

The default evaluators (`rob_gan_jax/evaluators/`): `accuracy_curve` (accuracy under PGD at each
radius of `eval.epsilons` on the test split and a training sample, per radius and cumulative),
`strong_attacks` (the strong attacks of `eval.attacks`, AutoAttack's set for 'autoattack', and
the worst case), `local_lipschitz`, `sample_grid` and `inception` (IS/FID with
`evals.inception.weights`). For an unconditional model (AS-GAN) the robustness is that of D's
source head (`task.Task.head`; `result['head']`).

It checks first that `eval/` can be written, then computes, logs the evaluators' Markdown table
lines and (process 0 of a multi-process run) writes `eval/robustness.json` (their metrics), their
image grids as `eval/<name>.png` (`samples.png`), their plots (`local_lipschitz.png`) and the
accuracy curves they give in `accuracy_vs_epsilon.png`. The official evaluation script attacks the CIFAR-10 training split; we
report the test split as the main figure and the training split beside it.
"""

import json
import os
from typing import Any, Dict

from absl import logging
import jax
import ml_collections

from rob_gan_jax import attacks
from rob_gan_jax import checkpoints
from rob_gan_jax import evaluators
from rob_gan_jax import models
from rob_gan_jax import parallel
from rob_gan_jax import robustness
from rob_gan_jax import task as task_lib
from rob_gan_jax import visualize
from rob_gan_jax import workdir as workdir_lib
from rob_gan_jax.input_pipeline import transforms


def validate_config(config: ml_collections.ConfigDict, task: task_lib.Task) -> None:
  """Raises ValueError for eval settings that cannot work (before any compute)."""
  transforms.check_dataset_config(config.dataset)
  e = config.eval
  evaluators.check_names(e.evaluators, 'eval.evaluators')
  evaluators.check_config(config.evals)
  robustness.check_eval_args(epsilons=e.epsilons,
                             step_size_factor=robustness.step_size_factor(e.attack),
                             num_steps=e.attack.num_steps, num_restarts=e.num_restarts)
  for name in ('num_examples', 'train_num_examples'):
    if e[name] is not None and e[name] < 1:
      raise ValueError(f'eval.{name} must be >= 1 or None, got {e[name]}')
  strong = robustness.eval_attacks(e.attacks, e.autoattack)[1:]
  if strong and not task.conditional:
    raise ValueError(f'eval.attacks {strong} attack D\'s classifier; an unconditional model '
                     'has none (its source head is measured under PGD only)')
  for name in attacks.available():  # Every budget of the config, used or not.
    attacks.budget_of(name, e.attack_budgets)
  for name in strong:
    attacks.check_classes(name, task.num_classes, 'eval.attacks')


def check_writable(directory: str) -> None:
  """Creates `directory` if needed and writes and removes a probe file in it.

  Every process checks (each with its own probe file), so that all stop if process 0, which
  writes the results, could not.

  Raises:
    OSError: the directory cannot be created or written (e.g. a read-only workdir, or a file of
      that name); the message names the directory.
  """
  probe = os.path.join(directory, f'.write_probe.{jax.process_index()}')
  try:
    os.makedirs(directory, exist_ok=True)
    with open(probe, 'w'):
      pass
    os.remove(probe)
  except OSError as e:
    raise OSError(f'cannot write the evaluation results to {directory}: {e}') from e


def markdown_table(outputs) -> str:
  """The table lines of the evaluators' `Output`s, a blank line between evaluators."""
  return '\n\n'.join('\n'.join(o.table) for o in outputs if o.table)


def evaluate(config: ml_collections.ConfigDict, task: task_lib.Task,
             workdir: str) -> Dict[str, Any]:
  """Evaluates the checkpoint of `eval.stage` in `workdir` and writes the results there.

  Args:
    config: the full config; its `model` must equal the workdir's saved one.
    workdir: a workdir with a co-training, fine-tuning or Madry checkpoint.

  Returns:
    The dict written to eval/robustness.json: 'stage', 'step' and the metrics of each
    evaluator (their module docstrings): 'head', 'split', 'epsilons', 'test_accuracy',
    'train_accuracy' (per radius), 'test_accuracy_cumulative', 'train_accuracy_cumulative',
    'num_test_examples', 'num_train_examples', 'attack'; 'llv_train', 'llv_test'; with strong
    attacks 'attacks', 'attack_budgets', 'test_accuracy_by_attack' ({name: per radius}, 'pgd'
    included), 'test_accuracy_worst_case'; with Inception weights 'inception_score',
    'inception_score_std', 'fid', 'inception_num_samples'; with G, `reference_metrics`'s
    'fd_ref', 'kid_ref', 'kid_ref_std', 'precision_ref', 'recall_ref', 'gan_test_accuracy',
    'gan_test_per_class', 'cas_accuracy', 'cas_real_accuracy', 'reference_test_accuracy',
    'reference_num_samples', 'reference_classifier'; with `recalibrated_accuracy`
    'recalibrated_test_accuracy' and the other keys of its module docstring.

  Raises:
    ValueError: bad eval settings, unknown split, a checkpoint of another architecture.
    FileNotFoundError: no checkpoint of the requested stage.
    OSError: `workdir/eval` cannot be written (raised before any compute).
    workdir_lib.WorkdirInUseError: another evaluation runs in the workdir.
  """
  validate_config(config, task)
  weights = workdir_lib.load_weights(workdir, config.eval.stage, config=config, task=task)
  directory = os.path.join(workdir, 'eval')
  check_writable(directory)
  with workdir_lib.lock(workdir, 'eval'):
    return _evaluate(config, task, workdir, weights, directory)


def _evaluate(config, task: task_lib.Task, workdir: str, weights: checkpoints.Weights,
              directory: str) -> Dict[str, Any]:
  """`evaluate` once the weights are loaded and the workdir is held."""
  generator, discriminator = models.create_models(config.model)
  context = evaluators.Context(
      config, task, workdir, stage=weights.stage, training=False,
      generator=generator, discriminator=discriminator, mesh=parallel.make_mesh())
  logging.info('Evaluating stage %s (step %d): %s.', weights.stage, weights.step,
               ', '.join(config.eval.evaluators))
  result, outputs = evaluators.run_all(context, config.eval.evaluators, weights)
  logging.info('Robustness of %s, stage %s:\n%s', workdir, weights.stage,
               markdown_table(outputs))
  if not parallel.is_main_process():
    return result
  path = os.path.join(directory, 'robustness.json')
  workdir_lib.write_atomically(path, json.dumps(result, indent=2))
  for output in outputs:
    for name, grid in output.images.items():
      visualize.save_png(grid, os.path.join(directory, f'{name}.png'), scale=2)
    for name, draw in output.plots.items():
      visualize.save_plot(draw, os.path.join(directory, f'{name}.png'))
  curves = [curve for output in outputs for curve in output.curves]
  if curves:
    visualize.plot_curves(
        curves, config.eval.epsilons, os.path.join(directory, 'accuracy_vs_epsilon.png'),
        title=f'D, stage {weights.stage}, step {weights.step}',
        ylabel=('accuracy under attack' if task.head == 'class'
                else 'source accuracy (real called real) under attack'))
  return result
