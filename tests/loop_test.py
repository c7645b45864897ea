"""Tests of rob_gan_jax.loop: when hooks, metrics and checkpoints run; the non-finite guard."""

import os
import signal

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from rob_gan_jax import checkpoints
from rob_gan_jax import loop
from rob_gan_jax import parallel
from rob_gan_jax import workdir as workdir_lib


def test_non_finite_loss_or_state_stops_with_last_good_checkpoint(tmp_path):
  manager = checkpoints.manager(str(tmp_path), max_to_keep=2)
  checkpoints.save(manager, 3, {'w': np.zeros(2)})
  with pytest.raises(FloatingPointError, match='last good checkpoint is step 3'):
    loop.check_finite(4, manager, {'w': np.zeros(2)}, {'d_loss': float('nan'), 'g_loss': 1.0})
  with pytest.raises(FloatingPointError, match=r"1 of 2 state arrays, e.g. \['b'\]"):
    loop.check_finite(4, manager, {'w': np.zeros(2), 'b': np.array([np.inf])}, {'d_loss': 0.5})
  loop.check_finite(4, manager, {'w': np.zeros(2)}, {'d_loss': 0.5})


class CountingState(flax.struct.PyTreeNode):
  step: jax.Array
  total: jax.Array


def counting_run(workdir, num_steps, calls, losses=None, signal_at=None):
  """Runs a loop whose state counts its steps; records hook calls; sends itself the signal
  `signal_at[1]` while reading the batch of step `signal_at[0]`."""
  settings = ml_collections.ConfigDict(dict(
      batch_size=4, log_every_steps=3, checkpoint_every_steps=4, max_to_keep=10,
      collapse_guard=dict(max_class_share=0.9, min_information=0.02, patience=3)))
  losses = losses or {}

  @jax.jit
  def train_step(state, x):
    step = state.step + 1
    loss = jnp.where(step == losses.get('nan_at', -1), jnp.nan, jnp.sum(x))
    # From step `inf_state_at` on, the state diverges while the loss stays finite.
    total = jnp.where(step >= losses.get('inf_state_at', 1 << 30), jnp.inf,
                      state.total + jnp.sum(x))
    # From step `collapse_from` on, the classifier predicts one class.
    share = jnp.where(step >= losses.get('collapse_from', 1 << 30), 1.0, 0.2)
    return CountingState(step=step, total=total), {'loss': loss, 'max_class_share': share}

  def host_batch(s):
    if signal_at and s + 1 == signal_at[0]:
      os.kill(os.getpid(), signal_at[1])
    return (np.full((1, 4), s, np.float32),)

  record = lambda name: lambda step, state, writer: calls.append((name, step, int(state.step)))
  return loop.run(
      state=CountingState(step=jnp.zeros((), jnp.int32), total=jnp.zeros(())),
      train_step=train_step, host_batch=host_batch,
      num_steps=num_steps, settings=settings, mesh=parallel.make_mesh(), workdir=workdir,
      stage='cotrain', hooks=[loop.Hook('every5', 5, record('every5')),
                              loop.Hook('last', None, record('last'))])


def test_hooks_run_every_n_steps_and_at_the_end_and_resume_continues(tmp_path):
  calls = []
  workdir = str(tmp_path)
  state = counting_run(workdir, 6, calls)
  assert calls == [('every5', 5, 5), ('every5', 6, 6), ('last', 6, 6)]
  assert sorted(map(int, checkpoints.manager(workdir_lib.checkpoint_dir(
      workdir, 'cotrain')).all_steps())) == [4, 6]
  calls.clear()
  state = counting_run(workdir, 11, calls)  # Resumes from step 6.
  assert calls == [('every5', 10, 10), ('every5', 11, 11), ('last', 11, 11)]
  # Each step s added 4 * (s - 1): resumed and uninterrupted give the same sum.
  assert int(state.step) == 11 and float(state.total) == 4 * sum(range(11))


