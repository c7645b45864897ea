"""Tests of rob_gan_jax.checkpoints: damaged checkpoints, weights-only loading."""

import errno
import glob
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from rob_gan_jax import checkpoints
from rob_gan_jax import workdir as workdir_lib


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


def test_load_weights_reads_networks_of_each_stage(trained_workdir):
  cotrain = workdir_lib.load_weights(trained_workdir, 'cotrain')
  latest = workdir_lib.load_weights(trained_workdir)
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
  config = workdir_lib.load_config(trained_workdir)
  config.model.discriminator_width = 8
  with pytest.raises(ValueError, match='another architecture'):
    workdir_lib.load_weights(trained_workdir, config=config)
  with pytest.raises(FileNotFoundError, match='config.json'):
    workdir_lib.load_weights(str(tmp_path))


def test_restore_latest_refuses_a_state_of_another_shape(tmp_path):
  manager = checkpoints.manager(str(tmp_path))
  checkpoints.save(manager, 1, {'w': np.zeros(2, np.float32)})
  checkpoints.wait_until_finished(manager)
  restored = checkpoints.restore_latest(manager, {'w': jax.numpy.ones(2)})
  np.testing.assert_array_equal(restored['w'], np.zeros(2))
  with pytest.raises(ValueError, match='does not match'):
    checkpoints.restore_latest(manager, {'w': jax.numpy.ones(2), 'v': jax.numpy.ones(1)})


def test_a_checkpoint_larger_than_the_free_space_is_refused_before_writing(tmp_path,
                                                                          monkeypatch):
  manager = checkpoints.manager(str(tmp_path))
  checkpoints.save(manager, 1, {'w': np.zeros(1000)})
  checkpoints.wait_until_finished(manager)
  free = shutil.disk_usage(str(tmp_path))._replace(free=4096)
  monkeypatch.setattr(shutil, 'disk_usage', lambda path: free)
  with pytest.raises(OSError, match=rf'no space left on {tmp_path} \(checkpoint 2 needs about '
                                    r'.* MiB, 0.0 MiB are free; nothing of it was written\); '
                                    'the last complete checkpoint is step 1') as raised:
    checkpoints.save(manager, 2, {'w': np.zeros(1000)})
  assert raised.value.errno == errno.ENOSPC and manager.all_steps() == [1]


def test_a_disk_that_fills_during_a_save_gives_one_clear_error_and_no_leftovers(tmp_path,
                                                                                monkeypatch):
  manager = checkpoints.manager(str(tmp_path))
  checkpoints.save(manager, 1, {'w': np.zeros(4)})
  checkpoints.wait_until_finished(manager)
  os.makedirs(tmp_path / '2.orbax-checkpoint-tmp-123')  # What Orbax leaves of a failed save.
  # TensorStore's words for ENOSPC, raised from inside Orbax's writer as it raises them.
  full = RuntimeError('Event loop is closed')
  full.__context__ = ValueError('RESOURCE_EXHAUSTED: Error writing "d/abc": [OS error: No space '
                                'left on device]')
  def fail(*args, **kwargs):
    raise full
  monkeypatch.setattr(manager, 'save', fail)
  with pytest.raises(OSError, match=rf'no space left on {tmp_path} \(saving checkpoint 2\); the '
                                    'last complete checkpoint is step 1. Free space'):
    checkpoints.save(manager, 2, {'w': np.zeros(4)})
  assert not glob.glob(str(tmp_path / '*tmp*'))
  monkeypatch.setattr(manager, 'wait_until_finished', fail)
  with pytest.raises(OSError, match='finishing a checkpoint save'):
    checkpoints.wait_until_finished(manager)
  monkeypatch.setattr(manager, 'wait_until_finished', lambda: (_ for _ in ()).throw(
      RuntimeError('another failure')))
  with pytest.raises(RuntimeError, match='another failure'):  # Other errors pass unchanged.
    checkpoints.wait_until_finished(manager)


@pytest.mark.slow
def test_training_on_a_full_file_system_stops_with_one_clear_error_and_resumes(image_folder,
                                                                             tmp_path):
  """A real tmpfs with less free space than a checkpoint (root only; skipped where mount
  fails); with the space freed the same command resumes."""
  mount = tmp_path / 'small'
  mount.mkdir()
  if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', str(mount)],
                    capture_output=True).returncode:
    pytest.skip('cannot mount a tmpfs here')
  try:
    filler = mount / 'filler'
    filler.write_bytes(b'\0' * (shutil.disk_usage(str(mount)).free - 600_000))
    command = [sys.executable, 'main.py', '--config=configs/tiny.py', f'--workdir={mount}/run',
               f'--config.dataset.image_folder={image_folder}',
               '--config.evals.pgd_accuracy.every_steps=0',
               '--config.evals.sample_grid.every_steps=0']
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    full = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=600)
    assert full.returncode != 0
    assert f'OSError: [Errno {errno.ENOSPC}] no space left on {mount}/run/checkpoints' in (
        full.stderr)
    assert full.stderr.count('Traceback') == 1
    assert not glob.glob(str(mount / 'run' / 'checkpoints' / '*tmp*'))
    filler.unlink()
    resumed = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert checkpoints.latest_step(str(mount / 'run' / 'checkpoints')) == 4
  finally:
    subprocess.run(['umount', str(mount)], check=False)
