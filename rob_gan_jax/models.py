"""Generators and discriminators of Rob-GAN and AS-GAN (Flax Linen).

They follow the official PyTorch code (github.com/xuanqing94/RobGAN): the SN-GAN ResNet models
(Miyato & Koyama, 2018) with an AC-GAN classifier head on the discriminator, `gen_models/` and
`dis_models/` `resnet_32.py` (CIFAR-10, the default), `resnet_64.py`, `resnet_small.py` (128 px)
and `resnet.py` (ImageNet, 128 px), which differ only in per-block widths and resampling
(`config.model` fields), and the pre-activation ResNet discriminator of
`dis_models/preact_resnet.py` (`model.discriminator_architecture='preact_resnet'`). With the
default config the trainable parameter counts are exactly those of the official code: generator
12,272,515 and discriminator 1,056,395 (`normalization='batch_norm'`); tests/models_test.py pins
the config of every official model and its counts.

Unconditional GANs (AS-GAN, arXiv 1912.09670) have `model.num_classes=0`: the SN-GAN ResNet G
then uses plain BatchNorm (official `gen_models/resblocks.py` with n_classes=0) and every D has no
class head (its class logits are (B, 0)). Two more generators and one more discriminator are
unconditional only (`model.generator_architecture` / `discriminator_architecture`): the DCGAN-style
`gen_models/cnn_32.py` and `dis_models/cnn_32.py` ('cnn', `CNNGenerator`, `CNNDiscriminator`) and
`gen_models/resnet_32_unsup.py` ('resnet_unsup', `UnconditionalResNetGenerator`). Every G is
called as `G(z, y, train=...)`; an unconditional G ignores y (which may be None).

Images are NHWC float32 in the pixel range [-1, 1]. Outside co-training (whose steps keep G's
BatchNorm updates) `generate` and `sample` are the one way to run G, keeping no update: the
frozen G of fine-tuning in training mode, and sample grids, FID and notebooks with the statistics
of the batch being generated (the official code never puts G in eval mode) or, optionally, its
running statistics.

Mixed precision: every module computes its activations and convolutions in its `dtype`
(`model.dtype`, float32 or bfloat16), passed down from G and D, while parameters stay float32
(cast to `dtype` where used), BatchNorm computes its statistics in float32 and keeps float32
running averages, and spectral norm runs its power iteration on the float32 kernel and keeps
float32 `u` and `sigma`. G's tanh is taken in float32 and D casts its float32 input images to
`dtype` and its logits back to float32, so the models' inputs and outputs are float32 whatever
the dtype and losses, attacks and metrics need no change. (XLA:CPU runs bfloat16 convolutions
in float32 on converted operands: the gain is on GPUs and TPUs.)

BatchNorm momenta follow the official code: D's BatchNorms and G's unconditional ones keep
running = 0.9 old + 0.1 batch (PyTorch momentum 0.1, `model.bn_momentum`); G's class-conditional
ones keep 0.1 old + 0.9 batch, because `layers/cat_cond_bn.py` passes its decay=0.9 as
`F.batch_norm`'s momentum (`model.conditional_bn_momentum`).

Two rewrites compute exactly the same functions as the reference with less work (they are linear
identities, so only float rounding differs):
- the SN-GAN generator's 1x1 shortcut convolution is applied before nearest-neighbour upsampling
  instead of after it;
- the ResNet generators' "upsample x2 then 3x3 conv" is computed as four 2x2 convolutions on the
  small map, one per output phase (sub-pixel convolution), using 16/36 of the multiply-adds. The
  stored kernel is still the 3x3 kernel of the reference.
"""

import functools
from typing import Any, Optional, Sequence, Tuple

import flax.linen as nn
from flax.typing import Dtype
import jax
import jax.numpy as jnp

NORMALIZATIONS = ('batch_norm', 'spectral_norm', 'none')
DTYPES = ('float32', 'bfloat16')


def xavier_uniform(gain: float = 1.0):
  """PyTorch's `xavier_uniform_(w, gain)`, the official code's initialiser."""
  return nn.initializers.variance_scaling(gain**2, 'fan_avg', 'uniform')


def torch_default_init():
  """PyTorch's default `nn.Conv2d`/`nn.Linear` weight initialiser, U(+-1/sqrt(fan_in)).

  (`kaiming_uniform_(a=sqrt(5))`, variance 1 / (3 fan_in)). Biases start at zero here; PyTorch
  draws them from the same interval.
  """
  return nn.initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform')


def kaiming_normal_fan_out():
  """PyTorch's `kaiming_normal_(w, mode='fan_out')`: N(0, 2 / fan_out), not truncated."""
  return nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def dcgan_normal():
  """Normal, mean 0 and standard deviation 0.02: the official `weights_init` of convolutions.

  (`train_cifar_nosup.py`, applied to the DCGAN-style models.)
  """
  return nn.initializers.normal(0.02)


def batch_norm(x: jax.Array, *, train: bool, momentum: float, axis_name: Optional[str],
               dtype: Dtype, name: Optional[str] = None, **kwargs) -> jax.Array:
  """`nn.BatchNorm` (PyTorch's epsilon 1e-5 unless given) applied inside a compact method.

  Batch statistics averaged over `axis_name` and running averages updated (Flax momentum
  convention) when `train`, running averages when not. The output is in `dtype`; Flax computes
  the statistics and the normalisation in (at least) float32 and keeps float32 running averages
  whatever `dtype`.
  """
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
  """A generator's (B, S, S, 3) last map (in its dtype) -> float32 images tanh(h) in [-1, 1]."""
  return jnp.tanh(h.astype(jnp.float32))


def upsample_nearest(x: jax.Array) -> jax.Array:
  """Nearest-neighbour x2 upsampling of NHWC maps (PyTorch `F.upsample(size=2x)`)."""
  x = jnp.repeat(x, 2, axis=1)
  return jnp.repeat(x, 2, axis=2)


