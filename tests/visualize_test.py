"""Tests of rob_gan_jax.visualize."""

import os

import numpy as np

from rob_gan_jax import visualize


def test_image_grid_layout():
  images = np.stack([np.full((4, 4, 3), v, np.float32) for v in (-1.0, 1.0, 0.0, 1.0)])
  grid = visualize.image_grid(images, rows=2, padding=1)
  assert grid.shape == (11, 11, 3) and grid.dtype == np.uint8
  assert grid[1, 1, 0] == 0 and grid[1, 6, 0] == 255 and grid[6, 1, 0] == 128


def test_grayscale_grid_is_a_grayscale_png(tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  grid = visualize.image_grid(np.full((2, 4, 4, 1), 1.0, np.float32), rows=1, padding=1)
  assert grid.shape == (6, 11, 1)
  visualize.save_png(grid, str(tmp_path / 'grid.png'), scale=2)
  with Image.open(tmp_path / 'grid.png') as image:
    assert image.mode == 'L' and image.size == (22, 12)
    assert np.asarray(image)[2, 2] == 255


def test_plot_robustness_writes_both_plots(tmp_path):
  result = {'epsilons': [0.0, 0.02], 'train_accuracy': [0.9, 0.5], 'test_accuracy': [0.8, 0.4],
            'train_accuracy_cumulative': [0.9, 0.45], 'test_accuracy_cumulative': [0.8, 0.3],
            'llv_train': 0.5, 'llv_test': 0.7, 'stage': 'finetune', 'step': 3, 'head': 'class'}
  visualize.plot_robustness(result, str(tmp_path))
  for name in ('accuracy_vs_epsilon.png', 'local_lipschitz.png'):
    assert os.path.getsize(tmp_path / name) > 1000
