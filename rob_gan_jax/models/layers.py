"""Building blocks shared by the generators and discriminators.

Maps are NHWC. A module computes in its `dtype` with float32 parameters cast to it where used;
BatchNorm keeps float32 statistics and running averages, its momentum in Flax's convention
(running = m * old + (1 - m) * batch: PyTorch's momentum is 1 - m). Initialisers are PyTorch's.
"""

from typing import Any, Optional

import flax.linen as nn
from flax.typing import Dtype
import jax
import jax.numpy as jnp

LEAKY_RELU_SLOPE = 0.2  # Official `dis_models/preact_resnet.py` and `dis_models/cnn_32.py`.


def xavier_uniform(gain: float = 1.0):
  """PyTorch's `xavier_uniform_(w, gain)`, the official SN-GAN code's initialiser."""
  return nn.initializers.variance_scaling(gain**2, 'fan_avg', 'uniform')


def torch_default_init():
  """PyTorch's default conv/linear weight init, U(+-1/sqrt(fan_in)) (PyTorch's biases too)."""
  return nn.initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform')


def kaiming_normal_fan_out():
  """PyTorch's `kaiming_normal_(w, mode='fan_out')`: N(0, 2 / fan_out), not truncated."""
  return nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def dcgan_normal():
  """N(0, 0.02^2): the official `weights_init` of convolutions (`train_cifar_nosup.py`)."""
  return nn.initializers.normal(0.02)


def batch_norm(x: jax.Array, *, train: bool, momentum: float, axis_name: Optional[str],
               dtype: Dtype, name: Optional[str] = None, **kwargs) -> jax.Array:
  """`nn.BatchNorm` (epsilon 1e-5 unless given) in a compact method; batch statistics averaged
  over `axis_name` and running averages updated when `train`, running averages when not."""
  return nn.BatchNorm(use_running_average=not train, momentum=momentum,
                      axis_name=axis_name if train else None, dtype=dtype, name=name,
                      **kwargs)(x)


def maps_from_nchw_features(h: jax.Array, size: int) -> jax.Array:
  """(B, C * size * size) features in PyTorch's NCHW `view` order -> (B, size, size, C) maps."""
  h = h.reshape(h.shape[0], -1, size, size)
  return jnp.transpose(h, (0, 2, 3, 1))


def nchw_features(h: jax.Array) -> jax.Array:
  """(B, H, W, C) maps -> (B, C * H * W) features in PyTorch's NCHW `view` order."""
  return jnp.transpose(h, (0, 3, 1, 2)).reshape(h.shape[0], -1)


def tanh_images(h: jax.Array) -> jax.Array:
  """A generator's (B, S, S, C) last map (in its dtype) -> float32 images tanh(h) in [-1, 1]."""
  return jnp.tanh(h.astype(jnp.float32))


def upsample_nearest(x: jax.Array) -> jax.Array:
  """Nearest-neighbour x2 upsampling of NHWC maps (PyTorch `F.upsample(size=2x)`)."""
  x = jnp.repeat(x, 2, axis=1)
  return jnp.repeat(x, 2, axis=2)


def avg_pool2(x: jax.Array) -> jax.Array:
  """PyTorch's `F.avg_pool2d(x, 2)` (an odd last row or column is dropped).

  Four strided slices, not `nn.avg_pool`: XLA:CPU sends a reduce-window, with the convolutions
  around it, to YNNPACK, where they ran about 20 % slower (BENCHMARKS.md, issue 13).
  """
  h, w = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
  return (x[:, 0:h:2, 0:w:2] + x[:, 0:h:2, 1:w:2] + x[:, 1:h:2, 0:w:2] + x[:, 1:h:2, 1:w:2]) / 4


# Output phase a of a stride-2 upsampling reads input rows {i - 1, i} (a = 0) or {i, i + 1}.
PHASE_PADDING = {0: (1, 0), 1: (0, 1)}


def sub_pixel_conv(x: jax.Array, phase_kernel) -> jax.Array:
  """A stride-2 upsampling linear map (N, H, W, C_in) -> (N, 2H, 2W, C_out), much faster on
  XLA:CPU than an input-dilated conv: output phase (a, b), pixels (2i + a, 2j + b), is a 'VALID'
  2x2 conv of x padded by `PHASE_PADDING` with the HWIO kernel `phase_kernel(a, b)`."""
  phases = []
  for a in (0, 1):
    row = [jax.lax.conv_general_dilated(
        x, phase_kernel(a, b).astype(x.dtype), (1, 1), (PHASE_PADDING[a], PHASE_PADDING[b]),
        dimension_numbers=('NHWC', 'HWIO', 'NHWC')) for b in (0, 1)]
    phases.append(jnp.stack(row, axis=3))  # (N, H, W, 2[b], C)
  y = jnp.stack(phases, axis=2)  # (N, H, 2[a], W, 2[b], C)
  n, h, _, w, _, c = y.shape
  return y.reshape(n, 2 * h, 2 * w, c)


class UpsampleConv(nn.Module):
  """The ResNet generators' 'SAME' `conv3x3(upsample_nearest(x))` as a sub-pixel convolution,
  16/36 of the multiply-adds: phase kernels sum taps of the stored (3, 3, in, features) kernel.
  A linear identity: only float rounding differs from the reference."""
  features: int
  use_bias: bool = True
  kernel_init: Any = xavier_uniform(2.0**0.5)
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param('kernel', self.kernel_init, (3, 3, x.shape[-1], self.features))
    # Taps of the 3x3 kernel folded along an axis for phase 0 (input i-1, i) and 1 (i, i+1).
    fold = {0: lambda k: jnp.stack([k[0], k[1] + k[2]]),
            1: lambda k: jnp.stack([k[0] + k[1], k[2]])}
    y = sub_pixel_conv(x.astype(self.dtype), lambda a, b: jnp.swapaxes(
        fold[b](jnp.swapaxes(fold[a](kernel), 0, 1)), 0, 1))
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (self.features,)).astype(self.dtype)
    return y


