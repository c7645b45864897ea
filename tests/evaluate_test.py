"""Tests of rob_gan_jax.evaluate, the --mode=eval driver."""

import json
import logging
import os
import re
import shutil

import pytest

from configs import tiny
from rob_gan_jax import evaluate
from rob_gan_jax import evaluators
from rob_gan_jax import task as task_lib
from rob_gan_jax import workdir as workdir_lib
from rob_gan_jax.evaluators import accuracy_curve


def eval_config(workdir):
  config = workdir_lib.load_config(workdir)
  config.eval.epsilons = [0.0, 0.05]
  config.eval.num_examples = None
  config.eval.train_num_examples = 8
  return config


def test_eval_mode_writes_results_table_and_plots(trained_workdir):
  config = eval_config(trained_workdir)
  result = evaluate.evaluate(config, task_lib.Task.from_config(config), trained_workdir)
  with open(os.path.join(trained_workdir, 'eval', 'robustness.json')) as f:
    saved = json.load(f)
  assert saved == result
  assert saved['stage'] == 'finetune' and saved['epsilons'] == [0.0, 0.05]
  for name in ('test_accuracy', 'test_accuracy_cumulative', 'train_accuracy',
               'train_accuracy_cumulative'):
    assert len(saved[name]) == 2
  for split in ('test', 'train'):  # Radius 0 comes first: clean accuracy both ways.
    assert saved[f'{split}_accuracy'][0] == saved[f'{split}_accuracy_cumulative'][0]
    assert saved[f'{split}_accuracy_cumulative'][1] <= min(saved[f'{split}_accuracy'])
  assert saved['num_test_examples'] == 20 and saved['num_train_examples'] == 8
  assert saved['llv_train'] > 0 and saved['llv_test'] > 0
  for name in ('accuracy_vs_epsilon.png', 'local_lipschitz.png'):
    assert os.path.getsize(os.path.join(trained_workdir, 'eval', name)) > 1000
  config.eval.stage = 'cotrain'
  assert evaluate.evaluate(config, task_lib.Task.from_config(config), trained_workdir)['stage'] == 'cotrain'


@pytest.mark.parametrize('field, value, error, match', [
    ('epsilons', [0.0, -0.01], ValueError, 'epsilon'),
    ('attack.step_size', 0.0, ValueError, 'step_size'),
    ('num_restarts', 0, ValueError, 'num_restarts'),
    ('split', 'validation', ValueError, 'validation'),
    ('stage', 'best', ValueError, 'stage'),
    ('attacks', ('pgd', 'fab'), ValueError, 'unknown attacks'),
    ('attack_budgets.square.num_queries', 0, ValueError, 'num_queries'),
])
def test_bad_eval_input_raises(trained_workdir, field, value, error, match):
  config = eval_config(trained_workdir)
  group, *path = ['eval', *field.split('.')]
  group = config[group]
  for part in path[:-1]:
    group = group[part]
  group[path[-1]] = value
  with pytest.raises(error, match=match):
    evaluate.evaluate(config, task_lib.Task.from_config(config), trained_workdir)


