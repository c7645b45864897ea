"""Tests of rob_gan_jax.input_pipeline."""

import logging
import os
import socket

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from rob_gan_jax import input_pipeline
from tests import conftest


def folder_config(path):
  config = default.get_config().dataset
  config.image_folder = str(path)
  return config


def test_load_split_reads_images_in_canonical_order(image_folder):
  images, labels = input_pipeline.load_split(folder_config(image_folder), 'train', image_size=32,
                                             num_classes=10)
  assert images.shape == (40, 32, 32, 3) and images.dtype == np.uint8
  np.testing.assert_array_equal(labels, np.repeat(np.arange(10), 4))  # Sorted by file name.
  # The images were drawn with brightness 25 * class.
  np.testing.assert_allclose(images.reshape(10, -1).mean(1), 25 * np.arange(10), atol=8)


def test_missing_folder_says_both_ways_to_get_data(tmp_path):
  with pytest.raises(FileNotFoundError, match='image_folder') as info:
    input_pipeline.load_split(folder_config(tmp_path / 'nope'), 'train', image_size=32,
                              num_classes=10)
  assert 'TFDS' in str(info.value)


def test_wrong_image_size_and_classes_and_split_raise(tmp_path, image_folder):
  small = conftest.write_image_folder(tmp_path / 'small', per_class={'train': 1}, size=28)
  # All 10 images are wrong: the message counts them and names the first 5.
  with pytest.raises(ValueError, match=r'^10 image.*airplane/0000.jpg has shape \(28, 28, 3\), '
                     r'expected \(32, 32, 3\).* and 5 more$'):
    input_pipeline.load_split(folder_config(small), 'train', image_size=32, num_classes=10)
  with pytest.raises(ValueError, match='classes'):
    input_pipeline.load_split(folder_config(image_folder), 'train', image_size=32,
                              num_classes=100)
  with pytest.raises(ValueError, match='validation'):
    input_pipeline.load_split(folder_config(image_folder), 'validation', image_size=32,
                              num_classes=10)