class ConvTransposeStride2(nn.Module):
  """PyTorch's `nn.ConvTranspose2d(in, features, 4, stride=2, padding=1)` (DCGAN upsampling) as
  a sub-pixel convolution: a quarter of the multiply-adds, no slow dilated path on XLA:CPU.

  PyTorch: out[o] = sum over o = 2i - 1 + k of x[i] * w[k] (per axis), so phase 0 (o = 2m) reads
  x[m - 1], x[m] with taps 3, 1 and phase 1 reads x[m], x[m + 1] with taps 2, 0. Equals
  `nn.ConvTranspose(transpose_kernel=True)` with the same parameters: kernel (4, 4, features,
  in), a PyTorch weight by `transpose(2, 3, 1, 0)`; bias zero-initialised.
  """
  features: int
  kernel_init: Any = dcgan_normal()
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param('kernel', self.kernel_init, (4, 4, self.features, x.shape[-1]))
    # Kernel taps of phase 0 (input offsets -1, 0) and phase 1 (offsets 0, +1).
    taps = {0: jnp.array([3, 1]), 1: jnp.array([2, 0])}
    y = sub_pixel_conv(x.astype(self.dtype),
                       lambda a, b: jnp.swapaxes(kernel[taps[a]][:, taps[b]], 2, 3))
    return y + self.param('bias', nn.initializers.zeros, (self.features,)).astype(self.dtype)


def torch_conv_transpose(features: int, size: int, stride: int, padding: int, *, dtype: Dtype,
                         name: str) -> nn.ConvTranspose:
  """PyTorch's `nn.ConvTranspose2d(in, features, size, stride, padding)`, `dcgan_normal` kernel,
  zero bias: the DCGAN output layer (stride 1). Output size (H - 1) * stride - 2 * padding +
  size; a PyTorch weight maps to the (size, size, features, in) kernel by `transpose(2, 3, 1, 0)`.
  """
  pad = size - 1 - padding  # PyTorch's padding crops the full transposed convolution.
  return nn.ConvTranspose(features, (size, size), strides=(stride, stride),
                          padding=((pad, pad), (pad, pad)), transpose_kernel=True,
                          kernel_init=dcgan_normal(), dtype=dtype, name=name)


class ConditionalBatchNorm(nn.Module):
  """Official `layers/cat_cond_bn.py` (`CatCondBatchNorm2d`): BatchNorm without affine
  parameters, then label embeddings gamma (init 1) and beta (init 0). The default momentum 0.1 is
  official: it passes decay=0.9 as `F.batch_norm`'s momentum, which weights the batch by 0.9."""
  num_classes: int
  momentum: float = 0.1
  epsilon: float = 2e-5
  axis_name: Optional[str] = None
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, y: jax.Array, *, train: bool) -> jax.Array:
    """x: (B, H, W, C); y: (B,) int labels. Returns (B, H, W, C) in `dtype`."""
    x = batch_norm(x, train=train, momentum=self.momentum, axis_name=self.axis_name,
                   dtype=self.dtype, use_scale=False, use_bias=False, epsilon=self.epsilon)
    channels = x.shape[-1]
    gamma = nn.Embed(self.num_classes, channels, embedding_init=nn.initializers.ones,
                     dtype=self.dtype, name='gamma')(y)
    beta = nn.Embed(self.num_classes, channels, embedding_init=nn.initializers.zeros,
                    dtype=self.dtype, name='beta')(y)
    return x * gamma[:, None, None, :] + beta[:, None, None, :]


class NormalizedLayers(nn.Module):
  """Base of the discriminator modules: convs and linears with `normalization`, one of
  'batch_norm' (BatchNorm after every conv), 'spectral_norm' (on every conv and linear) or 'none';
  `axis_name`: mapped axis for cross-replica BatchNorm in training, or None."""
  normalization: str = 'batch_norm'
  bn_momentum: float = 0.9
  axis_name: Optional[str] = None
  dtype: Dtype = jnp.float32

  def layer(self, module: nn.Module, x: jax.Array, train: bool) -> jax.Array:
    """`module(x)`, its kernel spectrally normalised with 'spectral_norm' (power iteration on
    the float32 kernel, float32 `u` and `sigma` updated when `train`)."""
    if self.normalization == 'spectral_norm':
      return nn.SpectralNorm(module)(x, update_stats=train)
    return module(x)

  def batch_norm(self, x: jax.Array, train: bool, name: str) -> jax.Array:
    if self.normalization != 'batch_norm':
      return x
    return batch_norm(x, train=train, momentum=self.bn_momentum, axis_name=self.axis_name,
                      dtype=self.dtype, name=name)

  def conv(self, x, features, size, train, name, *, stride=1, kernel_init=None):
    """Bias-free conv padded by size // 2 as in PyTorch (not 'SAME' at stride 2), then BatchNorm
    `{name}_bn`; default init SN-GAN's xavier_uniform, gain sqrt(2) for 3x3, 1 for 1x1."""
    if kernel_init is None:
      kernel_init = xavier_uniform(2.0**0.5 if size == 3 else 1.0)
    pad = size // 2
    conv = nn.Conv(features, (size, size), strides=(stride, stride),
                   padding=((pad, pad), (pad, pad)), use_bias=False, kernel_init=kernel_init,
                   dtype=self.dtype, name=name)
    return self.batch_norm(self.layer(conv, x, train), train, name=f'{name}_bn')
