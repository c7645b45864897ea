"""Tests of rob_gan_jax.loop: when hooks, metrics and checkpoints run; the non-finite guard."""

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


def counting_run(workdir, num_steps, calls, losses=None):
  """Runs a loop whose state counts its steps; records hook calls."""
  settings = ml_collections.ConfigDict(dict(batch_size=4, log_every_steps=3,
                                            checkpoint_every_steps=4, max_to_keep=10))
  losses = losses or {}

  @jax.jit
  def train_step(state, x):
    step = state.step + 1
    loss = jnp.where(step == losses.get('nan_at', -1), jnp.nan, jnp.sum(x))
    # From step `inf_state_at` on, the state diverges while the loss stays finite.
    total = jnp.where(step >= losses.get('inf_state_at', 1 << 30), jnp.inf,
                      state.total + jnp.sum(x))
    return CountingState(step=step, total=total), {'loss': loss}

  record = lambda name: lambda step, state, writer: calls.append((name, step, int(state.step)))
  return loop.run(
      state=CountingState(step=jnp.zeros((), jnp.int32), total=jnp.zeros(())),
      train_step=train_step, host_batch=lambda s: (np.full((1, 4), s, np.float32),),
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
