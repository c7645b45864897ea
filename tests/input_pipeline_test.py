"""Tests of rob_gan_jax.input_pipeline."""

import jax
import jax.numpy as jnp
import ml_collections
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
  with pytest.raises(ValueError, match=r'\(32, 32, 3\)'):
    input_pipeline.load_split(folder_config(small), 'train', image_size=32, num_classes=10)
  with pytest.raises(ValueError, match='classes'):
    input_pipeline.load_split(folder_config(image_folder), 'train', image_size=32,
                              num_classes=100)
  with pytest.raises(ValueError, match='validation'):
    input_pipeline.load_split(folder_config(image_folder), 'validation', image_size=32,
                              num_classes=10)


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


def test_image_grid_layout():
  images = np.stack([np.full((4, 4, 3), v, np.float32) for v in (-1.0, 1.0, 0.0, 1.0)])
  grid = input_pipeline.image_grid(images, rows=2, padding=1)
  assert grid.shape == (11, 11, 3) and grid.dtype == np.uint8
  assert grid[1, 1, 0] == 0 and grid[1, 6, 0] == 255 and grid[6, 1, 0] == 128
