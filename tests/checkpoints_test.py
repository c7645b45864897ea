"""Tests of rob_gan_jax.checkpoints: the workdir lock, settings on resume, damaged checkpoints,
stage resolution, weights-only loading."""

import glob
import json
import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from rob_gan_jax import checkpoints


def fake_stage(workdir, stage, step):
  manager = checkpoints.manager(checkpoints.checkpoint_dir(workdir, stage))
  checkpoints.save(manager, step, {'w': np.zeros(2)})
  manager.wait_until_finished()


def test_a_second_run_on_a_busy_workdir_is_refused_and_a_killed_run_frees_it(tmp_path):
  workdir = str(tmp_path / 'run')
  with checkpoints.lock_workdir(workdir, 'train'):
    with pytest.raises(checkpoints.WorkdirInUseError, match=f'pid {os.getpid()}'):
      with checkpoints.lock_workdir(workdir, 'train'):
        pass
    with checkpoints.lock_workdir(workdir, 'eval'):  # Evaluation does not block training.
      pass
  with checkpoints.lock_workdir(workdir, 'train'):  # Released at the end of the run.
    pass
  # A process that holds the lock and is killed with SIGKILL leaves it free.
  holder = subprocess.Popen(
      [sys.executable, '-c', 'import sys, time; from rob_gan_jax import checkpoints\n'
       f'with checkpoints.lock_workdir({workdir!r}, "train"):\n'
       '  print("locked", flush=True); time.sleep(600)'],
      stdout=subprocess.PIPE, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
  assert holder.stdout.readline().strip() == 'locked'
  with pytest.raises(checkpoints.WorkdirInUseError, match=f'pid {holder.pid}'):
    with checkpoints.lock_workdir(workdir, 'train'):
      pass
  holder.send_signal(signal.SIGKILL)
  holder.wait()
  with checkpoints.lock_workdir(workdir, 'train'):
    pass
  with pytest.raises(NotADirectoryError, match='is a file'):
    with checkpoints.lock_workdir(os.path.join(workdir, '.train.lock'), 'train'):
      pass


def test_changed_settings_are_refused_on_resume_unless_allowed(tiny_config, tmp_path):
  workdir = str(tmp_path)
  checkpoints.check_and_write_config(tiny_config, workdir)
  # No checkpoint yet: nothing to protect, any change is written.
  tiny_config.train.n_dis = 3
  checkpoints.check_and_write_config(tiny_config, workdir)
  fake_stage(workdir, 'cotrain', 2)
  changed = tiny_config.copy_and_resolve_references()
  changed.train.n_dis = 1
  changed.optim.learning_rate = 1.0
  changed.model.discriminator_width = 8
  with pytest.raises(ValueError) as error:
    checkpoints.check_and_write_config(changed, workdir)
  for field in ('train.n_dis: saved 3, requested 1', 'optim.learning_rate',
                'model.discriminator_width', 'allow_changes'):
    assert field in str(error.value)
  assert checkpoints.load_config(workdir).train.n_dis == 3  # config.json is unchanged.
  # Run length, logging and evaluation may change; fine-tuning settings too, until fine-tuning
  # has checkpoints; the changes are recorded.
  tiny_config.train.num_steps = 10
  tiny_config.eval.num_examples = 3
  tiny_config.finetune.learning_rate = 0.5
  checkpoints.check_and_write_config(tiny_config, workdir)
  fake_stage(workdir, 'finetune', 1)
  tiny_config.finetune.learning_rate = 0.25
  with pytest.raises(ValueError, match='finetune.learning_rate: saved 0.5, requested 0.25'):
    checkpoints.check_and_write_config(tiny_config, workdir)
  # An explicit override lets a fixed setting change (a whole section, or a field).
  tiny_config.allow_changes = ('finetune',)
  tiny_config.optim.learning_rate = 1e-3
  with pytest.raises(ValueError, match='optim.learning_rate'):
    checkpoints.check_and_write_config(tiny_config, workdir)
  tiny_config.allow_changes = ('finetune', 'optim.learning_rate')
  checkpoints.check_and_write_config(tiny_config, workdir)
  assert checkpoints.load_config(workdir).optim.learning_rate == 1e-3
  with open(os.path.join(workdir, 'config_history.json')) as f:
    history = json.load(f)
  assert history[0]['checkpoints'] == {'cotrain': 2}
  assert history[0]['changes']['train.num_steps'] == [4, 10]
  assert history[1]['checkpoints'] == {'cotrain': 2, 'finetune': 1}
  assert history[1]['changes']['optim.learning_rate'] == [2e-4, 1e-3]
  tiny_config.allow_changes = ('optim.learning_rat',)
  with pytest.raises(ValueError, match='do not exist'):
    checkpoints.check_and_write_config(tiny_config, workdir)


def data_files(directory):
  return [f for f in glob.glob(os.path.join(directory, '**', 'd', '*'), recursive=True)
          if os.path.isfile(f)]


def flip_bytes(path):
  data = bytearray(open(path, 'rb').read())
  data[len(data) // 2] ^= 0xFF
  open(path, 'wb').write(data)


DAMAGE = {
    'flipped bytes in a data file': lambda d: [flip_bytes(f) for f in data_files(d)],
    'a truncated data file': lambda d: [os.truncate(f, 10) for f in data_files(d)],
    'a missing data file': lambda d: [os.remove(f) for f in data_files(d)],
    'garbage metadata': lambda d: open(os.path.join(d, 'default', '_METADATA'), 'w').write('{x'),
}


@pytest.mark.parametrize('damage', sorted(DAMAGE))
def test_a_damaged_latest_checkpoint_is_reported_moved_aside_and_the_previous_one_restored(
    damage, tmp_path, caplog):
  directory = str(tmp_path / 'checkpoints')
  manager = checkpoints.manager(directory, max_to_keep=3)
  state = {'w': jax.numpy.linspace(0.0, 1.0, 4000).reshape(40, 100), 'b': jax.numpy.ones(3)}
  checkpoints.save(manager, 1, state)
  checkpoints.save(manager, 2, jax.tree.map(lambda x: 2 * x, state))
  manager.wait_until_finished()
  DAMAGE[damage](os.path.join(directory, '2'))
  restored = checkpoints.restore_latest(checkpoints.manager(directory, 3), state)
  jax.tree.map(np.testing.assert_array_equal, restored, state)
  assert f'checkpoint 2 ({directory}/2)' in caplog.text
  assert sorted(os.listdir(directory)) == ['1', 'corrupt-2']
  # The resumed run can save step 2 again.
  manager = checkpoints.manager(directory, 3)
  checkpoints.save(manager, 2, state)
  manager.wait_until_finished()
  assert manager.all_steps() == [1, 2]


def test_flipped_bytes_that_still_decode_are_caught_by_the_checksums(tmp_path):
  directory = str(tmp_path)
  manager = checkpoints.manager(directory, max_to_keep=3)
  state = {'w': jax.numpy.linspace(0.0, 1.0, 5000).reshape(50, 100)}
  checkpoints.save(manager, 1, state)
  manager.wait_until_finished()
  flip_bytes(max(data_files(os.path.join(directory, '1')), key=os.path.getsize))
  # Orbax reads the damaged array without complaint ...
  raw = checkpoints.manager(directory).restore(1)['w']
  assert not np.array_equal(raw, state['w'])
  # ... the checksum does not let it through.
  with pytest.raises(checkpoints.CorruptCheckpointError,
                     match=r"do not match their checksums: \['w'\]"):
    checkpoints.restore_latest(checkpoints.manager(directory), state)


def test_no_intact_checkpoint_is_an_error_and_non_finite_states_are_not_saved(tmp_path):
  directory = str(tmp_path)
  manager = checkpoints.manager(directory)
  with pytest.raises(FloatingPointError, match=r"non-finite arrays \['b'\]"):
    checkpoints.save(manager, 1, {'w': np.zeros(2), 'b': np.array([1.0, np.inf])})
  assert manager.all_steps() == []
  checkpoints.save(manager, 1, {'w': np.zeros(2)})
  manager.wait_until_finished()
  flip_bytes(data_files(os.path.join(directory, '1'))[0])
  with pytest.raises(checkpoints.CorruptCheckpointError, match='no intact checkpoint'):
    checkpoints.restore_latest(checkpoints.manager(directory), {'w': jax.numpy.ones(2)})


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
