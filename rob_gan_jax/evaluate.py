"""`--mode=eval`: robustness of D, as in paper Table 1 and Figs. 1, 5 and 8, and G's samples.

For a class-conditional model the robustness is that of D's classifier; for an unconditional one
(AS-GAN, `model.num_classes=0`) that of its source head: the fraction of real images D still
calls real under PGD pushing them towards "fake" (`robustness.head_of`), with the same radii,
attack, restarts and keys (`result['head']` says which).

For the checkpoint chosen by `eval.stage` it measures, with PGD on the class cross-entropy
(`eval.attack.num_steps` steps of eps * step_size / epsilon of `eval.attack`, `eval.num_restarts`
restarts):
- accuracy at each radius of `eval.epsilons` on the test split (`eval.split`, at most
  `eval.num_examples` examples) and on a sample of the training split (`eval.train_num_examples`),
  which gives the train/test robustness gap. Each radius is attacked on its own, as in the
  official `acc_under_attack.py` (`test_accuracy`, `train_accuracy`); from the same attacks,
  `test_accuracy_cumulative` and `train_accuracy_cumulative` count an example at eps only if it
  survived every radius <= eps;
- the local Lipschitz value (mean ||d loss / d x||_2) on the same two samples;
- with `eval.attacks` naming strong attacks ('apgd-ce', 'apgd-t', 'square', or 'autoattack' for
  the three: AutoAttack's standard version without FAB-T, Croce & Hein, ICML 2020), the test
  accuracy under each at every radius (`eval.strong_attack`'s budgets) and under the worst case
  per example (robust only if it survives PGD and every strong attack). PGD alone can overstate
  robustness (gradient masking, a badly tuned step); these attacks are parameter-free, and Square
  uses no gradient. They run on the test split only;
- Inception Score and FID of G (`eval.inception_num_samples` samples) when
  `eval.inception_weights` names the converted FID Inception weights; G makes them with batch
  statistics, or its running ones with `eval.sample_with_running_stats`.

It checks first that `eval/` in the workdir can be written, then computes, logs a Markdown table
and (process 0 of a multi-process run) writes `eval/robustness.json`,
`eval/accuracy_vs_epsilon.png`, `eval/local_lipschitz.png` and, when the checkpoint has a G, the
fixed-noise sample grid `eval/samples.png`.
The official evaluation script attacks the CIFAR-10 training split; we report the test split as
the main figure and the training split beside it.
"""

import functools
import json
import os
from typing import Any, Dict

from absl import logging
import jax
import ml_collections
import numpy as np