def avg_pool2(x: jax.Array) -> jax.Array:
  """2x2 average pooling with stride 2 of NHWC maps (PyTorch `F.avg_pool2d(x, 2)`: an odd last
  row or column is dropped).

  Written as the mean of four strided slices rather than `nn.avg_pool` (a reduce-window): the
  same sum, which XLA fuses into one elementwise loop. XLA:CPU sends a reduce-window, with the
  convolutions around it, to YNNPACK, where they ran about 20 % slower (BENCHMARKS.md, issue 13).
  """
  h, w = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
  return (x[:, 0:h:2, 0:w:2] + x[:, 0:h:2, 1:w:2] + x[:, 1:h:2, 0:w:2] + x[:, 1:h:2, 1:w:2]) / 4


# Output phase a of a stride-2 upsampling reads input rows {i - 1, i} (a = 0) or {i, i + 1}.
PHASE_PADDING = {0: (1, 0), 1: (0, 1)}


def sub_pixel_conv(x: jax.Array, phase_kernel) -> jax.Array:
  """A stride-2 upsampling linear map computed as four 2x2 convolutions on the small map.

  Output pixel (2i + a, 2j + b) reads input rows {i - 1, i} (a = 0) or {i, i + 1} (a = 1), and
  likewise for columns, so each output phase (a, b) is a 'VALID' 2x2 convolution of x padded by
  `PHASE_PADDING`; the phases are interleaved into the (N, 2H, 2W, C) output. XLA:CPU runs these
  small convolutions much faster than an input-dilated (transposed) convolution.

  Args:
    x: (N, H, W, C_in) maps, in the dtype of the computation.
    phase_kernel: `phase_kernel(a, b)` -> the (2, 2, C_in, C_out) HWIO kernel of phase (a, b),
      cast to x's dtype.

  Returns:
    (N, 2H, 2W, C_out) maps in x's dtype.
  """
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
  """`conv3x3(upsample_nearest(x))` with a 'SAME'-padded 3x3 kernel, computed on the small map.

  Each of the four output phases is a 2x2 convolution whose taps are sums of the 3x3 taps
  (`sub_pixel_conv`). Zero padding of the upsampled map is zero padding of the small map.

  Attributes:
    features: output channels.
    use_bias: whether to add a bias (the generator's convs have one).
    kernel_init: initialiser of the (3, 3, in, out) kernel.
    dtype: dtype of the computation (the float32 kernel is folded, then cast to it).
  """
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
  """PyTorch's `nn.ConvTranspose2d(in, features, 4, stride=2, padding=1)` (DCGAN's upsampling
  layer), computed as four 2x2 convolutions on the input (`sub_pixel_conv`).

  PyTorch: out[o] = sum over i, k with o = 2i - 1 + k of x[i] * w[k] (per axis). Output phase 0
  (o = 2m) reads x[m - 1] with tap 3 and x[m] with tap 1; phase 1 (o = 2m + 1) reads x[m] with
  tap 2 and x[m + 1] with tap 0. The result equals the input-dilated convolution of
  `nn.ConvTranspose(..., transpose_kernel=True)` (the same parameters), without its zeros:
  a quarter of the multiply-adds, and no slow dilated-convolution path on XLA:CPU.

  The kernel is stored as `nn.ConvTranspose(transpose_kernel=True)` stores it, (4, 4, features,
  in): a PyTorch weight (in, features, 4, 4) maps to it by `transpose(2, 3, 1, 0)`.

  Attributes:
    features: output channels.
    kernel_init: initialiser of the kernel (default `dcgan_normal`); the bias starts at zero.
    dtype: dtype of the computation (the float32 parameters are cast to it).
  """
  features: int
  kernel_init: Any = dcgan_normal()
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """(N, H, W, C_in) -> (N, 2H, 2W, features)."""
    kernel = self.param('kernel', self.kernel_init, (4, 4, self.features, x.shape[-1]))
    # Kernel taps of phase 0 (input offsets -1, 0) and phase 1 (offsets 0, +1).
    taps = {0: jnp.array([3, 1]), 1: jnp.array([2, 0])}
    y = sub_pixel_conv(x.astype(self.dtype),
                       lambda a, b: jnp.swapaxes(kernel[taps[a]][:, taps[b]], 2, 3))
    return y + self.param('bias', nn.initializers.zeros, (self.features,)).astype(self.dtype)


class ConditionalBatchNorm(nn.Module):
  """Class-conditional BatchNorm: normalise, then per-class scale and shift.

  Official code: `layers/cat_cond_bn.py` (`CatCondBatchNorm2d`): the normalisation has no affine
  parameters of its own; gamma and beta are embeddings of the label initialised to 1 and 0.

  Attributes:
    num_classes: number of labels.
    momentum: running-average momentum (Flax convention: new = m * old + (1 - m) * batch). The
      default 0.1 is the official code's: it passes decay=0.9 as `F.batch_norm`'s momentum, which
      weights the batch by 0.9.
    epsilon: variance epsilon.
    axis_name: mapped axis over which batch statistics are averaged in training (cross-replica
      BatchNorm), or None.
    dtype: dtype of the output (statistics are float32, see `batch_norm`).
  """
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


