"""Generator and discriminator of Rob-GAN (Flax Linen).

They follow the official PyTorch code (github.com/xuanqing94/RobGAN): the SN-GAN ResNet models
(Miyato & Koyama, 2018) with an AC-GAN classifier head on the discriminator, `gen_models/` and
`dis_models/` `resnet_32.py` (CIFAR-10, the default), `resnet_64.py`, `resnet_small.py` (128 px)
and `resnet.py` (ImageNet, 128 px), which differ only in per-block widths and resampling
(`config.model` fields), and the pre-activation ResNet discriminator of
`dis_models/preact_resnet.py` (`model.discriminator_architecture='preact_resnet'`). With the
default config the trainable parameter counts are exactly those of the official code: generator
12,272,515 and discriminator 1,056,395 (`normalization='batch_norm'`); tests/models_test.py pins
the config of every official model and its counts.

Images are NHWC float32 in the pixel range [-1, 1]. Outside co-training (whose steps keep G's
BatchNorm updates) `generate` and `sample` are the one way to run G, keeping no update: the
frozen G of fine-tuning in training mode, and sample grids, FID and notebooks with the statistics
of the batch being generated (the official code never puts G in eval mode) or, optionally, its
running statistics.

BatchNorm momenta follow the official code: D's BatchNorms and G's last one keep running =
0.9 old + 0.1 batch (PyTorch momentum 0.1); G's class-conditional ones keep 0.1 old + 0.9 batch,
because `layers/cat_cond_bn.py` passes its decay=0.9 as `F.batch_norm`'s momentum
(`model.conditional_bn_momentum`).

Two rewrites compute exactly the same functions as the reference with less work (they are linear
identities, so only float rounding differs):
- the generator's 1x1 shortcut convolution is applied before nearest-neighbour upsampling
  instead of after it;
- the generator's "upsample x2 then 3x3 conv" is computed as four 2x2 convolutions on the small
  map, one per output phase (sub-pixel convolution), using 16/36 of the multiply-adds. The stored
  kernel is still the 3x3 kernel of the reference.
"""

import functools
from typing import Any, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

NORMALIZATIONS = ('batch_norm', 'spectral_norm', 'none')


def xavier_uniform(gain: float = 1.0):
  """PyTorch's `xavier_uniform_(w, gain)`, the official code's initialiser."""
  return nn.initializers.variance_scaling(gain**2, 'fan_avg', 'uniform')


def upsample_nearest(x: jax.Array) -> jax.Array:
  """Nearest-neighbour x2 upsampling of NHWC maps (PyTorch `F.upsample(size=2x)`)."""
  x = jnp.repeat(x, 2, axis=1)
  return jnp.repeat(x, 2, axis=2)


def avg_pool2(x: jax.Array) -> jax.Array:
  """2x2 average pooling with stride 2 of NHWC maps (PyTorch `F.avg_pool2d(x, 2)`)."""
  return nn.avg_pool(x, (2, 2), strides=(2, 2))


