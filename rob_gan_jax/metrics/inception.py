"""The FID Inception-v3 network in Flax, and loading its converted weights.

This is the network of TensorFlow's 2015-12-05 Inception graph as ported to PyTorch by
pytorch-fid (`FIDInceptionA/C/E`) and torch-fidelity (`feature_extractor_inceptionv3`), the
network behind every published FID and Inception Score: torchvision's Inception-v3 with the
TensorFlow graph's quirks (average pooling that ignores padding in blocks A, C and E_1, max pooling
in the last block's pool branch, BatchNorm epsilon 1e-3, 1008 classes) and TensorFlow-1
bilinear resizing (no half-pixel offset) to 299 x 299.

Weights come from the standard file `pt_inception-2015-12-05-6726825d.pth` (pytorch-fid) or
`weights-inception-2015-12-05-6726825d.pth` (torch-fidelity), converted once to .npz by
`python -m rob_gan_jax.metrics.convert_inception`; this module reads the .npz without torch or
pickle. Parameter names follow the PyTorch modules (`Mixed_5b/branch1x1/conv/kernel`).
"""

import functools
import hashlib
from typing import Any, Dict, Sequence, Tuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

INPUT_SIZE = 299
NUM_LOGITS = 1008


class BasicConv(nn.Module):
  """Conv (no bias) + BatchNorm (inference, eps 1e-3) + ReLU."""
  features: int
  kernel_size: Tuple[int, int]
  strides: Tuple[int, int] = (1, 1)
  padding: Any = 'VALID'

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(self.features, self.kernel_size, self.strides, padding=self.padding,
                use_bias=False, name='conv')(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name='bn')(x)
    return nn.relu(x)


def _pad(kh, kw):
  return ((kh // 2, kh // 2), (kw // 2, kw // 2))


def _conv(features, kh, kw=None, strides=(1, 1), same=True, name=None):
  kw = kh if kw is None else kw
  return BasicConv(features, (kh, kw), strides, _pad(kh, kw) if same else 'VALID', name=name)


def _avg_pool_3x3(x):
  """3x3 stride-1 average pooling that does not count the zero padding (TensorFlow's)."""
  return nn.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3_s2(x):
  return nn.max_pool(x, (3, 3), (2, 2))


class InceptionA(nn.Module):
  pool_features: int

  @nn.compact
  def __call__(self, x):
    b1 = _conv(64, 1, name='branch1x1')(x)
    b5 = _conv(64, 5, name='branch5x5_2')(_conv(48, 1, name='branch5x5_1')(x))
    b3 = _conv(64, 1, name='branch3x3dbl_1')(x)
    b3 = _conv(96, 3, name='branch3x3dbl_3')(_conv(96, 3, name='branch3x3dbl_2')(b3))
    bp = _conv(self.pool_features, 1, name='branch_pool')(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b5, b3, bp], -1)


class InceptionB(nn.Module):

  @nn.compact
  def __call__(self, x):
    b3 = _conv(384, 3, strides=(2, 2), same=False, name='branch3x3')(x)
    bd = _conv(96, 3, name='branch3x3dbl_2')(_conv(64, 1, name='branch3x3dbl_1')(x))
    bd = _conv(96, 3, strides=(2, 2), same=False, name='branch3x3dbl_3')(bd)
    return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], -1)


class InceptionC(nn.Module):
  channels_7x7: int

  @nn.compact
  def __call__(self, x):
    c7 = self.channels_7x7
    b1 = _conv(192, 1, name='branch1x1')(x)
    b7 = _conv(c7, 1, name='branch7x7_1')(x)
    b7 = _conv(c7, 1, 7, name='branch7x7_2')(b7)
    b7 = _conv(192, 7, 1, name='branch7x7_3')(b7)
    bd = _conv(c7, 1, name='branch7x7dbl_1')(x)
    for i, (features, kh, kw) in enumerate([(c7, 7, 1), (c7, 1, 7), (c7, 7, 1), (192, 1, 7)]):
      bd = _conv(features, kh, kw, name=f'branch7x7dbl_{i + 2}')(bd)
    bp = _conv(192, 1, name='branch_pool')(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b7, bd, bp], -1)