class GeneratorBlock(nn.Module):
  """Pre-activation residual block of the SN-GAN generator (`gen_models/resblocks.py`, `Block`).

  Its BatchNorms are class-conditional when `num_classes` > 0 (momentum
  `conditional_bn_momentum`), plain affine ones (`nn.BatchNorm2d`, momentum `bn_momentum`) when
  `num_classes` is 0, as in the official block with n_classes=0; both are named 'bn1' and 'bn2'.
  """
  features: int
  upsample: bool
  num_classes: int
  bn_momentum: float
  conditional_bn_momentum: float
  axis_name: Optional[str]
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, y: Optional[jax.Array], *, train: bool) -> jax.Array:
    def bn(h, name):
      if self.num_classes:
        return ConditionalBatchNorm(self.num_classes, self.conditional_bn_momentum,
                                    axis_name=self.axis_name, dtype=self.dtype,
                                    name=name)(h, y, train=train)
      return batch_norm(h, train=train, momentum=self.bn_momentum, axis_name=self.axis_name,
                        dtype=self.dtype, name=name)

    h = nn.relu(bn(x, 'bn1'))
    if self.upsample:
      h = UpsampleConv(self.features, dtype=self.dtype, name='conv1')(h)
    else:
      h = nn.Conv(self.features, (3, 3), kernel_init=xavier_uniform(2.0**0.5), dtype=self.dtype,
                  name='conv1')(h)
    h = nn.relu(bn(h, 'bn2'))
    h = nn.Conv(self.features, (3, 3), kernel_init=xavier_uniform(2.0**0.5), dtype=self.dtype,
                name='conv2')(h)
    shortcut = x
    if self.upsample or x.shape[-1] != self.features:
      shortcut = nn.Conv(self.features, (1, 1), kernel_init=xavier_uniform(1.0), dtype=self.dtype,
                         name='conv_shortcut')(x)
      if self.upsample:
        shortcut = upsample_nearest(shortcut)
    return h + shortcut


class _GeneratorBase(nn.Module):
  """Fields and layers shared by the generators.

  Every generator is called as `G.apply(variables, z, y, train=...)` with z (B, z_dim) float32
  and returns (B, S, S, 3) float32 images in [-1, 1], S = bottom_width * 2**num_upsample; an
  unconditional one ignores y (which may be None).

  Attributes:
    z_dim: latent size.
    width: `ngf` of the official code; layer channels are `width * channel_multipliers`.
    bottom_width: spatial size after the first linear layer.
    channel_multipliers: channels of the linear output and of each later stage's output, in
      units of `width`. Consecutive entries define the stages (residual or transposed-conv
      blocks).
    num_upsample: how many of the first stages upsample x2.
    bn_momentum: running-average momentum of the unconditional BatchNorms (Flax convention; 0.9
      is PyTorch's 0.1).
    axis_name: mapped axis for cross-replica BatchNorm in training, or None.
    dtype: dtype of the activations and convolutions (the images are float32 whatever it is).
  """
  z_dim: int = 128
  width: int = 64
  bottom_width: int = 4
  channel_multipliers: Sequence[int] = (16, 8, 4, 2, 1)
  num_upsample: int = 3
  bn_momentum: float = 0.9
  axis_name: Optional[str] = None
  dtype: Dtype = jnp.float32

  def batch_norm(self, x: jax.Array, train: bool, name: str) -> jax.Array:
    return batch_norm(x, train=train, momentum=self.bn_momentum, axis_name=self.axis_name,
                      dtype=self.dtype, name=name)

  def check_every_stage_upsamples(self):
    """Raises ValueError unless num_upsample == len(channel_multipliers) - 1."""
    if self.num_upsample != len(self.channel_multipliers) - 1:
      raise ValueError(f'{type(self).__name__} upsamples in every stage, so num_upsample = '
                       f'{self.num_upsample} must be len(channel_multipliers) - 1 for '
                       f'channel_multipliers={tuple(self.channel_multipliers)}')


class Generator(_GeneratorBase):
  """G(z, y): SN-GAN ResNet generator, class-conditional or (num_classes=0) unconditional.

  Official code: `gen_models/resnet_32.py` (`ResNetGenerator`): Linear(z_dim -> bottom^2 * 16 ch),
  residual blocks 16ch -> 8ch -> 4ch -> 2ch (upsampling) -> 1ch, final BN, ReLU, conv3x3 -> 3, tanh.
  `gen_models/resnet_64.py`, `resnet_small.py` and `resnet.py` are the same with other
  `channel_multipliers` and every block upsampling. With num_classes=0 the blocks' BatchNorms are
  plain affine ones (the official blocks with n_classes=0) and the labels are ignored.

  Attributes (besides `_GeneratorBase`'s; `bn_momentum` is that of the last BatchNorm and, when
  unconditional, of the blocks' ones):
    num_classes: number of labels; 0 for an unconditional G.
    conditional_bn_momentum: running-average momentum of the blocks' class-conditional
      BatchNorms (Flax convention; 0.1 is the official code's, see `ConditionalBatchNorm`).
  """
  num_classes: int = 10
  conditional_bn_momentum: float = 0.1

  @nn.compact
  def __call__(self, z: jax.Array, y: Optional[jax.Array] = None, *, train: bool) -> jax.Array:
    """Generates images.

    Args:
      z: (B, z_dim) float32 latent, standard normal.
      y: (B,) int32 labels in [0, num_classes); ignored (may be None) when num_classes is 0.
      train: BatchNorm uses batch statistics (averaged over `axis_name`) and updates its running
        averages (needs `mutable=['batch_stats']`) when True, running averages when False.

    Returns:
      (B, S, S, 3) float32 images in [-1, 1], S = bottom_width * 2**num_upsample.

    Raises:
      ValueError: if the G is class-conditional and y is None.
    """
    if self.num_classes and y is None:
      raise ValueError(f'this generator is class-conditional ({self.num_classes} classes): '
                       'it needs labels y')
    mults = self.channel_multipliers
    h = nn.Dense(self.bottom_width**2 * mults[0] * self.width, kernel_init=xavier_uniform(1.0),
                 dtype=self.dtype, name='linear')(z)
    # The official code reshapes NCHW; keep its feature order so converted weights would match.
    h = maps_from_nchw_features(h, self.bottom_width)
    for i, m in enumerate(mults[1:]):
      h = GeneratorBlock(m * self.width, upsample=i < self.num_upsample,
                         num_classes=self.num_classes, bn_momentum=self.bn_momentum,
                         conditional_bn_momentum=self.conditional_bn_momentum,
                         axis_name=self.axis_name, dtype=self.dtype,
                         name=f'block{i + 1}')(h, y, train=train)
    h = self.batch_norm(h, train, 'bn_out')
    h = nn.Conv(3, (3, 3), kernel_init=xavier_uniform(1.0), dtype=self.dtype,
                name='conv_out')(nn.relu(h))
    return tanh_images(h)


