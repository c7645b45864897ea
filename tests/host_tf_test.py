"""TensorFlow as the input pipeline gets it: with the GPUs hidden, or a clear missing-install error."""

import sys
import types

import pytest

from rob_gan_jax.input_pipeline import host_tf


@pytest.fixture
def fresh(monkeypatch):
  host_tf.tensorflow.cache_clear()
  yield monkeypatch
  host_tf.tensorflow.cache_clear()


def test_hides_the_gpus_once_before_any_op(fresh):
  calls = []
  fake = types.SimpleNamespace(config=types.SimpleNamespace(
      set_visible_devices=lambda devices, kind: calls.append((devices, kind))))
  fresh.setitem(sys.modules, 'tensorflow', fake)
  assert host_tf.tensorflow() is fake
  assert host_tf.tensorflow() is fake
  assert calls == [([], 'GPU')]


def test_devices_fixed_already_is_not_an_error(fresh):
  def refuse(devices, kind):
    raise RuntimeError('Visible devices cannot be modified after being initialized')
  fake = types.SimpleNamespace(config=types.SimpleNamespace(set_visible_devices=refuse))
  fresh.setitem(sys.modules, 'tensorflow', fake)
  assert host_tf.tensorflow() is fake


def test_missing_tensorflow_names_the_install(fresh):
  fresh.setitem(sys.modules, 'tensorflow', None)
  with pytest.raises(ModuleNotFoundError, match=r'rob_gan_jax\[cpu\]'):
    host_tf.tensorflow()
