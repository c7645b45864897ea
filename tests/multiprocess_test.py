"""Multi-process runs: two local processes with two CPU devices each (jax.distributed, gloo).

They must train, resume and evaluate as one process with four devices does: the same global
batches (each process reading only its rows), the same checkpoints, the same robustness.json,
and files written once, by process 0.
"""

import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from rob_gan_jax import checkpoints
from rob_gan_jax import cotrain
from rob_gan_jax import evaluate
from rob_gan_jax import workdir as workdir_lib
from rob_gan_jax import task as task_lib
from tests import conftest
from tests.conftest import assert_same_networks

pytestmark = pytest.mark.slow  # Second lane: main.py in two processes.

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def start_two_processes(workdir, *flags, stdout=subprocess.PIPE):
  """Starts main.py as processes 0 and 1 of a 2-process run, 2 CPU devices each."""
  env = dict(os.environ, XLA_FLAGS=re.sub(r'--xla_force_host_platform_device_count=\d+', '',
                                          os.environ.get('XLA_FLAGS', '')) +
             ' --xla_force_host_platform_device_count=2')
  address = f'localhost:{free_port()}'
  return [subprocess.Popen(
      [sys.executable, 'main.py', '--config=configs/tiny.py', f'--workdir={workdir}', *flags,
       f'--coordinator_address={address}', '--num_processes=2', f'--process_id={i}'],
      cwd=REPO, env=env, stdout=stdout if stdout is subprocess.PIPE else stdout[i],
      stderr=subprocess.STDOUT, text=True) for i in range(2)]


def main_in_two_processes(workdir, *flags):
  """Runs main.py as processes 0 and 1 of a 2-process run, 2 CPU devices each; their logs."""
  processes = start_two_processes(workdir, *flags)
  logs = [p.communicate(timeout=600)[0] for p in processes]
  for i, (p, log) in enumerate(zip(processes, logs)):
    assert p.returncode == 0, f'process {i}:\n{log[-3000:]}'
  # Process 0 prints its INFO lines; the others only their warnings and errors.
  assert 'Process 0 of 2' in logs[0]
  assert not re.search(r'^I\d{4} ', logs[1], re.M), logs[1][-3000:]
  return logs


@pytest.fixture(scope='module')
def two_process_workdir(image_folder, tmp_path_factory):
  """Tiny co-training in 2 processes: 1 step, stopped, resumed to 2; with a copy at step 1.

  (A step of the tiny model takes seconds here: its cross-replica BatchNorms make hundreds of
  small all-reduces between the processes over gloo's TCP.)
  """
  data = f'--config.dataset.image_folder={image_folder}'

  def build(workdir):
    logs = main_in_two_processes(f'{workdir}/run', data, '--config.train.num_steps=1')
    assert 'co-training step 1/1' in logs[0]  # The progress line, from process 0.
    shutil.copytree(f'{workdir}/run', f'{workdir}/at_step_1')
    main_in_two_processes(f'{workdir}/run', data, '--config.train.num_steps=2')  # Resumes.

  return pathlib.Path(conftest.private_copy(tmp_path_factory, conftest.built_once(
      tmp_path_factory, 'two_processes', build)))


def test_two_processes_train_and_resume_as_one_process_with_four_devices(
    two_process_workdir, tiny_config, tmp_path):
  assert jax.process_count() == 1 and jax.device_count() == 4
  tiny_config.train.num_steps = 2
  straight = cotrain.train_and_evaluate(tiny_config, task_lib.Task.from_config(tiny_config), str(tmp_path / 'straight'))
  run = two_process_workdir / 'run'
  manager = checkpoints.manager(workdir_lib.checkpoint_dir(str(run), 'cotrain'))
  assert manager.all_steps() == [1, 2]
  assert_same_networks(checkpoints.restore_latest(manager, straight), straight)
  # Written once, by process 0: one summary file per launch, the sample grids.
  assert len([f for f in os.listdir(run) if f.startswith('events.out')]) == 2
  assert sorted(os.listdir(run / 'samples')) == ['step_0000001.png', 'step_0000002.png']
  # The 2-process checkpoint resumed by one process (4 devices) continues the same run.
  resumed = cotrain.train_and_evaluate(tiny_config, task_lib.Task.from_config(tiny_config), str(two_process_workdir / 'at_step_1'))
  assert_same_networks(resumed, straight)


def test_eval_in_two_processes_writes_the_robustness_json_of_one_process(
    two_process_workdir, tiny_config, image_folder):
  run, one = two_process_workdir / 'run', two_process_workdir / 'eval_in_one_process'
  shutil.copytree(run, one)
  main_in_two_processes(run, f'--config.dataset.image_folder={image_folder}', '--mode=eval')
  with open(run / 'eval' / 'robustness.json') as f:
    two = json.load(f)
  single = evaluate.evaluate(tiny_config, task_lib.Task.from_config(tiny_config), str(one))
  assert two.keys() == single.keys() and two['step'] == 2
  for key, value in single.items():
    if key.startswith('llv'):  # A mean of gradient norms: float rounding.
      np.testing.assert_allclose(two[key], value, rtol=1e-5)
    else:  # Accuracies are counts of examples; every example must come out the same.
      assert two[key] == value, key
  assert not [f for f in os.listdir(run / 'eval') if f.startswith('.write_probe')]


def test_sigterm_to_one_process_makes_both_save_the_same_step_and_exit(image_folder, tmp_path):
  paths = [tmp_path / f'process{i}.log' for i in range(2)]
  files = [open(path, 'w') for path in paths]
  processes = start_two_processes(
      tmp_path / 'run', f'--config.dataset.image_folder={image_folder}',
      '--config.train.num_steps=100', '--config.train.log_every_steps=1', stdout=files)
  try:
    deadline = time.monotonic() + 300
    while 'co-training step 2/100' not in paths[0].read_text():  # Training, past compilation.
      assert time.monotonic() < deadline and processes[0].poll() is None, paths[0].read_text()
      time.sleep(0.5)
    processes[1].send_signal(signal.SIGTERM)  # As a scheduler preempting one host.
    for p in processes:
      p.wait(timeout=300)
  finally:
    for p, f in zip(processes, files):
      p.kill()
      f.close()
  logs = [path.read_text() for path in paths]
  steps = [re.search(r'stopped by SIGTERM after step (\d+) and saved step \1', log) for log in logs]
  assert all(steps), logs[1][-3000:]
  assert steps[0][1] == steps[1][1] and 2 <= int(steps[0][1]) < 100
  assert [p.returncode for p in processes] == [75, 75]
  manager = checkpoints.manager(workdir_lib.checkpoint_dir(str(tmp_path / 'run'), 'cotrain'))
  assert manager.latest_step() == int(steps[0][1])