class UpsampleConv(nn.Module):
  """`conv3x3(upsample_nearest(x))` with a 'SAME'-padded 3x3 kernel, computed on the small map.

  Output pixel (2i + a, 2j + b) only reads input rows {i - 1, i} (a = 0) or {i, i + 1} (a = 1),
  and likewise for columns, so each of the four output phases is a 2x2 convolution whose taps are
  sums of the 3x3 taps. Zero padding of the upsampled map is zero padding of the small map.

  Attributes:
    features: output channels.
    use_bias: whether to add a bias (the generator's convs have one).
    kernel_init: initialiser of the (3, 3, in, out) kernel.
  """
  features: int
  use_bias: bool = True
  kernel_init: Any = xavier_uniform(2.0**0.5)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param('kernel', self.kernel_init, (3, 3, x.shape[-1], self.features))
    # Rows of the 3x3 kernel folded for phase a=0 (input rows i-1, i) and a=1 (rows i, i+1).
    fold = {0: lambda k: jnp.stack([k[0], k[1] + k[2]]),
            1: lambda k: jnp.stack([k[0] + k[1], k[2]])}
    pad = {0: (1, 0), 1: (0, 1)}
    phases = []
    for a in (0, 1):
      row_kernel = fold[a](kernel)
      row = []
      for b in (0, 1):
        k = jnp.swapaxes(fold[b](jnp.swapaxes(row_kernel, 0, 1)), 0, 1)
        row.append(jax.lax.conv_general_dilated(
            x, k, window_strides=(1, 1), padding=(pad[a], pad[b]),
            dimension_numbers=('NHWC', 'HWIO', 'NHWC')))
      phases.append(jnp.stack(row, axis=3))  # (N, H, W, 2[b], C)
    y = jnp.stack(phases, axis=2)  # (N, H, 2[a], W, 2[b], C)
    n, h, _, w, _, c = y.shape
    y = y.reshape(n, 2 * h, 2 * w, c)
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (self.features,))
    return y


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
  """
  num_classes: int
  momentum: float = 0.1
  epsilon: float = 2e-5
  axis_name: Optional[str] = None

  @nn.compact
  def __call__(self, x: jax.Array, y: jax.Array, *, train: bool) -> jax.Array:
    """x: (B, H, W, C) float32; y: (B,) int labels. Returns (B, H, W, C)."""
    x = nn.BatchNorm(use_running_average=not train, use_scale=False, use_bias=False,
                     momentum=self.momentum, epsilon=self.epsilon,
                     axis_name=self.axis_name if train else None)(x)
    channels = x.shape[-1]
    gamma = nn.Embed(self.num_classes, channels, embedding_init=nn.initializers.ones,
                     name='gamma')(y)
    beta = nn.Embed(self.num_classes, channels, embedding_init=nn.initializers.zeros,
                    name='beta')(y)
    return x * gamma[:, None, None, :] + beta[:, None, None, :]


class GeneratorBlock(nn.Module):
  """Pre-activation residual block with class-conditional BN (`gen_models/resblocks.py`)."""
  features: int
  upsample: bool
  num_classes: int
  conditional_bn_momentum: float
  axis_name: Optional[str]

  @nn.compact
  def __call__(self, x: jax.Array, y: jax.Array, *, train: bool) -> jax.Array:
    bn = lambda name: ConditionalBatchNorm(self.num_classes, self.conditional_bn_momentum,
                                           axis_name=self.axis_name, name=name)
    h = nn.relu(bn('bn1')(x, y, train=train))
    if self.upsample:
      h = UpsampleConv(self.features, name='conv1')(h)
    else:
      h = nn.Conv(self.features, (3, 3), kernel_init=xavier_uniform(2.0**0.5), name='conv1')(h)
    h = nn.relu(bn('bn2')(h, y, train=train))
    h = nn.Conv(self.features, (3, 3), kernel_init=xavier_uniform(2.0**0.5), name='conv2')(h)
    shortcut = x
    if self.upsample or x.shape[-1] != self.features:
      shortcut = nn.Conv(self.features, (1, 1), kernel_init=xavier_uniform(1.0),
                         name='conv_shortcut')(x)
      if self.upsample:
        shortcut = upsample_nearest(shortcut)
    return h + shortcut


class Generator(nn.Module):
  """G(z, y): class-conditional SN-GAN ResNet generator.

  Official code: `gen_models/resnet_32.py` (`ResNetGenerator`): Linear(z_dim -> bottom^2 * 16 ch),
  residual blocks 16ch -> 8ch -> 4ch -> 2ch (upsampling) -> 1ch, final BN, ReLU, conv3x3 -> 3, tanh.
  `gen_models/resnet_64.py`, `resnet_small.py` and `resnet.py` are the same with other
  `channel_multipliers` and every block upsampling.

  Attributes:
    num_classes: number of labels.
    z_dim: latent size.
    width: `ngf` of the official code; block channels are `width * channel_multipliers`.
    bottom_width: spatial size after the first linear layer.
    channel_multipliers: channels of the linear output and of each block's output, in units of
      `width`. Consecutive entries define the blocks.
    num_upsample: how many of the first blocks upsample x2 (image size = bottom_width *
      2**num_upsample).
    bn_momentum: running-average momentum of the last (unconditional) BatchNorm (Flax
      convention).
    conditional_bn_momentum: running-average momentum of the blocks' class-conditional
      BatchNorms (Flax convention; 0.1 is the official code's, see `ConditionalBatchNorm`).
    axis_name: mapped axis for cross-replica BatchNorm in training, or None.
  """
  num_classes: int = 10
  z_dim: int = 128
  width: int = 64
  bottom_width: int = 4
  channel_multipliers: Sequence[int] = (16, 8, 4, 2, 1)
  num_upsample: int = 3
  bn_momentum: float = 0.9
  conditional_bn_momentum: float = 0.1
  axis_name: Optional[str] = None

  @nn.compact
  def __call__(self, z: jax.Array, y: jax.Array, *, train: bool) -> jax.Array:
    """Generates images.

    Args:
      z: (B, z_dim) float32 latent, standard normal.
      y: (B,) int32 labels in [0, num_classes).
      train: BatchNorm uses batch statistics (averaged over `axis_name`) and updates its running
        averages (needs `mutable=['batch_stats']`) when True, running averages when False.

    Returns:
      (B, S, S, 3) float32 images in [-1, 1], S = bottom_width * 2**num_upsample.
    """
    mults = self.channel_multipliers
    h = nn.Dense(self.bottom_width**2 * mults[0] * self.width, kernel_init=xavier_uniform(1.0),
                 name='linear')(z)
    # The official code reshapes NCHW; keep its feature order so converted weights would match.
    h = h.reshape(-1, mults[0] * self.width, self.bottom_width, self.bottom_width)
    h = jnp.transpose(h, (0, 2, 3, 1))
    for i, m in enumerate(mults[1:]):
      h = GeneratorBlock(m * self.width, upsample=i < self.num_upsample,
                         num_classes=self.num_classes,
                         conditional_bn_momentum=self.conditional_bn_momentum,
                         axis_name=self.axis_name, name=f'block{i + 1}')(h, y, train=train)
    h = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                     axis_name=self.axis_name if train else None, name='bn_out')(h)
    h = nn.Conv(3, (3, 3), kernel_init=xavier_uniform(1.0), name='conv_out')(nn.relu(h))
    return jnp.tanh(h)


def torch_default_init():
  """PyTorch's default `nn.Conv2d`/`nn.Linear` weight initialiser, U(+-1/sqrt(fan_in)).

  (`kaiming_uniform_(a=sqrt(5))`, variance 1 / (3 fan_in)). Biases start at zero here; PyTorch
  draws them from the same interval.
  """
  return nn.initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform')


def kaiming_normal_fan_out():
  """PyTorch's `kaiming_normal_(w, mode='fan_out')`: N(0, 2 / fan_out), not truncated."""
  return nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


class _NormalizedLayers(nn.Module):
  """Base for discriminator modules: convs/linears with the chosen normalisation."""
  normalization: str = 'batch_norm'
  bn_momentum: float = 0.9
  axis_name: Optional[str] = None

  def layer(self, module: nn.Module, x: jax.Array, train: bool) -> jax.Array:
    if self.normalization == 'spectral_norm':
      return nn.SpectralNorm(module)(x, update_stats=train)
    return module(x)

  def batch_norm(self, x: jax.Array, train: bool, name: str) -> jax.Array:
    if self.normalization != 'batch_norm':
      return x
    return nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                        axis_name=self.axis_name if train else None, name=name)(x)

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
                   name=name)
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
    """(B, F) pooled features -> source logits (B,) and class logits (B, num_classes)."""
    dense = lambda n, name: nn.Dense(n, kernel_init=kernel_init, name=name)
    source_logits = self.layer(dense(1, 'source_head'), h, train)[:, 0]
    class_logits = self.layer(dense(self.num_classes, 'class_head'), h, train)
    return source_logits, class_logits