def torch_conv_transpose(features: int, size: int, stride: int, padding: int, *, dtype: Dtype,
                         name: str) -> nn.ConvTranspose:
  """PyTorch's `nn.ConvTranspose2d(in, features, size, stride, padding)` (with bias), for stride 1
  (the DCGAN output layer; `ConvTransposeStride2` is the fast form of the stride-2 ones).

  Output size (H - 1) * stride - 2 * padding + size. The kernel is stored as the (size, size,
  features, in) forward-conv kernel, flipped and transposed when applied (`transpose_kernel`), so
  a PyTorch weight (in, features, size, size) maps to it by `transpose(2, 3, 1, 0)`, as a Conv2d
  weight does. Kernel initialised by `dcgan_normal`, bias zero; computed in `dtype`.
  """
  pad = size - 1 - padding  # PyTorch's padding crops the full transposed convolution.
  return nn.ConvTranspose(features, (size, size), strides=(stride, stride),
                          padding=((pad, pad), (pad, pad)), transpose_kernel=True,
                          kernel_init=dcgan_normal(), dtype=dtype, name=name)


class CNNGenerator(_GeneratorBase):
  """G(z): unconditional DCGAN-style generator with transposed convolutions.

  Official code: `gen_models/cnn_32.py` (`Generator`, with the `weights_init` of
  `train_cifar_nosup.py`), generalised by `channel_multipliers`: Linear(z_dim -> bottom^2 *
  mults[0] * width), BatchNorm per feature (`BatchNorm1d`), ReLU, reshaped in the official NCHW
  feature order; per later entry m of `channel_multipliers` a 4x4 stride-2 transposed conv
  (PyTorch padding 1, doubling the size) to m * width, BatchNorm, ReLU; then a 3x3 stride-1
  transposed conv (padding 1) to 3 channels and tanh. The defaults are `cnn_32` (width 64,
  bottom 4, channel_multipliers (8, 4, 2, 1)). Convolution kernels are normal with standard
  deviation 0.02 (`dcgan_normal`), the linear's PyTorch's default U(+-1/sqrt(fan_in)); biases
  zero, BatchNorm scale 1 and bias 0.

  Attributes: those of `_GeneratorBase`; num_upsample must be len(channel_multipliers) - 1.
  """
  channel_multipliers: Sequence[int] = (8, 4, 2, 1)

  @nn.compact
  def __call__(self, z: jax.Array, y: Optional[jax.Array] = None, *, train: bool) -> jax.Array:
    """Generates images.

    Args:
      z: (B, z_dim) float32 latent, standard normal.
      y: ignored (unconditional); may be None.
      train: BatchNorm uses batch statistics (averaged over `axis_name`) and updates its running
        averages (needs `mutable=['batch_stats']`) when True, running averages when False.

    Returns:
      (B, S, S, 3) float32 images in [-1, 1], S = bottom_width * 2**num_upsample.

    Raises:
      ValueError: if num_upsample != len(channel_multipliers) - 1.
    """
    del y
    self.check_every_stage_upsamples()
    mults = self.channel_multipliers
    h = nn.Dense(self.bottom_width**2 * mults[0] * self.width, kernel_init=torch_default_init(),
                 dtype=self.dtype, name='linear')(z)
    h = nn.relu(self.batch_norm(h, train, 'bn0'))
    h = maps_from_nchw_features(h, self.bottom_width)
    for i, m in enumerate(mults[1:], start=1):
      h = ConvTransposeStride2(m * self.width, dtype=self.dtype, name=f'deconv{i}')(h)
      h = nn.relu(self.batch_norm(h, train, f'bn{i}'))
    return tanh_images(torch_conv_transpose(3, 3, 1, 1, dtype=self.dtype, name='deconv_out')(h))


class UnconditionalGeneratorBlock(nn.Module):
  """Upsampling residual block of `gen_models/resnet_32_unsup.py` (`UpResBlock`).

  out = conv1(relu(bn1(conv0(upsample(relu(bn0(x))))))) + conv_shortcut(upsample(x)), all 3x3
  convs with bias to `features` channels (the official block keeps its input's), kernels
  initialised by `dcgan_normal`.
  """
  features: int
  bn_momentum: float
  axis_name: Optional[str]
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    bn = functools.partial(batch_norm, train=train, momentum=self.bn_momentum,
                           axis_name=self.axis_name, dtype=self.dtype)
    upsample_conv = functools.partial(UpsampleConv, self.features, kernel_init=dcgan_normal(),
                                      dtype=self.dtype)
    h = upsample_conv(name='conv0')(nn.relu(bn(x, name='bn0')))
    h = nn.Conv(self.features, (3, 3), kernel_init=dcgan_normal(), dtype=self.dtype,
                name='conv1')(nn.relu(bn(h, name='bn1')))
    return h + upsample_conv(name='conv_shortcut')(x)