class InceptionD(nn.Module):

  @nn.compact
  def __call__(self, x):
    b3 = _conv(192, 1, name='branch3x3_1')(x)
    b3 = _conv(320, 3, strides=(2, 2), same=False, name='branch3x3_2')(b3)
    b7 = _conv(192, 1, name='branch7x7x3_1')(x)
    b7 = _conv(192, 1, 7, name='branch7x7x3_2')(b7)
    b7 = _conv(192, 7, 1, name='branch7x7x3_3')(b7)
    b7 = _conv(192, 3, strides=(2, 2), same=False, name='branch7x7x3_4')(b7)
    return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], -1)


class InceptionE(nn.Module):
  """Blocks Mixed_7b (`max_pool=False`) and Mixed_7c (`max_pool=True`, TF graph's quirk)."""
  max_pool: bool

  @nn.compact
  def __call__(self, x):
    b1 = _conv(320, 1, name='branch1x1')(x)
    b3 = _conv(384, 1, name='branch3x3_1')(x)
    b3 = jnp.concatenate([_conv(384, 1, 3, name='branch3x3_2a')(b3),
                          _conv(384, 3, 1, name='branch3x3_2b')(b3)], -1)
    bd = _conv(384, 3, name='branch3x3dbl_2')(_conv(448, 1, name='branch3x3dbl_1')(x))
    bd = jnp.concatenate([_conv(384, 1, 3, name='branch3x3dbl_3a')(bd),
                          _conv(384, 3, 1, name='branch3x3dbl_3b')(bd)], -1)
    if self.max_pool:
      pooled = nn.max_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)))
    else:
      pooled = _avg_pool_3x3(x)
    bp = _conv(192, 1, name='branch_pool')(pooled)
    return jnp.concatenate([b1, b3, bd, bp], -1)


@functools.lru_cache(maxsize=8)
def _resize_matrix(in_size: int, out_size: int) -> np.ndarray:
  """(out, in) float32 weights of TensorFlow 1's bilinear resize, align_corners=False.

  Source coordinate of output i is i * in / out (no half-pixel offset), interpolated between
  floor and min(floor + 1, in - 1).
  """
  src = np.arange(out_size, dtype=np.float32) * np.float32(in_size / out_size)
  lo = np.floor(src).astype(np.int64)
  hi = np.minimum(lo + 1, in_size - 1)
  frac = src - lo.astype(np.float32)
  matrix = np.zeros((out_size, in_size), np.float32)
  np.add.at(matrix, (np.arange(out_size), lo), 1.0 - frac)
  np.add.at(matrix, (np.arange(out_size), hi), frac)
  return matrix


def resize_bilinear_tf1(x: jax.Array, size: int = INPUT_SIZE) -> jax.Array:
  """TensorFlow-1 bilinear resize of (B, H, W, C) images to (B, size, size, C)."""
  rows = jnp.asarray(_resize_matrix(x.shape[1], size))
  cols = jnp.asarray(_resize_matrix(x.shape[2], size))
  x = jnp.einsum('oh,bhwc->bowc', rows, x, precision=jax.lax.Precision.HIGHEST)
  return jnp.einsum('pw,bowc->bopc', cols, x, precision=jax.lax.Precision.HIGHEST)


