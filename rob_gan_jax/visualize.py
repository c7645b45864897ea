"""Pictures: image grids, PNG files, and the plots of `--mode=eval`."""

from typing import Any, Callable, Optional, Sequence

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


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def save_plot(draw: Callable[[Any], None], path: str) -> None:
  """Writes the plot `draw(ax)` makes on a small matplotlib Axes as PNG."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(3.5, 3.5))
  draw(ax)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def plot_curves(curves: Sequence[Any], epsilons: Sequence[float], path: str, *, title: str,
                ylabel: str) -> None:
  """Writes accuracy per radius, one line per `evaluators.Curve` (label, values, style), as PNG."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(5, 3.5))
  for curve in curves:
    ax.plot(list(epsilons), curve.values, curve.style, label=curve.label,
            fillstyle='none' if '--' in curve.style else 'full')
  ax.set_xlabel('L-inf epsilon ([-1, 1] pixel scale)')
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
