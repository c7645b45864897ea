"""Pictures: image grids, PNG files, and the robustness plots of `--mode=eval`."""

import os
from typing import Any, Dict, Optional, Tuple

import numpy as np

from rob_gan_jax import input_pipeline
from rob_gan_jax import models
from rob_gan_jax import parallel


def image_grid(images, rows: int, padding: int = 2) -> np.ndarray:
  """Tiles (N, H, W, 3) images in [-1, 1] into one uint8 (rows*(H+p)+p, cols*(W+p)+p, 3) image."""
  images = input_pipeline.to_uint8(images)
  n, h, w, c = images.shape
  cols = -(-n // rows)
  grid = np.zeros((rows * (h + padding) + padding, cols * (w + padding) + padding, c), np.uint8)
  for i in range(n):
    r, col = divmod(i, cols)
    top, left = padding + r * (h + padding), padding + col * (w + padding)
    grid[top:top + h, left:left + w] = images[i]
  return grid


def save_png(image: np.ndarray, path: str, scale: Optional[int] = None) -> None:
  """Writes a uint8 (H, W, 3) image as PNG, optionally enlarged `scale` times."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  pil = Image.fromarray(image)
  if scale:
    pil = pil.resize((image.shape[1] * scale, image.shape[0] * scale), Image.NEAREST)
  pil.save(path)


def sample_grid_images(generator, variables, config) -> Tuple[Any, int]:
  """The fixed-noise sample grid of a run: (images (N, S, S, 3) float32 in [-1, 1], rows).

  A class-conditional G makes one row per class of `train.samples_per_class` images; an
  unconditional G 10 rows of as many. Latents come from `config.seed + 1`; G uses the grid's
  batch statistics, or its running ones with `eval.sample_with_running_stats`.
  """
  num_classes, per_row = config.model.num_classes, config.train.samples_per_class
  if num_classes:
    labels, rows = np.repeat(np.arange(num_classes), per_row), num_classes
  else:
    labels, rows = np.zeros(10 * per_row, np.int32), 10
  images = models.sample(generator, variables, labels, seed=config.seed + 1,
                         running_stats=config.eval.sample_with_running_stats)
  return images, rows


def write_sample_grid(writer, directory: str, step: int, images, rows: int) -> None:
  """Writes (N, H, W, 3) images in [-1, 1] as the image summary 'samples' and as
  `directory/samples/step_<step>.png` (enlarged twice); in process 0 only."""
  if not parallel.is_main_process():
    return
  grid = image_grid(images, rows=rows)
  writer.write_images(step, {'samples': grid[None]})
  os.makedirs(os.path.join(directory, 'samples'), exist_ok=True)
  save_png(grid, os.path.join(directory, 'samples', f'step_{step:07d}.png'), scale=2)


def plot_robustness(result: Dict[str, Any], directory: str) -> None:
  """Writes `accuracy_vs_epsilon.png` and `local_lipschitz.png` of a `--mode=eval` result.

  The accuracy plot has train and test curves, per radius (solid, `train_accuracy`,
  `test_accuracy`) and cumulative (dashed, `*_accuracy_cumulative`); the LLV plot compares
  train and test.

  Args:
    result: the dict of `evaluate.evaluate` ('epsilons', the four accuracy lists, with strong
      attacks 'test_accuracy_by_attack' and 'test_accuracy_worst_case', 'llv_train',
      'llv_test', 'stage', 'step').
    directory: an existing directory to write the PNGs into.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(5, 3.5))
  for split, marker, color in (('train', 'o', 'C0'), ('test', 's', 'C1')):
    ax.plot(result['epsilons'], result[f'{split}_accuracy'], f'{marker}-', color=color,
            label=f'{split}, per radius')
    ax.plot(result['epsilons'], result[f'{split}_accuracy_cumulative'], f'{marker}--',
            color=color, fillstyle='none', label=f'{split}, cumulative')
  strong = [n for n in result.get('test_accuracy_by_attack', {}) if n != 'pgd']
  for i, name in enumerate(strong):
    ax.plot(result['epsilons'], result['test_accuracy_by_attack'][name], 'x:',
            color=f'C{i + 2}', label=f'test, {name}')
  if strong:
    ax.plot(result['epsilons'], result['test_accuracy_worst_case'], 'k^-',
            label='test, worst case')
  ax.set_xlabel('L-inf epsilon ([-1, 1] pixel scale)')
  if result['head'] == 'class':
    ax.set_ylabel('accuracy under attack' if strong else 'accuracy under PGD')
  else:
    ax.set_ylabel('source accuracy (real called real) under PGD')
  ax.set_title(f'D classifier, stage {result["stage"]}, step {result["step"]}')
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(os.path.join(directory, 'accuracy_vs_epsilon.png'), dpi=100)
  plt.close(fig)
  fig, ax = plt.subplots(figsize=(3.5, 3.5))
  ax.bar(['train', 'test'], [result['llv_train'], result['llv_test']], color=['C0', 'C1'])
  ax.set_ylabel('mean ||d loss / d x||_2')
  ax.set_title('local Lipschitz value')
  fig.tight_layout()
  fig.savefig(os.path.join(directory, 'local_lipschitz.png'), dpi=100)
  plt.close(fig)