@pytest.mark.parametrize('number', [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_the_step_reached_and_resuming_equals_no_interruption(tmp_path, number):
  workdir = str(tmp_path)
  handlers = {n: signal.getsignal(n) for n in (signal.SIGTERM, signal.SIGINT)}
  with pytest.raises(loop.Preempted, match=f'stopped by {number.name} after step 6 and saved '
                                           'step 6') as stopped:
    counting_run(workdir, 11, [], signal_at=(6, number))
  assert (stopped.value.step, stopped.value.saved) == (6, 6)
  assert handlers == {n: signal.getsignal(n) for n in handlers}  # Restored.
  assert sorted(map(int, checkpoints.manager(workdir_lib.checkpoint_dir(
      workdir, 'cotrain')).all_steps())) == [4, 6]
  state = counting_run(workdir, 11, [])
  assert int(state.step) == 11 and float(state.total) == 4 * sum(range(11))


def test_a_second_signal_stops_at_once():
  previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # As in a terminal.
  try:
    with pytest.raises(KeyboardInterrupt):
      with loop.PreemptionNotice() as notice:
        os.kill(os.getpid(), signal.SIGINT)
        assert notice.reached(1) and notice.received == 'SIGINT'
        os.kill(os.getpid(), signal.SIGINT)  # The default handler's KeyboardInterrupt.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
  finally:
    signal.signal(signal.SIGINT, previous)


def test_non_finite_metric_stops_the_run_and_keeps_the_last_checkpoint(tmp_path):
  with pytest.raises(FloatingPointError, match='last good checkpoint is step 4'):
    counting_run(str(tmp_path), 10, [], losses={'nan_at': 5})


@pytest.mark.parametrize('inf_state_at', [4, 5])  # Found at a checkpoint step, at a log step.
def test_a_diverged_state_with_finite_losses_stops_the_run_and_is_never_saved(
    tmp_path, inf_state_at):
  workdir = str(tmp_path)
  with pytest.raises(FloatingPointError, match=r'at step (4|6).*total'):
    counting_run(workdir, 20, [], losses={'inf_state_at': inf_state_at})
  manager = checkpoints.manager(workdir_lib.checkpoint_dir(workdir, 'cotrain'))
  assert manager.all_steps() == ([] if inf_state_at == 4 else [4])


def test_num_steps_below_the_checkpoint_is_an_error(tmp_path):
  counting_run(str(tmp_path), 8, [])
  counting_run(str(tmp_path), 8, [])  # A finished run: nothing to do.
  with pytest.raises(ValueError, match='at step 8, beyond the 5 steps asked for'):
    counting_run(str(tmp_path), 5, [])


def test_a_collapsed_classifier_stops_the_run_and_no_checkpoint_of_it_is_saved(tmp_path):
  # Metrics are written at steps 3, 4, 6, 8, 9 (log and checkpoint steps): collapsed from 6 on.
  workdir = str(tmp_path)
  with pytest.raises(loop.ClassifierCollapseError,
                     match=r'1.000 at step 6, 1.000 at step 8, 1.000 at step 9, above '
                           r'collapse_guard.max_class_share=0.9 .* The last good checkpoint is '
                           r'step 4 .* It is kept'):
    counting_run(workdir, 20, [], losses={'collapse_from': 5})
  manager = checkpoints.manager(workdir_lib.checkpoint_dir(workdir, 'cotrain'))
  assert list(manager.all_steps()) == [4]  # Not 8: the classifier had collapsed.


@pytest.mark.parametrize('patience', [0, 3])
def test_collapse_guard_needs_consecutive_observations_of_one_metric(tmp_path, patience):
  manager = checkpoints.manager(str(tmp_path))
  settings = ml_collections.ConfigDict(dict(max_class_share=0.9, min_information=0.02,
                                            patience=patience))
  g = loop.CollapseGuard(settings, stage='finetune', num_steps=100, manager=manager)
  # Never within its bound yet: not learned, not collapsed (but see the next test).
  for step in (1, 2, 3):
    g.observe(step, {'test_prediction_information': 0.0})
  # Three metrics, each at most two observations in a row beyond its bound: no collapse.
  g.observe(5, {'max_class_share': 0.5, 'test_max_class_share': 0.5, 'prediction_information': 1})
  for step, scalars in [(10, {'max_class_share': 0.95, 'loss': 1.0}), (20, {'max_class_share': 1}),
                        (30, {'max_class_share': 0.5}), (30, {'test_max_class_share': 0.99}),
                        (40, {'max_class_share': 0.95}), (40, {'test_max_class_share': 0.99}),
                        (40, {'prediction_information': 0.001}), (50, None),
                        (50, {'prediction_information': 0.01}),
                        (60, {'prediction_information': 0.3})]:
    g.observe(step, scalars)
  assert g.collapsed == bool(patience)  # While it is, checkpoints wait.
  if not patience:
    g.observe(100, {'max_class_share': 1.0})  # Off: not even at the last step.
    return
  with pytest.raises(loop.ClassifierCollapseError,
                     match=r'test_max_class_share was 0.990 at step 30, 0.990 at step 40, 1.000 '
                           r'at step 60.*no checkpoint in .*finetune.recalibrate_batch_norm'):
    g.observe(60, {'test_max_class_share': 1.0})


@pytest.mark.parametrize('stage', ['cotrain', 'finetune', 'madry'])
def test_a_classifier_stage_ending_collapsed_is_stopped_whatever_it_started_from(tmp_path,
                                                                                 stage):
  """The case of configs/tiny.py fine-tuned at lr 0.1: its D started near-degenerate (share
  0.81), so the test metrics were never within their bounds, and it ended giving every test image
  one class."""
  settings = ml_collections.ConfigDict(dict(max_class_share=0.9, min_information=0.02,
                                            patience=3))
  start = {'test_max_class_share': 0.8125, 'test_prediction_information': 0.21}
  g = loop.CollapseGuard(settings, stage=stage, num_steps=60,
                         manager=checkpoints.manager(str(tmp_path)),
                         start=start if stage == 'finetune' else None)
  g.observe(30, {'test_max_class_share': 1.0, 'max_class_share': 1.0})
  g.observe(60, {'max_class_share': 1.0})  # Training batches: judged once within the bound.
  if stage == 'cotrain':  # Co-training's D is G's adversary first: not judged before learning.
    g.observe(60, {'test_max_class_share': 1.0, 'test_prediction_information': 0.0})
    return
  with pytest.raises(loop.ClassifierCollapseError,
                     match=r'test_max_class_share was 1.000 at step 60, above '
                           r'.*When fine-tuning started, its test_max_class_share was 0.812 and its '
                           r'test_prediction_information 0.210: it was already near-degenerate, '
                           r'so co-train longer .* and lower finetune.learning_rate'
                     if stage == 'finetune' else r'at step 60, above .*\)\. There is no'):
    g.observe(60, {'test_max_class_share': 1.0, 'test_prediction_information': 0.0})


def test_a_training_batch_beyond_its_bound_at_the_last_step_does_not_hold_back_the_checkpoint(
    tmp_path):
  """.ci/run's 4-update tiny fine-tuning: one batch of 16 gave 15 one class at the last step."""
  settings = ml_collections.ConfigDict(dict(max_class_share=0.9, min_information=0.02,
                                            patience=3))
  g = loop.CollapseGuard(settings, stage='finetune', num_steps=4,
                         manager=checkpoints.manager(str(tmp_path)))
  g.observe(2, {'max_class_share': 0.5})
  g.observe(3, {'max_class_share': 0.9375})
  assert g.collapsed  # Mid-run the checkpoint waits for the next observations.
  g.observe(4, {'max_class_share': 0.9375, 'test_max_class_share': 0.75})
  assert not g.collapsed
  with pytest.raises(loop.ClassifierCollapseError,
                     match='test_max_class_share was 0.950 at step 4'):
    g.observe(4, {'test_max_class_share': 0.95})  # The test set's metrics still count.


def test_collapse_guard_stops_a_run_ending_collapsed(tmp_path):
  settings = ml_collections.ConfigDict(dict(max_class_share=0.9, min_information=0.02,
                                            patience=3))
  g = loop.CollapseGuard(settings, stage='madry', num_steps=60,
                         manager=checkpoints.manager(str(tmp_path)))
  g.observe(50, {'max_class_share': 0.9})  # At the bound is not above it.
  assert not g.collapsed
  g.observe(50, {'test_prediction_information': 0.02})  # Nor at the other bound.
  assert not g.collapsed
  with pytest.raises(loop.ClassifierCollapseError,
                     match='test_prediction_information was 0.001 at step 60, below'):
    g.observe(60, {'test_prediction_information': 0.001})
