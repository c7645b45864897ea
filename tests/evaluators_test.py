"""The evaluator interface: discovery by module name, training hooks, merged results."""

import os

import numpy as np
import pytest

from configs import tiny
from rob_gan_jax import checkpoints
from rob_gan_jax import evaluators
from rob_gan_jax import stage


def test_every_evaluator_module_is_available_and_unknown_names_are_refused():
  assert set(evaluators.available()) >= {'pgd_accuracy', 'accuracy_curve', 'strong_attacks',
                                         'local_lipschitz', 'sample_grid', 'inception'}
  config = tiny.get_config()
  assert set(config.evals) == set(evaluators.available())  # Each with its DEFAULTS.
  config.unlock()
  config.evals.fid50k = dict(every_steps=10, every_epochs=0)
  with pytest.raises(ValueError, match=r"evals: unknown evaluator\(s\) \['fid50k'\]"):
    stage.check_config(config, 'cotrain')
  config = tiny.get_config()
  config.evals.pgd_accuracy.every_epochs = -1
  with pytest.raises(ValueError, match='evals.pgd_accuracy.every_epochs must be >= 0'):
    stage.check_config(config, 'madry')


class Recorder:
  """A stand-in evaluator and metric writer."""

  def __init__(self):
    self.runs, self.scalars, self.images = [], {}, {}

  def run(self, networks):
    self.runs.append(networks.step)
    return evaluators.Output(metrics={'score': float(networks.step), 'table': [1, 2]},
                             images={'grid': np.full((4, 6, 3), networks.step, np.uint8)})

  def write_scalars(self, step, scalars):
    self.scalars[step] = scalars

  def write_images(self, step, images):
    self.images[step] = images


def test_hooks_run_each_evaluator_at_its_period_and_write_scalars_and_images(
    monkeypatch, tmp_path):
  recorder = Recorder()
  monkeypatch.setattr(evaluators, 'create', lambda name, context: recorder)
  networks = lambda step, state: checkpoints.Weights(
      config=None, stage='finetune', step=step, generator=None, discriminator={})
  hooks = stage.evaluator_hooks(None, {'score': 1.5, 'off': 0}, directory=str(tmp_path),
                                networks=networks, steps_per_unit=4)
  assert [(h.name, h.every_steps) for h in hooks] == [('score', 6)]  # 1.5 epochs of 4 steps.
  hooks[0].fn(6, None, recorder)
  assert recorder.scalars == {6: {'score': 6.0}}  # Only scalars go to TensorBoard.
  assert recorder.images[6]['grid'].shape == (1, 4, 6, 3)
  assert os.path.exists(tmp_path / 'grid' / 'step_0000006.png')


def test_run_all_merges_the_metrics_and_images_of_the_evaluators(monkeypatch):
  monkeypatch.setattr(evaluators, 'create', lambda name, context: Recorder())
  networks = checkpoints.Weights(config=None, stage='cotrain', step=3, generator=None,
                                 discriminator={})
  metrics, outputs = evaluators.run_all(None, ['a', 'b'], networks)
  assert metrics == {'stage': 'cotrain', 'step': 3, 'score': 3.0, 'table': [1, 2]}
  assert len(outputs) == 2 and list(outputs[0].images) == ['grid']