def test_undecodable_image_is_named(tmp_path):
  root = conftest.write_image_folder(tmp_path / 'images', per_class={'train': 2})
  cat = os.path.join(root, 'train', 'cat', '0001.jpg')
  with open(cat, 'rb') as f:
    data = f.read()
  with open(cat, 'wb') as f:
    f.write(data[:len(data) // 2])  # Truncated.
  with pytest.raises(ValueError, match=r'^1 image.*: train/cat/0001.jpg cannot be decoded$'):
    input_pipeline.load_split(folder_config(root), 'train', image_size=32, num_classes=10)


def test_image_of_the_wrong_size_is_named_with_its_shape(tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  root = conftest.write_image_folder(tmp_path / 'images', per_class={'train': 2})
  Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(
      os.path.join(root, 'train', 'dog', '0000.jpg'))
  with pytest.raises(ValueError, match=r'^1 image.*: train/dog/0000.jpg has shape '
                     r'\(64, 64, 3\), expected \(32, 32, 3\)$'):
    input_pipeline.load_split(folder_config(root), 'train', image_size=32, num_classes=10)


def test_splits_with_different_class_folders_raise(tmp_path):
  root = conftest.write_image_folder(tmp_path / 'images', per_class={'train': 1, 'test': 1})
  conftest.write_image_folder(tmp_path / 'more', per_class={'test': 1}, classes=('unicorn',))
  os.rename(tmp_path / 'more' / 'test' / 'unicorn', os.path.join(root, 'test', 'unicorn'))
  # Reading either split checks all of them (TFDS would count 11 classes).
  with pytest.raises(ValueError, match=r"'unicorn' is in test/ but not in train/$"):
    input_pipeline.load_split(folder_config(root), 'train', image_size=32, num_classes=10)


def test_empty_class_folder_is_logged(tmp_path, caplog):
  root = conftest.write_image_folder(tmp_path / 'images', per_class={'train': 1, 'test': 1})
  os.remove(os.path.join(root, 'train', 'cat', '0000.jpg'))
  with caplog.at_level(logging.WARNING):
    _, labels = input_pipeline.load_split(folder_config(root), 'test', image_size=32,
                                          num_classes=10)
  assert len(labels) == 10 and not caplog.records  # The test split has every class.
  with caplog.at_level(logging.WARNING):
    _, labels = input_pipeline.load_split(folder_config(root), 'train', image_size=32,
                                          num_classes=10)
  assert len(labels) == 9 and 3 not in labels
  assert [r.levelno for r in caplog.records] == [logging.WARNING]
  assert os.path.join(root, 'train', 'cat') in caplog.records[0].getMessage()


def test_tfds_download_runs_up_to_the_http_request(tmp_path, monkeypatch):
  """Issue 8 item 0: TFDS's download code imports packages (importlib_resources) we must install."""
  import requests  # pylint: disable=g-import-not-at-top
  from tensorflow_datasets.core.download import downloader  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(downloader, 'MAX_RETRIES', 0)  # Its urllib3 retries back off for ~200 s.
  with socket.socket() as closed_port:  # Bound, not listening: connections are refused at once.
    closed_port.bind(('127.0.0.1', 0))
    proxy = 'http://127.0.0.1:%d' % closed_port.getsockname()[1]
    for var in ('http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY'):
      monkeypatch.setenv(var, proxy)  # The request fails whether the machine is online or not.
    for var in ('no_proxy', 'NO_PROXY'):
      monkeypatch.delenv(var, raising=False)
    config = default.get_config().dataset
    config.name, config.data_dir, config.image_folder = 'cifar10', str(tmp_path), None
    with pytest.raises(FileNotFoundError, match='could not be downloaded') as info:
      input_pipeline.load_split(config, 'train', image_size=32, num_classes=10)
  chain = [info.value]
  while chain[-1].__cause__ or chain[-1].__context__:
    chain.append(chain[-1].__cause__ or chain[-1].__context__)
  assert not any(isinstance(e, ImportError) for e in chain), chain
  assert any(isinstance(e, requests.exceptions.ConnectionError) for e in chain), chain


def test_batch_indices_are_a_function_of_seed_and_step():
  epoch0 = np.concatenate([input_pipeline.batch_indices(7, i, num_examples=10, batch_size=3)
                           for i in range(3)])
  assert len(set(epoch0.tolist())) == 9  # No repeats within an epoch; the remainder is dropped.
  np.testing.assert_array_equal(input_pipeline.batch_indices(7, 4, num_examples=10, batch_size=3),
                                input_pipeline.batch_indices(7, 4, num_examples=10, batch_size=3))
  assert not np.array_equal(input_pipeline.batch_indices(7, 0, num_examples=10, batch_size=3),
                            input_pipeline.batch_indices(8, 0, num_examples=10, batch_size=3))


def test_augment_range_crop_and_flip():
  images = np.full((64, 32, 32, 3), 255, np.uint8)
  images[:, :, :16] = 0
  x = input_pipeline.augment(jnp.asarray(images), jax.random.PRNGKey(0), crop_padding=4,
                             random_flip=True, dequantization_noise=1 / 128)
  assert x.shape == (64, 32, 32, 3) and x.dtype == jnp.float32
  assert float(x.min()) >= -1.0 and float(x.max()) < 1.0 + 1 / 128
  plain = input_pipeline.augment(jnp.asarray(images), jax.random.PRNGKey(0), crop_padding=0,
                                 random_flip=False, dequantization_noise=0.0)
  np.testing.assert_array_equal(plain, input_pipeline.to_float(images))
  left_dark = np.asarray(x[:, 10, 0, 0] < 0)
  assert 0 < left_dark.sum() < 64  # Some flipped, some not.


def test_host_batch_is_the_batches_of_step_s(image_folder):
  images, labels = input_pipeline.load_split(folder_config(image_folder), 'train', image_size=32,
                                             num_classes=10)
  kwargs = dict(seed=3, batch_size=8)
  x, y = input_pipeline.host_batch(images, labels, 2, batches_per_step=3, **kwargs)
  assert x.shape == (3, 8, 32, 32, 3) and x.dtype == np.uint8 and y.shape == (3, 8)
  # Step 2 of 3 batches a step holds batches 6, 7, 8 (epochs of 40 // 8 = 5 batches).
  for i, batch in enumerate((6, 7, 8)):
    idx = input_pipeline.batch_indices(3, batch, num_examples=40, batch_size=8)
    np.testing.assert_array_equal(x[i], images[idx])
    np.testing.assert_array_equal(y[i], labels[idx])
  # One batch a step: step s is batch s.
  x1, y1 = input_pipeline.host_batch(images, labels, 7, **kwargs)
  np.testing.assert_array_equal(x1, x[1:2])
  np.testing.assert_array_equal(y1, y[1:2])
  with pytest.raises(ValueError, match='fewer than one batch'):
    input_pipeline.host_batch(images, labels, 0, seed=3, batch_size=41)


def test_load_subset_is_a_fixed_function_of_the_seed(tiny_config):
  images, labels = input_pipeline.load_subset(tiny_config, 'test', 5)
  assert images.shape == (5, 32, 32, 3) and labels.shape == (5,)
  again, _ = input_pipeline.load_subset(tiny_config, 'test', 5)
  np.testing.assert_array_equal(images, again)
  everything, all_labels = input_pipeline.load_subset(tiny_config, 'test', None)
  assert len(everything) == 20 and sorted(all_labels) == sorted(np.repeat(np.arange(10), 2))
  tiny_config.seed = 1
  other, _ = input_pipeline.load_subset(tiny_config, 'test', 5)
  assert not np.array_equal(images, other)