class UnconditionalResNetGenerator(_GeneratorBase):
  """G(z): unconditional ResNet generator with 3x3 shortcut convolutions.

  Official code: `gen_models/resnet_32_unsup.py` (`ResNetGenerator`), generalised by
  `channel_multipliers`: Linear(z_dim -> bottom^2 * mults[0] * width), ReLU (no BatchNorm),
  reshaped in the official NCHW feature order; one upsampling `UnconditionalGeneratorBlock` per
  later entry m of `channel_multipliers` (to m * width channels); then ReLU followed by BatchNorm
  (the official order), a 3x3 conv to 3 channels and tanh. The defaults are `resnet_32_unsup`
  (width 64, bottom 4, channel_multipliers (4, 4, 4, 4)).

  The official file cannot run as written (its blocks call an undefined `upsample`; here it is
  nearest-neighbour x2, the block's own `upsample` method), and its `nn.init.normal_(w, 0.02)`
  and `normal_(w, sqrt(1 / dim_z))` pass the value as the mean: normal with mean 0.02 (resp.
  sqrt(1 / dim_z)) and standard deviation 1. This follows the evident intent instead: normal
  kernels of mean 0 and standard deviation 0.02 for the convolutions, sqrt(1 / z_dim) for the
  linear; biases zero, BatchNorm scale 1 and bias 0.

  Attributes: those of `_GeneratorBase`; num_upsample must be len(channel_multipliers) - 1.
  """
  channel_multipliers: Sequence[int] = (4, 4, 4, 4)

  @nn.compact
  def __call__(self, z: jax.Array, y: Optional[jax.Array] = None, *, train: bool) -> jax.Array:
    """Generates (B, S, S, 3) float32 images in [-1, 1] from (B, z_dim) latents z; y is ignored.

    Arguments and errors as `CNNGenerator.__call__`.
    """
    del y
    self.check_every_stage_upsamples()
    mults = self.channel_multipliers
    h = nn.Dense(self.bottom_width**2 * mults[0] * self.width,
                 kernel_init=nn.initializers.normal(self.z_dim**-0.5), dtype=self.dtype,
                 name='linear')(z)
    h = maps_from_nchw_features(nn.relu(h), self.bottom_width)
    for i, m in enumerate(mults[1:], start=1):
      h = UnconditionalGeneratorBlock(m * self.width, bn_momentum=self.bn_momentum,
                                      axis_name=self.axis_name, dtype=self.dtype,
                                      name=f'block{i}')(h, train=train)
    h = self.batch_norm(nn.relu(h), train, 'bn_out')
    return tanh_images(nn.Conv(3, (3, 3), kernel_init=dcgan_normal(), dtype=self.dtype,
                               name='conv_out')(h))


GENERATORS = {'resnet': Generator, 'resnet_unsup': UnconditionalResNetGenerator,
              'cnn': CNNGenerator}


class _NormalizedLayers(nn.Module):
  """Base for discriminator modules: convs/linears with the chosen normalisation, computed in
  `dtype`."""
  normalization: str = 'batch_norm'
  bn_momentum: float = 0.9
  axis_name: Optional[str] = None
  dtype: Dtype = jnp.float32

  def layer(self, module: nn.Module, x: jax.Array, train: bool) -> jax.Array:
    """`module(x)`, its kernel spectrally normalised with 'spectral_norm'. The power iteration
    runs on the float32 kernel (float32 `u` and `sigma`); `module`, built with `dtype`, casts
    the normalised kernel to it."""
    if self.normalization == 'spectral_norm':
      return nn.SpectralNorm(module)(x, update_stats=train)
    return module(x)

  def batch_norm(self, x: jax.Array, train: bool, name: str) -> jax.Array:
    if self.normalization != 'batch_norm':
      return x
    return batch_norm(x, train=train, momentum=self.bn_momentum, axis_name=self.axis_name,
                      dtype=self.dtype, name=name)

  def conv(self, x, features, size, train, name, *, stride=1, kernel_init=None):
    """Bias-free `size` x `size` conv, padded by size // 2 on every side as in PyTorch (which
    differs from 'SAME' when stride is 2), then BatchNorm named `{name}_bn` with batch norm.
    The default initialiser is the SN-GAN code's (xavier_uniform, gain sqrt(2) for 3x3, 1 for 1x1).
    """
    if kernel_init is None:
      kernel_init = xavier_uniform(2.0**0.5 if size == 3 else 1.0)
    pad = size // 2
    conv = nn.Conv(features, (size, size), strides=(stride, stride),
                   padding=((pad, pad), (pad, pad)), use_bias=False, kernel_init=kernel_init,
                   dtype=self.dtype, name=name)
    return self.batch_norm(self.layer(conv, x, train), train, name=f'{name}_bn')


class DiscriminatorBlock(_NormalizedLayers):
  """Residual block of the discriminator (`dis_models/resblocks.py`, `Block`/`OptimizedBlock`).

  `optimized=True` is SN-GAN's first block (no pre-activation, always downsamples; conv1 maps to
  `features`). Otherwise conv1 keeps the input's channels and conv2 maps to `features`, as the
  official `Block` (hidden_channels = in_channels). With batch norm, each conv is followed by BN,
  as in the official code with `bn=True`.
  """
  features: int = 128
  downsample: bool = False
  optimized: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    h = x if self.optimized else nn.relu(x)
    hidden = self.features if self.optimized else x.shape[-1]
    h = nn.relu(self.conv(h, hidden, 3, train, 'conv1'))
    h = self.conv(h, self.features, 3, train, 'conv2')
    if self.downsample:
      h = avg_pool2(h)
    if self.optimized:  # official order: pool, 1x1 conv (, BN)
      return h + self.conv(avg_pool2(x), self.features, 1, train, 'conv_shortcut')
    shortcut = x
    if self.downsample or x.shape[-1] != self.features:  # official order: 1x1 conv (, BN), pool
      shortcut = self.conv(x, self.features, 1, train, 'conv_shortcut')
      if self.downsample:
        shortcut = avg_pool2(shortcut)
    return h + shortcut