class Discriminator(_DiscriminatorBase):
  """D(x): SN-GAN ResNet discriminator with a source head and an AC-GAN class head.

  Official code: `dis_models/resnet_32.py`, `resnet_64.py`, `resnet_small.py`, `resnet.py`
  (`ResNetAC`): an optimized block (3 -> first width, down), residual blocks, ReLU, global sum
  pooling, then two linear heads (plain AC-GAN heads, no projection). They differ only in the
  per-block widths and downsampling; e.g. `resnet_32` is widths (2, 2, 2, 2) x ndf with
  downsampling (T, T, F, F), `resnet_64` (1, 2, 4, 8, 16) x ndf all downsampling.

  Attributes:
    num_classes: size of the class head.
    width: `ndf` of the official code.
    channel_multipliers: output channels of each block, in units of `width`.
    downsample: per block, whether it halves the resolution (2x2 average pooling); the first
      block is SN-GAN's optimized block and must downsample.
    normalization: 'batch_norm' (official CIFAR-10 default; `bn=True`: BN after every conv),
      'spectral_norm' (SN-GAN, `nn.SpectralNorm` on every conv and linear layer) or 'none'.
    bn_momentum: BatchNorm running-average momentum (Flax convention).
    axis_name: mapped axis for cross-replica BatchNorm in training, or None.
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
      class_logits: (B, num_classes) float32.
    """
    blocks = self.blocks()
    if not blocks[0][1]:
      raise ValueError('the first discriminator block must downsample, got '
                       f'downsample={tuple(self.downsample)}')
    h = x
    for i, (features, down) in enumerate(blocks):
      h = DiscriminatorBlock(features=features, downsample=down, optimized=i == 0,
                             normalization=self.normalization, bn_momentum=self.bn_momentum,
                             axis_name=self.axis_name, name=f'block{i + 1}')(h, train=train)
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
    num_classes: size of the class head.
    width: channels are `width * channel_multipliers` (the official code's 64 is hard-coded).
    channel_multipliers: output channels of each block, in units of `width`; the first conv
      outputs `width * channel_multipliers[0]`.
    downsample: per block, whether it halves the resolution (stride 2).
    normalization: 'none' or 'spectral_norm' (on every conv and linear layer).
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
      class_logits: (B, num_classes) float32.
    """
    if self.normalization == 'batch_norm':
      raise ValueError("the pre-activation ResNet discriminator has no BatchNorm: use "
                       "normalization='none' (official) or 'spectral_norm'")
    blocks = self.blocks()
    h = self.conv(x, blocks[0][0], 3, train, 'conv_in', kernel_init=torch_default_init())
    for i, (features, down) in enumerate(blocks):
      h = PreActBlock(features=features, downsample=down, normalization=self.normalization,
                      name=f'block{i + 1}')(h, train=train)
    h = jnp.mean(h, axis=(1, 2))
    return self.heads(h, train, torch_default_init())


DISCRIMINATORS = {'resnet': Discriminator, 'preact_resnet': PreActResNetDiscriminator}


def create_models(model_config,
                  axis_name: Optional[str] = None) -> Tuple[Generator, _DiscriminatorBase]:
  """Builds (generator, discriminator) from `config.model`.

  The discriminator is `DISCRIMINATORS[model.discriminator_architecture]` (`Discriminator` or
  `PreActResNetDiscriminator`); both are called as `D.apply(variables, x, train=...)` and return
  (source_logits (B,), class_logits (B, num_classes)).

  Raises:
    ValueError: for an unknown normalisation or discriminator architecture, or an image size the
      generator cannot produce.
  """
  if model_config.normalization not in NORMALIZATIONS:
    raise ValueError(f'model.normalization must be one of {NORMALIZATIONS}, '
                     f'got {model_config.normalization!r}')
  if model_config.discriminator_architecture not in DISCRIMINATORS:
    raise ValueError('model.discriminator_architecture must be one of '
                     f'{tuple(DISCRIMINATORS)}, got {model_config.discriminator_architecture!r}')
  size = model_config.bottom_width * 2**model_config.num_upsample
  if size != model_config.image_size:
    raise ValueError(f'model.bottom_width * 2**model.num_upsample = {size} must equal '
                     f'model.image_size = {model_config.image_size}')
  generator = Generator(
      num_classes=model_config.num_classes, z_dim=model_config.z_dim,
      width=model_config.generator_width, bottom_width=model_config.bottom_width,
      channel_multipliers=tuple(model_config.generator_channel_multipliers),
      num_upsample=model_config.num_upsample, bn_momentum=model_config.bn_momentum,
      conditional_bn_momentum=model_config.conditional_bn_momentum, axis_name=axis_name)
  discriminator = DISCRIMINATORS[model_config.discriminator_architecture](
      num_classes=model_config.num_classes, width=model_config.discriminator_width,
      channel_multipliers=tuple(model_config.discriminator_channel_multipliers),
      downsample=tuple(model_config.discriminator_downsample),
      normalization=model_config.normalization, bn_momentum=model_config.bn_momentum,
      axis_name=axis_name)
  return generator, discriminator


@functools.partial(jax.jit, static_argnums=0, static_argnames='train')
def generate(generator: Generator, variables, z: jax.Array, y: jax.Array, *,
             train: bool) -> jax.Array:
  """G(z, y) with G's {'params', 'batch_stats'}, keeping no BatchNorm update.

  Args:
    generator: the G module.
    variables: G's {'params', 'batch_stats'}.
    z: (B, z_dim) float32 latents.
    y: (B,) int32 labels.
    train: batch statistics (averaged over G's `axis_name`, so it must run where that axis is
      bound, e.g. inside a train step) when True; running statistics when False.

  Returns:
    (B, S, S, 3) float32 images in [-1, 1].
  """
  if train:
    return generator.apply(variables, z, y, train=True, mutable=['batch_stats'])[0]
  return generator.apply(variables, z, y, train=False)


def sample(generator: Generator, variables, labels, *, seed: int,
           running_stats: bool = False) -> jax.Array:
  """One image per label from G, with latents z ~ N(0, I) drawn from `seed`; keeps no update.

  With `running_stats=False` (the official code's way: it never calls `gen.eval()`, so its sample
  grids and `eval_inception.py` use batch statistics) G runs in training mode on this one batch,
  without cross-device averaging (`axis_name=None`): BatchNorm normalises with the statistics
  of the B images being made, so an image depends on the other latents and labels of the batch
  (and on B). With `running_stats=True` G runs in inference mode and each image depends only on
  its own latent and label (`config.eval.sample_with_running_stats`).

  Args:
    generator: the G module.
    variables: G's {'params', 'batch_stats'}.
    labels: (B,) int labels in [0, num_classes).
    seed: seed of the latents (`jax.random.PRNGKey(seed)`).
    running_stats: BatchNorm uses G's running statistics (True) or the batch's (False).

  Returns:
    (B, S, S, 3) float32 images in [-1, 1].
  """
  labels = jnp.asarray(labels, jnp.int32)
  z = jax.random.normal(jax.random.PRNGKey(seed), (labels.shape[0], generator.z_dim))
  return generate(generator.clone(axis_name=None), variables, z, labels,
                  train=not running_stats)
