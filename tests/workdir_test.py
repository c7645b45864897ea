"""Tests of rob_gan_jax.workdir: the workdir lock, settings on resume, stage resolution."""

import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from rob_gan_jax import checkpoints
from rob_gan_jax import task as task_lib
from rob_gan_jax import workdir as workdir_lib

ROBGAN = task_lib.Task('robgan', 10)
MADRY = task_lib.Task('madry', 10)


def fake_stage(workdir, stage, step):
  manager = checkpoints.manager(workdir_lib.checkpoint_dir(workdir, stage))
  checkpoints.save(manager, step, {'w': np.zeros(2)})
  manager.wait_until_finished()


def test_a_second_run_on_a_busy_workdir_is_refused_and_a_killed_run_frees_it(tmp_path):
  workdir = str(tmp_path / 'run')
  with workdir_lib.lock(workdir, 'train'):
    with pytest.raises(workdir_lib.WorkdirInUseError, match=f'pid {os.getpid()}'):
      with workdir_lib.lock(workdir, 'train'):
        pass
    with workdir_lib.lock(workdir, 'eval'):  # Evaluation does not block training.
      pass
  with workdir_lib.lock(workdir, 'train'):  # Released at the end of the run.
    pass
  # A process that holds the lock and is killed with SIGKILL leaves it free.
  holder = subprocess.Popen(
      [sys.executable, '-c', 'import sys, time; from rob_gan_jax import workdir\n'
       f'with workdir.lock({workdir!r}, "train"):\n'
       '  print("locked", flush=True); time.sleep(600)'],
      stdout=subprocess.PIPE, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
  assert holder.stdout.readline().strip() == 'locked'
  with pytest.raises(workdir_lib.WorkdirInUseError, match=f'pid {holder.pid}'):
    with workdir_lib.lock(workdir, 'train'):
      pass
  holder.send_signal(signal.SIGKILL)
  holder.wait()
  with workdir_lib.lock(workdir, 'train'):
    pass
  with pytest.raises(NotADirectoryError, match='is a file'):
    with workdir_lib.lock(os.path.join(workdir, '.train.lock'), 'train'):
      pass


def test_changed_settings_are_refused_on_resume_unless_allowed(tiny_config, tmp_path):
  workdir = str(tmp_path)
  workdir_lib.check_and_write_config(tiny_config, workdir)
  # No checkpoint yet: nothing to protect, any change is written.
  tiny_config.train.n_dis = 3
  workdir_lib.check_and_write_config(tiny_config, workdir)
  fake_stage(workdir, 'cotrain', 2)
  changed = tiny_config.copy_and_resolve_references()
  changed.train.n_dis = 1
  changed.optim.learning_rate = 1.0
  changed.model.discriminator_width = 8
  with pytest.raises(ValueError) as error:
    workdir_lib.check_and_write_config(changed, workdir)
  for field in ('train.n_dis: saved 3, requested 1', 'optim.learning_rate',
                'model.discriminator_width', 'allow_changes'):
    assert field in str(error.value)
  assert workdir_lib.load_config(workdir).train.n_dis == 3  # config.json is unchanged.
  # Run length, logging and evaluation may change; fine-tuning settings too, until fine-tuning
  # has checkpoints; the changes are recorded.
  tiny_config.train.num_steps = 10
  tiny_config.eval.num_examples = 3
  tiny_config.finetune.learning_rate = 0.5
  workdir_lib.check_and_write_config(tiny_config, workdir)
  fake_stage(workdir, 'finetune', 1)
  tiny_config.finetune.learning_rate = 0.25
  with pytest.raises(ValueError, match='finetune.learning_rate: saved 0.5, requested 0.25'):
    workdir_lib.check_and_write_config(tiny_config, workdir)
  # An explicit override lets a fixed setting change (a whole section, or a field).
  tiny_config.allow_changes = ('finetune',)
  tiny_config.optim.learning_rate = 1e-3
  with pytest.raises(ValueError, match='optim.learning_rate'):
    workdir_lib.check_and_write_config(tiny_config, workdir)
  tiny_config.allow_changes = ('finetune', 'optim.learning_rate')
  workdir_lib.check_and_write_config(tiny_config, workdir)
  assert workdir_lib.load_config(workdir).optim.learning_rate == 1e-3
  with open(os.path.join(workdir, 'config_history.json')) as f:
    history = json.load(f)
  assert history[0]['checkpoints'] == {'cotrain': 2}
  assert history[0]['changes']['train.num_steps'] == [4, 10]
  assert history[1]['checkpoints'] == {'cotrain': 2, 'finetune': 1}
  assert history[1]['changes']['optim.learning_rate'] == [2e-4, 1e-3]
  tiny_config.allow_changes = ('optim.learning_rat',)
  with pytest.raises(ValueError, match='do not exist'):
    workdir_lib.check_and_write_config(tiny_config, workdir)


def test_resolve_stage(tmp_path):
  workdir = str(tmp_path)
  with pytest.raises(FileNotFoundError, match='no co-training checkpoint'):
    workdir_lib.resolve_stage(workdir, ROBGAN)
  fake_stage(workdir, 'cotrain', 3)
  assert workdir_lib.resolve_stage(workdir, ROBGAN) == 'cotrain'
  with pytest.raises(FileNotFoundError, match='--mode=finetune'):
    workdir_lib.resolve_stage(workdir, ROBGAN, 'finetune')
  fake_stage(workdir, 'finetune', 1)
  assert workdir_lib.resolve_stage(workdir, ROBGAN) == 'finetune'
  assert workdir_lib.resolve_stage(workdir, ROBGAN, 'cotrain') == 'cotrain'
  with pytest.raises(ValueError, match="no 'madry' stage"):
    workdir_lib.resolve_stage(workdir, ROBGAN, 'madry')
  with pytest.raises(ValueError, match='stage must be one of'):
    workdir_lib.resolve_stage(workdir, ROBGAN, 'best')
  # A Madry workdir has one stage, which 'latest' names too.
  madry = str(tmp_path / 'madry')
  with pytest.raises(FileNotFoundError, match='Madry training checkpoint'):
    workdir_lib.resolve_stage(madry, MADRY)
  fake_stage(madry, 'madry', 2)
  assert workdir_lib.resolve_stage(madry, MADRY) == 'madry'
  assert workdir_lib.resolve_stage(madry, MADRY, 'madry') == 'madry'
  with pytest.raises(ValueError, match='no \'cotrain\' stage'):
    workdir_lib.resolve_stage(madry, MADRY, 'cotrain')


def test_a_workdir_of_another_layout_is_refused_with_one_error(tiny_config, tmp_path):
  """A workdir without this package's format version (an earlier, unreleased layout) or with
  another one is neither resumed nor read: one error names both versions."""
  workdir = str(tmp_path / 'run')
  workdir_lib.check_and_write_config(tiny_config, workdir)
  version_file = os.path.join(workdir, 'workdir_version.json')
  assert json.load(open(version_file)) == {'format': workdir_lib.FORMAT_VERSION}
  workdir_lib.check_and_write_config(tiny_config, workdir)  # Resumes.
  assert workdir_lib.load_config(workdir).model.num_classes == 10
  os.remove(version_file)  # As earlier versions left a workdir.
  for call in (lambda: workdir_lib.check_and_write_config(tiny_config, workdir),
               lambda: workdir_lib.load_config(workdir)):
    with pytest.raises(workdir_lib.WorkdirVersionError,
                       match='an earlier, unreleased layout .*workdir format 1 only'):
      call()
  with open(version_file, 'w') as f:
    json.dump({'format': 99}, f)
  with pytest.raises(workdir_lib.WorkdirVersionError, match='with workdir format 99'):
    workdir_lib.load_config(workdir)


def test_a_damaged_config_json_is_named_and_left_as_it_is(tiny_config, tmp_path):
  workdir = str(tmp_path)
  workdir_lib.check_and_write_config(tiny_config, workdir)
  fake_stage(workdir, 'cotrain', 2)
  path = os.path.join(workdir, 'config.json')
  with open(path, 'w') as f:
    f.write('{"model": {"generator_width": 4,')  # Cut short, as by a full disk.
  for read in (lambda: workdir_lib.check_and_write_config(tiny_config, workdir),
               lambda: workdir_lib.load_config(workdir)):
    with pytest.raises(ValueError, match=rf'{path} is damaged: it is not JSON .*move it away'):
      read()
  with open(path) as f:
    assert f.read() == '{"model": {"generator_width": 4,'
  assert workdir_lib.resolve_stage(workdir, ROBGAN) == 'cotrain'  # The checkpoint is kept.


def test_data_moved_on_resume_is_compared_by_what_it_is(tiny_config, image_folder, tmp_path):
  workdir, first = str(tmp_path / 'run'), str(tmp_path / 'first')
  shutil.copytree(image_folder, first)
  tiny_config.dataset.image_folder = first
  workdir_lib.check_and_write_config(tiny_config, workdir)
  fake_stage(workdir, 'cotrain', 2)
  moved = str(tmp_path / 'moved')
  shutil.move(first, moved)  # Another mount point: the old path is gone.
  tiny_config.dataset.image_folder = moved
  workdir_lib.check_and_write_config(tiny_config, workdir)
  assert workdir_lib.load_config(workdir).dataset.image_folder == moved
  other = str(tmp_path / 'other')
  shutil.copytree(moved, other)
  cat = os.path.join(other, 'train', sorted(os.listdir(os.path.join(other, 'train')))[0])
  os.remove(os.path.join(cat, sorted(os.listdir(cat))[0]))  # One training image fewer.
  tiny_config.dataset.image_folder = other
  with pytest.raises(ValueError, match=r"holds other data \(these differ: \['train'\]"):
    workdir_lib.check_and_write_config(tiny_config, workdir)
  # A workdir from before data_identity.json: the old location is read if it is still there,
  # else the move cannot be judged.
  os.remove(os.path.join(workdir, 'data_identity.json'))
  again = str(tmp_path / 'again')
  shutil.copytree(moved, again)
  tiny_config.dataset.image_folder = again
  workdir_lib.check_and_write_config(tiny_config, workdir)
  os.remove(os.path.join(workdir, 'data_identity.json'))
  shutil.rmtree(again)
  tiny_config.dataset.image_folder = moved
  with pytest.raises(ValueError, match=r"which is gone.*allow_changes="):
    workdir_lib.check_and_write_config(tiny_config, workdir)