class _DiscriminatorBase(_NormalizedLayers):
  """Block layout and the two linear heads shared by the discriminator architectures."""
  num_classes: int = 10
  width: int = 64
  channel_multipliers: Sequence[int] = (2, 2, 2, 2)
  downsample: Sequence[bool] = (True, True, False, False)

  def blocks(self) -> Sequence[Tuple[int, bool]]:
    """(output channels, downsamples) of each residual block."""
    if not self.downsample or len(self.channel_multipliers) != len(self.downsample):
      raise ValueError('the discriminator needs one channel multiplier per block, got '
                       f'channel_multipliers={tuple(self.channel_multipliers)} and '
                       f'downsample={tuple(self.downsample)}')
    return [(m * self.width, bool(d)) for m, d in zip(self.channel_multipliers, self.downsample)]

  def heads(self, h: jax.Array, train: bool, kernel_init) -> Tuple[jax.Array, jax.Array]:
    """(B, F) features -> float32 source logits (B,) and class logits (B, num_classes).

    The heads compute in `dtype`; their logits are cast to float32. With num_classes=0 there is
    no class head and the class logits are an empty (B, 0) float32 array.
    """
    def head(features, name):
      dense = nn.Dense(features, kernel_init=kernel_init, dtype=self.dtype, name=name)
      return self.layer(dense, h, train).astype(jnp.float32)

    source_logits = head(1, 'source_head')[:, 0]
    if not self.num_classes:
      return source_logits, jnp.zeros((h.shape[0], 0), jnp.float32)
    return source_logits, head(self.num_classes, 'class_head')


class Discriminator(_DiscriminatorBase):
  """D(x): SN-GAN ResNet discriminator with a source head and an AC-GAN class head.

  Official code: `dis_models/resnet_32.py`, `resnet_64.py`, `resnet_small.py`, `resnet.py`
  (`ResNetAC`): an optimized block (3 -> first width, down), residual blocks, ReLU, global sum
  pooling, then two linear heads (plain AC-GAN heads, no projection). They differ only in the
  per-block widths and downsampling; e.g. `resnet_32` is widths (2, 2, 2, 2) x ndf with
  downsampling (T, T, F, F), `resnet_64` (1, 2, 4, 8, 16) x ndf all downsampling.

  Attributes:
    num_classes: size of the class head; 0: no class head (unconditional GAN).
    width: `ndf` of the official code.
    channel_multipliers: output channels of each block, in units of `width`.
    downsample: per block, whether it halves the resolution (2x2 average pooling); the first
      block is SN-GAN's optimized block and must downsample.
    normalization: 'batch_norm' (official CIFAR-10 default; `bn=True`: BN after every conv),
      'spectral_norm' (SN-GAN, `nn.SpectralNorm` on every conv and linear layer) or 'none'.
    bn_momentum: BatchNorm running-average momentum (Flax convention).
    axis_name: mapped axis for cross-replica BatchNorm in training, or None.
    dtype: dtype of the activations and convolutions (inputs and logits are float32).
  """

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> Tuple[jax.Array, jax.Array]:
    """Scores images.

    Args:
      x: (B, H, W, 3) float32 images in [-1, 1].
      train: BatchNorm uses (cross-replica) batch statistics and spectral norm updates its power
        iteration vectors when True (both need `mutable=['batch_stats']`); inference mode when
        False, which changes no state.

    Returns:
      source_logits: (B,) float32 logit of "real".
      class_logits: (B, num_classes) float32 ((B, 0) when num_classes is 0).
    """
    blocks = self.blocks()
    if not blocks[0][1]:
      raise ValueError('the first discriminator block must downsample, got '
                       f'downsample={tuple(self.downsample)}')
    h = x.astype(self.dtype)
    for i, (features, down) in enumerate(blocks):
      h = DiscriminatorBlock(features=features, downsample=down, optimized=i == 0,
                             normalization=self.normalization, bn_momentum=self.bn_momentum,
                             axis_name=self.axis_name, dtype=self.dtype,
                             name=f'block{i + 1}')(h, train=train)
    h = jnp.sum(nn.relu(h), axis=(1, 2))
    return self.heads(h, train, xavier_uniform(1.0))


LEAKY_RELU_SLOPE = 0.2  # Official `dis_models/preact_resnet.py`.


class PreActBlock(_NormalizedLayers):
  """Pre-activation basic block with leaky ReLU (`dis_models/preact_resnet.py`, `PreActBlock`).

  out = conv2(lrelu(conv1(lrelu(x)))) + shortcut, both 3x3 convs bias-free with `features`
  channels, conv1 strided by 2 when downsampling. The shortcut is x, or a bias-free 1x1 conv
  (strided likewise) of lrelu(x) when the block downsamples or changes the channels.
  """
  features: int = 64
  downsample: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    stride = 2 if self.downsample else 1
    h = nn.leaky_relu(x, LEAKY_RELU_SLOPE)
    shortcut = x
    if self.downsample or x.shape[-1] != self.features:
      shortcut = self.conv(h, self.features, 1, train, 'conv_shortcut', stride=stride,
                           kernel_init=torch_default_init())
    h = self.conv(h, self.features, 3, train, 'conv1', stride=stride,
                  kernel_init=kaiming_normal_fan_out())
    h = self.conv(nn.leaky_relu(h, LEAKY_RELU_SLOPE), self.features, 3, train, 'conv2',
                  kernel_init=kaiming_normal_fan_out())
    return h + shortcut


