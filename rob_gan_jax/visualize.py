"""Pictures: image grids, PNG files, and the robustness plots of `--mode=eval`."""

import os
from typing import Any, Dict, Optional

import numpy as np

from rob_gan_jax.input_pipeline import transforms


def image_grid(images, rows: int, padding: int = 2) -> np.ndarray:
  """Tiles (N, H, W, C) images in [-1, 1] into one uint8 (rows*(H+p)+p, cols*(W+p)+p, C) image."""
  images = transforms.to_uint8(images)
  n, h, w, c = images.shape
  cols = -(-n // rows)
  grid = np.zeros((rows * (h + padding) + padding, cols * (w + padding) + padding, c), np.uint8)
  for i in range(n):
    r, col = divmod(i, cols)
    top, left = padding + r * (h + padding), padding + col * (w + padding)
    grid[top:top + h, left:left + w] = images[i]
  return grid


def save_png(image: np.ndarray, path: str, scale: Optional[int] = None) -> None:
  """Writes a uint8 (H, W, 3) or grayscale (H, W, 1) image as PNG, optionally enlarged `scale`
  times."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
  if scale:
    pil = pil.resize((image.shape[1] * scale, image.shape[0] * scale), Image.NEAREST)
  pil.save(path)


def plot_robustness(result: Dict[str, Any], directory: str) -> None:
  """Writes `accuracy_vs_epsilon.png` (train and test accuracy per radius, solid, and
  cumulative, dashed; the strong attacks and the worst case) and `local_lipschitz.png` of a
  `--mode=eval` result into the existing `directory`, each if its evaluator ran."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  if 'test_accuracy' in result:
    _plot_accuracy(plt, result, directory)
  if 'llv_train' in result:
    fig, ax = plt.subplots(figsize=(3.5, 3.5))
    ax.bar(['train', 'test'], [result['llv_train'], result['llv_test']], color=['C0', 'C1'])
    ax.set_ylabel('mean ||d loss / d x||_2')
    ax.set_title('local Lipschitz value')
    fig.tight_layout()
    fig.savefig(os.path.join(directory, 'local_lipschitz.png'), dpi=100)
    plt.close(fig)


def _plot_accuracy(plt, result: Dict[str, Any], directory: str) -> None:
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
