"""The Task: one place deciding conditional or not, the head, the stages and what each mode trains."""

import pytest

from configs import cifar10_madry
from configs import tiny
from rob_gan_jax import task as task_lib

Task = task_lib.Task


@pytest.mark.parametrize('config, conditional, head, objective, stages, trains', [
    (tiny.get_config(), True, 'class', 'real', ('cotrain', 'finetune'),
     {'train': 'cotrain', 'finetune': 'finetune'}),
    (tiny.get_config('asgan'), False, 'source', 'source', ('cotrain',),
     {'train': 'cotrain', 'finetune': 'unconditional GAN'}),
    (cifar10_madry.get_config(), True, 'class', 'real', ('madry',),
     {'train': 'madry', 'finetune': "method 'madry' trains"}),
], ids=['robgan', 'asgan', 'madry'])
def test_task_of_each_method(config, conditional, head, objective, stages, trains):
  task = Task.from_config(config)
  assert (task.conditional, task.head, task.stages) == (conditional, head, stages)
  assert task.cotrain_objective == objective
  assert task.label_range == (config.model.num_classes if conditional else 1)
  for mode, stage in trains.items():
    if stage in task_lib.STAGES:
      assert task.training_stage(mode) == stage
    else:
      with pytest.raises(ValueError, match=stage):
        task.training_stage(mode)
  with pytest.raises(ValueError, match='a training mode is train or finetune'):
    task.training_stage('eval')


@pytest.mark.parametrize('method, num_classes, match', [
    ('robgan', 0, 'needs model.num_classes >= 1'),
    ('madry', 0, 'needs model.num_classes >= 1'),
    ('asgan', 10, 'needs model.num_classes=0'),
    ('wgan', 10, 'method must be one of'),
])
def test_inconsistent_methods_are_refused(method, num_classes, match):
  config = tiny.get_config()
  config.method, config.model.num_classes = method, num_classes
  with pytest.raises(ValueError, match=match):
    Task.from_config(config)


def test_latest_stage_is_the_last_trained_stage_of_the_method():
  trained = {'cotrain'}
  where = lambda stage: f'/w/{stage}'
  robgan = Task('robgan', 10)
  assert robgan.resolve_stage('latest', trained.__contains__, where) == 'cotrain'
  trained.add('finetune')
  assert robgan.resolve_stage('latest', trained.__contains__, where) == 'finetune'
  with pytest.raises(FileNotFoundError, match='no Madry training checkpoint in /w/madry'):
    Task('madry', 10).resolve_stage('latest', trained.__contains__, where)
  assert not Task('madry', 10).has_generator('madry') and robgan.has_generator('finetune')