class InceptionV3(nn.Module):
  """FID Inception-v3: (B, H, W, 3) float32 in [-1, 1] (`fid.network_input`), any H, W (resized
  to 299 x 299) -> (pool (B, 2048) pool3 features, logits (B, 1008) with the fc bias), float32."""

  @nn.compact
  def __call__(self, x: jax.Array) -> Tuple[jax.Array, jax.Array]:
    x = resize_bilinear_tf1(x)
    x = _conv(32, 3, strides=(2, 2), same=False, name='Conv2d_1a_3x3')(x)
    x = _conv(32, 3, same=False, name='Conv2d_2a_3x3')(x)
    x = _conv(64, 3, name='Conv2d_2b_3x3')(x)
    x = _max_pool_3x3_s2(x)
    x = _conv(80, 1, name='Conv2d_3b_1x1')(x)
    x = _conv(192, 3, same=False, name='Conv2d_4a_3x3')(x)
    x = _max_pool_3x3_s2(x)
    x = InceptionA(32, name='Mixed_5b')(x)
    x = InceptionA(64, name='Mixed_5c')(x)
    x = InceptionA(64, name='Mixed_5d')(x)
    x = InceptionB(name='Mixed_6a')(x)
    for name, c7 in (('Mixed_6b', 128), ('Mixed_6c', 160), ('Mixed_6d', 160), ('Mixed_6e', 192)):
      x = InceptionC(c7, name=name)(x)
    x = InceptionD(name='Mixed_7a')(x)
    x = InceptionE(max_pool=False, name='Mixed_7b')(x)
    x = InceptionE(max_pool=True, name='Mixed_7c')(x)
    pool = jnp.mean(x, axis=(1, 2))
    logits = nn.Dense(NUM_LOGITS, name='fc')(pool)
    return pool, logits


def sha256(path: str) -> str:
  """Hex sha256 of a file, read in 1 MiB blocks."""
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


def abstract_variables() -> Dict[str, Any]:
  """Shapes and dtypes of InceptionV3's {'params', 'batch_stats'} (no compute)."""
  return jax.eval_shape(lambda: InceptionV3().init(jax.random.PRNGKey(0),
                                                   jnp.zeros((1, 75, 75, 3))))


def flat_shapes() -> Dict[str, Tuple[int, ...]]:
  """'params/Mixed_5b/branch1x1/conv/kernel' -> shape, for every variable of InceptionV3."""
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(abstract_variables()), sep='/')
  return {k: tuple(v.shape) for k, v in flat.items()}


def load_variables(path: str) -> Dict[str, Any]:
  """Reads InceptionV3 variables from a .npz written by `convert_inception` (no pickle).

  Raises:
    FileNotFoundError: no such file.
    ValueError: not a readable .npz, or missing, unexpected or mis-shaped arrays.
  """
  expected = flat_shapes()
  try:
    with np.load(path, allow_pickle=False) as data:
      arrays = {k: np.asarray(data[k], np.float32) for k in data.files}
  except FileNotFoundError:
    raise
  except Exception as e:  # zipfile.BadZipFile, EOFError, ValueError, ...
    raise ValueError(f'{path} is not a readable .npz of Inception weights ({type(e).__name__}: '
                     f'{e}); convert the .pth with python -m '
                     'rob_gan_jax.metrics.convert_inception') from e
  check_arrays({k: v.shape for k, v in arrays.items()}, expected, path)
  return flax.traverse_util.unflatten_dict(arrays, sep='/')


def check_arrays(found: Dict[str, Sequence[int]], expected: Dict[str, Sequence[int]],
                 source: str) -> None:
  """Raises ValueError naming missing, unexpected and mis-shaped entries."""
  missing = sorted(set(expected) - set(found))
  extra = sorted(set(found) - set(expected))
  shapes = sorted(k for k in set(found) & set(expected) if tuple(found[k]) != tuple(expected[k]))
  if missing or extra or shapes:
    details = [f'{len(missing)} missing (e.g. {missing[:3]})' if missing else '',
               f'{len(extra)} unexpected (e.g. {extra[:3]})' if extra else '',
               ', '.join(f'{k}: {tuple(found[k])} != {tuple(expected[k])}' for k in shapes[:3])]
    raise ValueError(f'{source} does not hold the FID Inception-v3 weights: '
                     + '; '.join(d for d in details if d))