from rob_gan_jax import attacks
from rob_gan_jax import checkpoints
from rob_gan_jax import input_pipeline
from rob_gan_jax import models
from rob_gan_jax import parallel
from rob_gan_jax import robustness
from rob_gan_jax import visualize
from rob_gan_jax.metrics import fid


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError for eval settings that cannot work (before any compute)."""
  input_pipeline.check_dataset_config(config.dataset)
  e = config.eval
  robustness.check_eval_args(epsilons=e.epsilons,
                             step_size_factor=robustness.step_size_factor(e.attack),
                             num_steps=e.attack.num_steps, num_restarts=e.num_restarts)
  for name in ('num_examples', 'train_num_examples'):
    if e[name] is not None and e[name] < 1:
      raise ValueError(f'eval.{name} must be >= 1 or None, got {e[name]}')
  attacks.check_strong_attack_config(e.strong_attack, 'eval.strong_attack')
  strong = robustness.eval_attacks(e.attacks)[1:]
  if strong:
    if not config.model.num_classes:
      raise ValueError(f'eval.attacks {strong} attack D\'s classifier; an unconditional model '
                       'has none (its source head is measured under PGD only)')
    if 'apgd-t' in strong:
      attacks.check_strong_attack_args(num_classes=config.model.num_classes,
                                       loss='dlr-targeted', prefix='eval.attacks apgd-t: ')


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
  """The accuracy-vs-epsilon table of `result` in Markdown: per radius and cumulative."""
  what = 'accuracy' if result['head'] == 'class' else 'source accuracy'
  lines = [f'| epsilon ([-1, 1] scale) | same in /255 of [0, 1] | test {what} | '
           f'test, cumulative | train {what} | train, cumulative |',
           '|---|---|---|---|---|---|']
  columns = ('test_accuracy', 'test_accuracy_cumulative', 'train_accuracy',
             'train_accuracy_cumulative')
  for i, eps in enumerate(result['epsilons']):
    cells = ' | '.join(f'{result[column][i]:.4f}' for column in columns)
    lines.append(f'| {eps:.3f} | {eps * 127.5:.1f} | {cells} |')
  lines.append('\nPer radius: each radius attacked on its own (official acc_under_attack.py); '
               'cumulative: robust at every radius <= epsilon.')
  if result['head'] == 'source':
    lines.append('Source accuracy: the fraction of real images D calls real, under PGD that '
                 'pushes them towards fake.')
  if 'test_accuracy_by_attack' in result:
    names = list(result['test_accuracy_by_attack'])
    lines += ['', '| epsilon ([-1, 1] scale) | same in /255 of [0, 1] | '
              + ' | '.join(f'test, {n}' for n in names) + ' | test, worst case |',
              '|---|---|' + '---|' * (len(names) + 1)]
    for i, eps in enumerate(result['epsilons']):
      cells = [result['test_accuracy_by_attack'][n][i] for n in names]
      cells.append(result['test_accuracy_worst_case'][i])
      lines.append(f'| {eps:.3f} | {eps * 127.5:.1f} | '
                   + ' | '.join(f'{c:.4f}' for c in cells) + ' |')
    lines.append('Worst case: an example counts only if it survives every attack at that radius.')
  lines.append(f'Local Lipschitz value: train {result["llv_train"]:.4f}, '
               f'test {result["llv_test"]:.4f}')
  if 'fid' in result:
    lines.append(f'Inception Score {result["inception_score"]:.3f} +- '
                 f'{result["inception_score_std"]:.3f}, FID {result["fid"]:.2f} '
                 f'({result["inception_num_samples"]} samples)')
  return '\n'.join(lines)


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> Dict[str, Any]:
  """Evaluates the checkpoint of `eval.stage` in `workdir` and writes the results there.

  Args:
    config: the full config; its `model` must equal the workdir's saved one.
    workdir: a workdir with a co-training, fine-tuning or Madry checkpoint.

  Returns:
    The dict written to eval/robustness.json: 'stage', 'step', 'head' ('class', or 'source' for
    an unconditional model), 'epsilons', 'test_accuracy' and
    'train_accuracy' (per radius), 'test_accuracy_cumulative' and 'train_accuracy_cumulative',
    'llv_train', 'llv_test', the attack settings and sample sizes, with strong attacks in
    `eval.attacks` 'attacks' (the names run), 'strong_attack' (their budgets),
    'test_accuracy_by_attack' ({name: per radius}, 'pgd' included) and
    'test_accuracy_worst_case' (per radius), and with Inception weights
    'inception_score', 'inception_score_std', 'fid', 'inception_num_samples'.

  Raises:
    ValueError: bad eval settings, unknown split, a checkpoint of another architecture.
    FileNotFoundError: no checkpoint of the requested stage.
    OSError: `workdir/eval` cannot be written (raised before any compute).
    checkpoints.WorkdirInUseError: another evaluation runs in the workdir.
  """
  validate_config(config)
  e = config.eval
  weights = checkpoints.load_weights(workdir, e.stage, config=config)
  directory = os.path.join(workdir, 'eval')
  check_writable(directory)
  with checkpoints.lock_workdir(workdir, 'eval'):
    return _evaluate(config, workdir, weights, directory)


def _evaluate(config, workdir: str, weights: checkpoints.Weights,
              directory: str) -> Dict[str, Any]:
  """`evaluate` once the weights are loaded and the workdir is held."""
  e = config.eval
  generator, discriminator = models.create_models(config.model)
  test_images, test_labels = input_pipeline.load_subset(config, e.split, e.num_examples)
  train_images, train_labels = input_pipeline.load_subset(config, e.train_split,
                                                          e.train_num_examples)
  mesh = parallel.make_mesh()
  logging.info('Evaluating stage %s (step %d) on %d test and %d train examples.', weights.stage,
               weights.step, len(test_labels), len(train_labels))
  head = robustness.head_of(config.model)
  common = dict(batch_size=e.batch_size, mesh=mesh, head=head)
  curve = lambda images, labels: robustness.accuracy_curve(
      discriminator, weights.discriminator, images, labels, epsilons=list(e.epsilons),
      step_size_factor=robustness.step_size_factor(e.attack), num_steps=e.attack.num_steps,
      num_restarts=e.num_restarts, random_start=e.attack.random_start,
      key=jax.random.PRNGKey(config.seed), unroll=config.unroll, **common)
  llv = lambda images, labels: robustness.local_lipschitz_value(
      discriminator, weights.discriminator, images, labels, **common)
  test_curve, train_curve = curve(test_images, test_labels), curve(train_images, train_labels)
  names = robustness.eval_attacks(e.attacks)
  result = {
      'stage': weights.stage,
      'step': weights.step,
      'head': head,
      'split': e.split,
      'epsilons': [float(eps) for eps in e.epsilons],
      'test_accuracy': test_curve.per_radius,
      'test_accuracy_cumulative': test_curve.cumulative,
      'train_accuracy': train_curve.per_radius,
      'train_accuracy_cumulative': train_curve.cumulative,
      'llv_test': llv(test_images, test_labels),
      'llv_train': llv(train_images, train_labels),
      'num_test_examples': len(test_labels),
      'num_train_examples': len(train_labels),
      'attack': {'num_steps': e.attack.num_steps,
                 'step_size_factor': robustness.step_size_factor(e.attack),
                 'random_start': e.attack.random_start, 'num_restarts': e.num_restarts},
  }
  if len(names) > 1:
    curves = {'pgd': test_curve}
    for name in names[1:]:
      logging.info('Test accuracy under %s at %s.', name, list(e.epsilons))
      curves[name] = robustness.strong_accuracy_curve(
          discriminator, weights.discriminator, test_images, test_labels, attack=name,
          epsilons=list(e.epsilons), settings=e.strong_attack, key=jax.random.PRNGKey(config.seed),
          batch_size=e.batch_size, mesh=mesh)
    worst = robustness.AccuracyCurve.from_correct(
        np.logical_and.reduce([c.correct for c in curves.values()]), e.epsilons)
    result.update(attacks=list(names), strong_attack=e.strong_attack.to_dict(),
                  test_accuracy_by_attack={n: c.per_radius for n, c in curves.items()},
                  test_accuracy_worst_case=worst.per_radius)
  if weights.generator is not None:
    images, rows = visualize.sample_grid_images(generator, weights.generator, config)
    if parallel.is_main_process():
      visualize.save_png(visualize.image_grid(images, rows=rows),
                         os.path.join(directory, 'samples.png'), scale=2)
  if not e.inception_weights:
    logging.warning(fid.SKIPPED)
  elif weights.generator is None:
    logging.warning('Inception Score and FID are skipped: a %s checkpoint has no generator.',
                    weights.stage)
  else:
    sample_fn = functools.partial(models.sample, generator, weights.generator,
                                  running_stats=e.sample_with_running_stats)
    result.update(fid.generator_metrics(sample_fn, config, workdir,
                                        num_samples=e.inception_num_samples, mesh=mesh))
    result['inception_num_samples'] = e.inception_num_samples
  logging.info('Robustness of %s, stage %s:\n%s', workdir, weights.stage,
               markdown_table(result))
  if not parallel.is_main_process():
    return result
  path = os.path.join(directory, 'robustness.json')
  with open(path + '.tmp', 'w') as f:
    json.dump(result, f, indent=2)
  os.replace(path + '.tmp', path)
  visualize.plot_robustness(result, directory)
  return result
