"""Tests of rob_gan_jax.visualize."""

import os

import numpy as np

from rob_gan_jax import evaluators
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


def test_plots_of_curves_and_of_a_drawing_function(tmp_path):
  curves = [evaluators.Curve('test, per radius', [0.8, 0.4], 's-C1'),
            evaluators.Curve('test, cumulative', [0.8, 0.3], 's--C1')]
  visualize.plot_curves(curves, [0.0, 0.02], str(tmp_path / 'curves.png'), title='D',
                        ylabel='accuracy')
  visualize.save_plot(lambda ax: ax.bar(['train', 'test'], [0.5, 0.7]), str(tmp_path / 'b.png'))
  for name in ('curves.png', 'b.png'):
    assert os.path.getsize(tmp_path / name) > 1000