@pytest.mark.slow  # Each attack has its own fast test (attacks_*_test.py, api_test.py).
def test_strong_attacks_are_reported_per_radius_with_the_worst_case(trained_workdir, tmp_path,
                                                                    caplog):
  workdir = str(tmp_path / 'run')
  shutil.copytree(trained_workdir, workdir)
  config = eval_config(workdir)
  config.eval.attacks = ('autoattack',)
  budgets = config.eval.attack_budgets
  budgets.apgd_ce.num_steps = 5
  budgets.apgd_t.update(num_steps=5, num_target_classes=3)
  budgets.fab_t.update(num_steps=5, num_target_classes=3)
  budgets.square.num_queries = 20
  with caplog.at_level(logging.INFO):
    result = evaluate.evaluate(config, task_lib.Task.from_config(config), workdir)
  assert result['attacks'] == ['pgd', 'apgd-ce', 'apgd-t', 'fab-t', 'square']  # AutoAttack.
  by_attack, worst = result['test_accuracy_by_attack'], result['test_accuracy_worst_case']
  assert by_attack['pgd'] == result['test_accuracy']
  for accuracies in by_attack.values():
    assert accuracies[0] == result['test_accuracy'][0]  # Radius 0: clean accuracy.
    assert all(w <= a for w, a in zip(worst, accuracies))  # Never above any single attack.
  table = next(r.getMessage() for r in caplog.records if r.getMessage().startswith('Robustness'))
  assert 'test, fab-t' in table and 'test, worst case' in table and 'test accuracy' in table
  assert os.path.getsize(os.path.join(workdir, 'eval', 'accuracy_vs_epsilon.png')) > 1000
  # The strong attacks need D's classifier.
  config.eval.attacks = ('square',)
  config.model.num_classes = 0
  with pytest.raises(ValueError, match='unconditional'):
    evaluate.validate_config(config, task_lib.Task.from_config(config))
  config.model.num_classes = 3
  config.eval.attacks = ('apgd-t',)
  with pytest.raises(ValueError, match='at least 4 classes'):
    evaluate.validate_config(config, task_lib.Task.from_config(config))


def test_eval_without_checkpoint_or_with_other_architecture_raises(trained_workdir, tmp_path):
  config = eval_config(trained_workdir)
  with pytest.raises(FileNotFoundError, match='config.json'):
    evaluate.evaluate(config, task_lib.Task.from_config(config), str(tmp_path))
  config.model.discriminator_width = 8
  with pytest.raises(ValueError, match='another architecture'):
    evaluate.evaluate(config, task_lib.Task.from_config(config), trained_workdir)
  empty = tiny.get_config()
  workdir_lib.check_and_write_config(empty, str(tmp_path / 'empty'))
  with pytest.raises(FileNotFoundError, match='no co-training checkpoint'):
    evaluate.evaluate(empty, task_lib.Task.from_config(empty), str(tmp_path / 'empty'))


def test_markdown_table_shows_each_evaluators_lines_per_radius_in_both_scales():
  table = accuracy_curve.radius_table([0.0, 0.04], [('test accuracy', [0.8, 0.5]),
                                                    ('test, cumulative', [0.8, 0.375])])
  assert 'test accuracy | test, cumulative' in table[0]
  assert table[2:] == ['| 0.000 | 0.0 | 0.8000 | 0.8000 |', '| 0.040 | 5.1 | 0.5000 | 0.3750 |']
  outputs = [evaluators.Output(table=table), evaluators.Output(),
             evaluators.Output(table=['Local Lipschitz value: train 0.2500, test 0.5000'])]
  assert evaluate.markdown_table(outputs) == '\n'.join(table) + (
      '\n\nLocal Lipschitz value: train 0.2500, test 0.5000')


@pytest.mark.parametrize('blocker', ['file', 'read-only'])
def test_unwritable_eval_directory_raises_before_any_compute(trained_workdir, tmp_path,
                                                             monkeypatch, blocker):
  workdir = str(tmp_path / 'workdir')
  shutil.copytree(trained_workdir, workdir, ignore=shutil.ignore_patterns('eval'))
  if blocker == 'file':
    open(os.path.join(workdir, 'eval'), 'w').close()  # eval/ cannot be created.
  else:
    if os.geteuid() == 0:
      pytest.skip('root ignores directory permissions; the "file" case covers the check')
    os.chmod(workdir, 0o555)

  def no_compute(*args, **kwargs):
    raise AssertionError('an attack ran before the output directory was checked')
  monkeypatch.setattr(evaluate.robustness, 'accuracy_curve', no_compute)
  try:
    with pytest.raises(OSError, match=re.escape(os.path.join(workdir, 'eval'))):
      evaluate.evaluate(eval_config(workdir), task_lib.Task.from_config(eval_config(workdir)), workdir)
  finally:
    os.chmod(workdir, 0o755)
