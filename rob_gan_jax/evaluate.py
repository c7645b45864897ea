"""`--mode=eval`: the evaluators of `eval.evaluators` on one stage's networks (paper Table 1,
Figs. 1, 5 and 8, and G's samples and IS/FID), written to the workdir's `eval/`.

The default evaluators (`rob_gan_jax/evaluators/`): `accuracy_curve` (accuracy under PGD at each
radius of `eval.epsilons` on the test split and a training sample, per radius and cumulative),
`strong_attacks` (APGD-CE, APGD-T, Square of `eval.attacks` and the worst case), `local_lipschitz`,
`sample_grid` and `inception` (IS/FID with `eval.inception_weights`). For an unconditional model
(AS-GAN) the robustness is that of D's source head (`task.Task.head`; `result['head']`).

It checks first that `eval/` can be written, then computes, logs a Markdown table and (process 0
of a multi-process run) writes `eval/robustness.json` (the evaluators' metrics), the image grids
as `eval/<name>.png` (`samples.png`) and the plots `accuracy_vs_epsilon.png` and
`local_lipschitz.png`. The official evaluation script attacks the CIFAR-10 training split; we
report the test split as the main figure and the training split beside it.
"""

import json
import os
from typing import Any, Dict, List

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


def markdown_table(result: Dict[str, Any]) -> str:
  """The measurements of `result` in Markdown: accuracy per radius and cumulative, the strong
  attacks and the worst case, LLV and IS/FID, each section where its evaluator ran."""
  lines = []
  if 'test_accuracy' in result:
    what = 'accuracy' if result['head'] == 'class' else 'source accuracy'
    lines += _radius_table(result['epsilons'], [
        (f'test {what}', result['test_accuracy']),
        ('test, cumulative', result['test_accuracy_cumulative']),
        (f'train {what}', result['train_accuracy']),
        ('train, cumulative', result['train_accuracy_cumulative'])])
    lines.append('\nPer radius: each radius attacked on its own (official acc_under_attack.py); '
                 'cumulative: robust at every radius <= epsilon.')
    if result['head'] == 'source':
      lines.append('Source accuracy: the fraction of real images D calls real, under PGD that '
                   'pushes them towards fake.')
  if 'recalibrated_test_accuracy' in result:
    columns = [(f'test, BatchNorm recalibrated ({result["recalibrated_batch_norm"]})',
                result['recalibrated_test_accuracy']),
               ('recalibrated, cumulative', result['recalibrated_test_accuracy_cumulative'])]
    if 'test_accuracy' in result:
      columns.insert(0, ('test, as saved', result['test_accuracy']))
    lines += [''] + _radius_table(result['epsilons'], columns)
    lines.append(f'Recalibrated: D\'s BatchNorm statistics re-estimated on '
                 f'{result["recalibration_examples"]} training images.')
  if 'test_accuracy_by_attack' in result:
    by_attack = result['test_accuracy_by_attack']
    lines += [''] + _radius_table(result['epsilons'], [
        *((f'test, {name}', accuracy) for name, accuracy in by_attack.items()),
        ('test, worst case', result['test_accuracy_worst_case'])])
    lines.append('Worst case: an example counts only if it survives every attack at that radius.')
  if 'llv_train' in result:
    lines.append(f'Local Lipschitz value: train {result["llv_train"]:.4f}, '
                 f'test {result["llv_test"]:.4f}')
  if 'fid' in result:
    lines.append(f'Inception Score {result["inception_score"]:.3f} +- '
                 f'{result["inception_score_std"]:.3f}, FID {result["fid"]:.2f} '
                 f'({result["inception_num_samples"]} samples)')
  if 'fd_ref' in result:
    line = (f'In the reference classifier\'s features (clean test accuracy '
            f'{result["reference_test_accuracy"]:.4f}; not FID): fd_ref {result["fd_ref"]:.3f}, '
            f'KID {result["kid_ref"]:.4f} +- {result["kid_ref_std"]:.4f}, precision '
            f'{result["precision_ref"]:.3f}, recall {result["recall_ref"]:.3f}')
    if 'gan_test_accuracy' in result:
      line += f', GAN-test {result["gan_test_accuracy"]:.4f}'
    if 'cas_accuracy' in result:
      line += (f', CAS {result["cas_accuracy"]:.4f} (the same classifier on as many real '
               f'images: {result["cas_real_accuracy"]:.4f})')
    lines.append(f'{line} ({result["reference_num_samples"]} samples)')
  return '\n'.join(lines)


def _radius_table(epsilons, columns) -> List[str]:
  """Markdown rows of one row per radius (in both pixel scales) and the given (title, values)."""
  lines = ['| epsilon ([-1, 1] scale) | same in /255 of [0, 1] | '
           + ' | '.join(title for title, _ in columns) + ' |',
           '|---|---|' + '---|' * len(columns)]
  for i, eps in enumerate(epsilons):
    lines.append(f'| {eps:.3f} | {eps * 127.5:.1f} | '
                 + ' | '.join(f'{values[i]:.4f}' for _, values in columns) + ' |')
  return lines


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
  result, images = evaluators.run_all(context, config.eval.evaluators, weights)
  logging.info('Robustness of %s, stage %s:\n%s', workdir, weights.stage,
               markdown_table(result))
  if not parallel.is_main_process():
    return result
  path = os.path.join(directory, 'robustness.json')
  workdir_lib.write_atomically(path, json.dumps(result, indent=2))
  for name, grid in images.items():
    visualize.save_png(grid, os.path.join(directory, f'{name}.png'), scale=2)
  visualize.plot_robustness(result, directory)
  return result
