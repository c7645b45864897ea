"""Tests of rob_gan_jax.checkpoints: config refusal, stage resolution, weights-only loading."""

import jax
import numpy as np
import pytest

from rob_gan_jax import checkpoints


def test_workdir_of_another_model_is_refused(tiny_config, tmp_path):
  checkpoints.check_and_write_config(tiny_config, str(tmp_path))
  tiny_config.model.discriminator_width = 8
  with pytest.raises(ValueError, match='discriminator_width'):
    checkpoints.check_and_write_config(tiny_config, str(tmp_path))


def fake_stage(workdir, stage, step):
  manager = checkpoints.manager(checkpoints.checkpoint_dir(workdir, stage))
  manager.save(step, args=checkpoints.ocp.args.PyTreeSave({'w': np.zeros(2)}))
  manager.wait_until_finished()


def test_resolve_stage(tmp_path):
  workdir = str(tmp_path)
  with pytest.raises(FileNotFoundError, match='no co-training checkpoint'):
    checkpoints.resolve_stage(workdir, 'robgan')
  fake_stage(workdir, 'cotrain', 3)
  assert checkpoints.resolve_stage(workdir, 'robgan') == 'cotrain'
  with pytest.raises(FileNotFoundError, match='--mode=finetune'):
    checkpoints.resolve_stage(workdir, 'robgan', 'finetune')
  fake_stage(workdir, 'finetune', 1)
  assert checkpoints.resolve_stage(workdir, 'robgan') == 'finetune'
  assert checkpoints.resolve_stage(workdir, 'robgan', 'cotrain') == 'cotrain'
  with pytest.raises(ValueError, match='Madry'):
    checkpoints.resolve_stage(workdir, 'robgan', 'madry')
  with pytest.raises(ValueError, match='stage must be one of'):
    checkpoints.resolve_stage(workdir, 'robgan', 'best')
  # A Madry workdir has one stage, which 'latest' names too.
  madry = str(tmp_path / 'madry')
  with pytest.raises(FileNotFoundError, match='Madry-baseline checkpoint'):
    checkpoints.resolve_stage(madry, 'madry')
  fake_stage(madry, 'madry', 2)
  assert checkpoints.resolve_stage(madry, 'madry') == 'madry'
  assert checkpoints.resolve_stage(madry, 'madry', 'madry') == 'madry'
  with pytest.raises(ValueError, match='no \'cotrain\' stage'):
    checkpoints.resolve_stage(madry, 'madry', 'cotrain')


def test_load_weights_reads_networks_of_each_stage(trained_workdir):
  cotrain = checkpoints.load_weights(trained_workdir, 'cotrain')
  latest = checkpoints.load_weights(trained_workdir)
  assert (cotrain.stage, cotrain.step) == ('cotrain', 2)
  assert (latest.stage, latest.step) == ('finetune', 2)
  for weights in (cotrain, latest):
    assert set(weights.discriminator) == set(weights.generator) == {'params', 'batch_stats'}
  # Fine-tuning changed D; G of the fine-tuning stage is the co-trained G.
  jax.tree.map(np.testing.assert_array_equal, latest.generator, cotrain.generator)
  assert any(not np.array_equal(a, b) for a, b in zip(
      jax.tree.leaves(latest.discriminator['params']),
      jax.tree.leaves(cotrain.discriminator['params'])))


def test_load_weights_refuses_another_architecture(trained_workdir, tmp_path):
  config = checkpoints.load_config(trained_workdir)
  config.model.discriminator_width = 8
  with pytest.raises(ValueError, match='another architecture'):
    checkpoints.load_weights(trained_workdir, config=config)
  with pytest.raises(FileNotFoundError, match='config.json'):
    checkpoints.load_weights(str(tmp_path))


def test_restore_latest_refuses_a_state_of_another_shape(tmp_path):
  manager = checkpoints.manager(str(tmp_path))
  manager.save(1, args=checkpoints.ocp.args.PyTreeSave({'w': np.zeros(2, np.float32)}))
  manager.wait_until_finished()
  restored = checkpoints.restore_latest(manager, {'w': jax.numpy.ones(2)})
  np.testing.assert_array_equal(restored['w'], np.zeros(2))
  with pytest.raises(ValueError, match='does not match'):
    checkpoints.restore_latest(manager, {'w': jax.numpy.ones(2), 'v': jax.numpy.ones(1)})
