"""Tests of rob_gan_jax.evaluate, the --mode=eval driver."""

import json
import os

import pytest

from configs import tiny
from rob_gan_jax import checkpoints
from rob_gan_jax import evaluate


def eval_config(workdir):
  config = checkpoints.load_config(workdir)
  config.eval.epsilons = [0.0, 0.05]
  config.eval.num_examples = None
  config.eval.train_num_examples = 8
  return config


def test_eval_mode_writes_results_table_and_plots(trained_workdir):
  config = eval_config(trained_workdir)
  result = evaluate.evaluate(config, trained_workdir)
  with open(os.path.join(trained_workdir, 'eval', 'robustness.json')) as f:
    saved = json.load(f)
  assert saved == result
  assert saved['stage'] == 'finetune' and saved['epsilons'] == [0.0, 0.05]
  assert len(saved['test_accuracy']) == len(saved['train_accuracy']) == 2
  assert saved['num_test_examples'] == 20 and saved['num_train_examples'] == 8
  assert saved['llv_train'] > 0 and saved['llv_test'] > 0
  for name in ('accuracy_vs_epsilon.png', 'local_lipschitz.png'):
    assert os.path.getsize(os.path.join(trained_workdir, 'eval', name)) > 1000
  config.eval.stage = 'cotrain'
  assert evaluate.evaluate(config, trained_workdir)['stage'] == 'cotrain'


@pytest.mark.parametrize('field, value, error, match', [
    ('epsilons', [0.0, -0.01], ValueError, 'epsilon'),
    ('attack.step_size', 0.0, ValueError, 'step_size'),
    ('num_restarts', 0, ValueError, 'num_restarts'),
    ('split', 'validation', ValueError, 'validation'),
    ('stage', 'best', ValueError, 'stage'),
])
def test_bad_eval_input_raises(trained_workdir, field, value, error, match):
  config = eval_config(trained_workdir)
  group, *path = ['eval', *field.split('.')]
  group = config[group]
  for part in path[:-1]:
    group = group[part]
  group[path[-1]] = value
  with pytest.raises(error, match=match):
    evaluate.evaluate(config, trained_workdir)


def test_eval_without_checkpoint_or_with_other_architecture_raises(trained_workdir, tmp_path):
  config = eval_config(trained_workdir)
  with pytest.raises(FileNotFoundError, match='config.json'):
    evaluate.evaluate(config, str(tmp_path))
  config.model.discriminator_width = 8
  with pytest.raises(ValueError, match='another architecture'):
    evaluate.evaluate(config, trained_workdir)
  empty = tiny.get_config()
  checkpoints.check_and_write_config(empty, str(tmp_path / 'empty'))
  with pytest.raises(FileNotFoundError, match='no co-training checkpoint'):
    evaluate.evaluate(empty, str(tmp_path / 'empty'))