class PreActResNetDiscriminator(_DiscriminatorBase):
  """D(x): pre-activation ResNet (He et al., 2016) with a source head and a class head.

  Official code: `dis_models/preact_resnet.py` (`PreActResNet18`, the CIFAR-10 D of the official
  `finetune.py` and `acc_under_attack.py`): 3x3 conv 3 -> first width, pre-activation basic
  blocks (leaky ReLU 0.2, strided convs to downsample), no activation after the last block,
  average pooling, linear class head and linear source head. It has no BatchNorm; `normalization`
  is 'none' (official) or 'spectral_norm'. The defaults are PreActResNet18 (width 64, two blocks
  per stage of 64, 128, 256, 512 channels). Inputs are used as they come ([-1, 1], as in the
  official scripts; the model has no normalisation layer of its own). The official code pools
  with `avg_pool2d(out, 4)` on the 4x4 map of a 32 px image, i.e. global average pooling, which
  is what this does at every image size.

  Attributes:
    num_classes: size of the class head; 0: no class head (unconditional GAN).
    width: channels are `width * channel_multipliers` (the official code's 64 is hard-coded).
    channel_multipliers: output channels of each block, in units of `width`; the first conv
      outputs `width * channel_multipliers[0]`.
    downsample: per block, whether it halves the resolution (stride 2).
    normalization: 'none' or 'spectral_norm' (on every conv and linear layer).
    dtype: dtype of the activations and convolutions (inputs and logits are float32).
  """
  channel_multipliers: Sequence[int] = (1, 1, 2, 2, 4, 4, 8, 8)
  downsample: Sequence[bool] = (False, False, True, False, True, False, True, False)
  normalization: str = 'none'

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> Tuple[jax.Array, jax.Array]:
    """Scores images.

    Args:
      x: (B, H, W, 3) float32 images in [-1, 1].
      train: spectral norm updates its power iteration vectors when True (needs
        `mutable=['batch_stats']`); no state changes when False.

    Returns:
      source_logits: (B,) float32 logit of "real".
      class_logits: (B, num_classes) float32 ((B, 0) when num_classes is 0).
    """
    if self.normalization == 'batch_norm':
      raise ValueError("the pre-activation ResNet discriminator has no BatchNorm: use "
                       "normalization='none' (official) or 'spectral_norm'")
    blocks = self.blocks()
    h = self.conv(x.astype(self.dtype), blocks[0][0], 3, train, 'conv_in',
                  kernel_init=torch_default_init())
    for i, (features, down) in enumerate(blocks):
      h = PreActBlock(features=features, downsample=down, normalization=self.normalization,
                      dtype=self.dtype, name=f'block{i + 1}')(h, train=train)
    h = jnp.mean(h, axis=(1, 2))
    return self.heads(h, train, torch_default_init())


class CNNDiscriminator(_DiscriminatorBase):
  """D(x): DCGAN-style discriminator with leaky ReLUs and strided convolutions.

  Official code: `dis_models/cnn_32.py` (`Discriminator`, with the `weights_init` of
  `train_cifar_nosup.py`), generalised by `channel_multipliers` and `downsample`: block i is a
  3x3 conv (stride 1, padding 1) to `width * channel_multipliers[i]` channels, followed when
  `downsample[i]` by a 4x4 conv with stride 2 and padding 1 to `width * channel_multipliers[i +
  1]` (halving the size); every conv has a bias and is followed by leaky ReLU 0.2. The last map
  is flattened in the official NCHW order into a linear source head (and, when num_classes > 0,
  a linear class head). The defaults are `cnn_32` (width 64, channel_multipliers (1, 2, 4, 8),
  downsample (True, True, True, False), no normalisation; a 32 px image ends as 4 x 4 x 512).
  Convolution kernels are initialised by `dcgan_normal`, the heads by PyTorch's default
  U(+-1/sqrt(fan_in)), biases zero.

  Attributes:
    num_classes: size of the class head; 0 (the official model): no class head.
    width: `ndf` of the official code.
    channel_multipliers: channels of each block's 3x3 conv, in units of `width`.
    downsample: per block, whether it ends with the strided 4x4 conv; the last block must not.
    normalization: 'none' (official default), 'batch_norm' (official `bn=True`: BatchNorm after
      every conv but the first, before its leaky ReLU) or 'spectral_norm' (on every conv and
      linear layer).
    bn_momentum: BatchNorm running-average momentum (Flax convention).
    axis_name: mapped axis for cross-replica BatchNorm in training, or None.
    dtype: dtype of the activations and convolutions (inputs and logits are float32).
  """
  channel_multipliers: Sequence[int] = (1, 2, 4, 8)
  downsample: Sequence[bool] = (True, True, True, False)
  normalization: str = 'none'

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> Tuple[jax.Array, jax.Array]:
    """Scores (B, H, W, 3) float32 images in [-1, 1], as `Discriminator.__call__` (same `train`
    and results: source logits (B,), class logits (B, num_classes) or (B, 0)).

    Raises:
      ValueError: if channel_multipliers and downsample differ in length or the last block
        downsamples.
    """
    blocks = self.blocks()
    if blocks[-1][1]:
      raise ValueError('the last CNN discriminator block cannot downsample (there is no next '
                       f'channel multiplier), got downsample={tuple(self.downsample)}')

    def conv(h, features, size, stride, name):
      layer = nn.Conv(features, (size, size), strides=stride, padding=1,
                      kernel_init=dcgan_normal(), dtype=self.dtype, name=name)
      h = self.layer(layer, h, train)
      if name != 'conv0_0':  # Official bn=True: no BatchNorm after the first conv.
        h = self.batch_norm(h, train, f'{name}_bn')
      return nn.leaky_relu(h, LEAKY_RELU_SLOPE)

    h = x.astype(self.dtype)
    for i, (features, down) in enumerate(blocks):
      h = conv(h, features, 3, 1, f'conv{i}_0')
      if down:
        h = conv(h, blocks[i + 1][0], 4, 2, f'conv{i}_1')
    return self.heads(nchw_features(h), train, torch_default_init())


DISCRIMINATORS = {'resnet': Discriminator, 'preact_resnet': PreActResNetDiscriminator,
                  'cnn': CNNDiscriminator}


def create_models(model_config,
                  axis_name: Optional[str] = None) -> Tuple[_GeneratorBase, _DiscriminatorBase]:
  """Builds (generator, discriminator) from `config.model`.

  The generator is `GENERATORS[model.generator_architecture]` ('resnet': `Generator`,
  class-conditional or, with model.num_classes=0, unconditional; 'resnet_unsup':
  `UnconditionalResNetGenerator`; 'cnn': `CNNGenerator`), called as
  `G.apply(variables, z, y, train=...)` (y is ignored by an unconditional G) and returning
  (B, image_size, image_size, 3) float32 images in [-1, 1]. The discriminator is
  `DISCRIMINATORS[model.discriminator_architecture]` (`Discriminator`,
  `PreActResNetDiscriminator` or `CNNDiscriminator`), called as `D.apply(variables, x, train=...)`
  and returning (source_logits (B,), class_logits (B, num_classes)), the class logits (B, 0)
  with model.num_classes=0. Both compute in `model.dtype` ('float32', the default when the field
  is missing, as in the config.json of older runs, or 'bfloat16') with float32 parameters, inputs
  and outputs.

  Raises:
    ValueError: for a dtype other than 'float32' and 'bfloat16', an unknown normalisation or
      architecture, a negative number of classes, an unconditional-only generator
      ('resnet_unsup', 'cnn') with model.num_classes != 0, or an image size the generator cannot
      produce. Per-architecture layouts (channel multipliers, downsampling, upsampling) are
      checked when the models are first called.
  """
  m = model_config
  dtype_name = m.get('dtype', 'float32')  # Absent from the config.json of older runs.
  if dtype_name not in DTYPES:
    raise ValueError(f'model.dtype must be one of {DTYPES}, got {dtype_name!r}')
  dtype = jnp.dtype(dtype_name)
  if m.normalization not in NORMALIZATIONS:
    raise ValueError(f'model.normalization must be one of {NORMALIZATIONS}, '
                     f'got {m.normalization!r}')
  if m.generator_architecture not in GENERATORS:
    raise ValueError(f'model.generator_architecture must be one of {tuple(GENERATORS)}, '
                     f'got {m.generator_architecture!r}')
  if m.discriminator_architecture not in DISCRIMINATORS:
    raise ValueError('model.discriminator_architecture must be one of '
                     f'{tuple(DISCRIMINATORS)}, got {m.discriminator_architecture!r}')
  if m.num_classes < 0:
    raise ValueError(f'model.num_classes must be >= 0 (0: unconditional), got {m.num_classes}')
  size = m.bottom_width * 2**m.num_upsample
  if size != m.image_size:
    raise ValueError(f'model.bottom_width * 2**model.num_upsample = {size} must equal '
                     f'model.image_size = {m.image_size}')
  generator_kwargs = dict(
      z_dim=m.z_dim, width=m.generator_width, bottom_width=m.bottom_width,
      channel_multipliers=tuple(m.generator_channel_multipliers), num_upsample=m.num_upsample,
      bn_momentum=m.bn_momentum, axis_name=axis_name, dtype=dtype)
  generator_class = GENERATORS[m.generator_architecture]
  if generator_class is Generator:
    generator_kwargs.update(num_classes=m.num_classes,
                            conditional_bn_momentum=m.conditional_bn_momentum)
  elif m.num_classes:
    raise ValueError(f'model.generator_architecture={m.generator_architecture!r} is '
                     f'unconditional: it needs model.num_classes=0, got {m.num_classes}')
  generator = generator_class(**generator_kwargs)
  discriminator = DISCRIMINATORS[m.discriminator_architecture](
      num_classes=m.num_classes, width=m.discriminator_width,
      channel_multipliers=tuple(m.discriminator_channel_multipliers),
      downsample=tuple(m.discriminator_downsample), normalization=m.normalization,
      bn_momentum=m.bn_momentum, axis_name=axis_name, dtype=dtype)
  return generator, discriminator


@functools.partial(jax.jit, static_argnums=0, static_argnames='train')
def generate(generator: _GeneratorBase, variables, z: jax.Array, y: Optional[jax.Array], *,
             train: bool) -> jax.Array:
  """G(z, y) with G's {'params', 'batch_stats'}, keeping no BatchNorm update.

  Args:
    generator: the G module (any of `GENERATORS`).
    variables: G's {'params', 'batch_stats'}.
    z: (B, z_dim) float32 latents.
    y: (B,) int32 labels; ignored (may be None) by an unconditional G.
    train: batch statistics (averaged over G's `axis_name`, so it must run where that axis is
      bound, e.g. inside a train step) when True; running statistics when False.

  Returns:
    (B, S, S, 3) float32 images in [-1, 1].
  """
  if train:
    return generator.apply(variables, z, y, train=True, mutable=['batch_stats'])[0]
  return generator.apply(variables, z, y, train=False)


def sample(generator: _GeneratorBase, variables, labels, *, seed: int,
           running_stats: bool = False) -> jax.Array:
  """One image per label from G, with latents z ~ N(0, I) drawn from `seed`; keeps no update.

  With `running_stats=False` (the official code's way: it never calls `gen.eval()`, so its sample
  grids and `eval_inception.py` use batch statistics) G runs in training mode on this one batch,
  without cross-device averaging (`axis_name=None`): BatchNorm normalises with the statistics
  of the B images being made, so an image depends on the other latents and labels of the batch
  (and on B). With `running_stats=True` G runs in inference mode and each image depends only on
  its own latent and label (`config.eval.sample_with_running_stats`). An unconditional G ignores
  the labels: they only give the number of images B (e.g. `np.zeros(B)`).

  Args:
    generator: the G module (any of `GENERATORS`).
    variables: G's {'params', 'batch_stats'}.
    labels: (B,) int labels in [0, num_classes) (any B ints for an unconditional G).
    seed: seed of the latents (`jax.random.PRNGKey(seed)`).
    running_stats: BatchNorm uses G's running statistics (True) or the batch's (False).

  Returns:
    (B, S, S, 3) float32 images in [-1, 1].
  """
  labels = jnp.asarray(labels, jnp.int32)
  z = jax.random.normal(jax.random.PRNGKey(seed), (labels.shape[0], generator.z_dim))
  return generate(generator.clone(axis_name=None), variables, z, labels,
                  train=not running_stats)
