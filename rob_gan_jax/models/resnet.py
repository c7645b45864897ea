"""SN-GAN ResNet generators and discriminator (Miyato & Koyama, 2018); calls as in `base`.

Official code (github.com/xuanqing94/RobGAN): `gen_models/` and `dis_models/` `resnet_32.py`
(CIFAR-10, the default), `resnet_64.py`, `resnet_small.py` (128 px) and `resnet.py` (ImageNet,
128 px), which differ only in per-block widths and resampling, and `gen_models/resnet_32_unsup.py`
(`UnconditionalResNetGenerator`). With num_classes=0 (AS-GAN) G's blocks use plain BatchNorm (the
official blocks with n_classes=0) and D has no class head. Momenta are the official ones: D's
BatchNorms and G's unconditional ones keep 0.9 old + 0.1 batch (`bn_momentum`), G's
class-conditional ones 0.1 old + 0.9 batch (`conditional_bn_momentum`). G's 1x1 shortcut conv is
applied before the nearest-neighbour upsampling, not after: only float rounding differs.
"""

import functools
from typing import Optional, Sequence, Tuple

import flax.linen as nn
from flax.typing import Dtype
import jax
import jax.numpy as jnp

from rob_gan_jax.models import base
from rob_gan_jax.models import layers


class GeneratorBlock(nn.Module):
  """Pre-activation residual block of the SN-GAN G (`gen_models/resblocks.py`, `Block`); its
  BatchNorms are class-conditional when num_classes > 0, plain affine ones when it is 0."""
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
        return layers.ConditionalBatchNorm(self.num_classes, self.conditional_bn_momentum,
                                           axis_name=self.axis_name, dtype=self.dtype,
                                           name=name)(h, y, train=train)
      return layers.batch_norm(h, train=train, momentum=self.bn_momentum,
                               axis_name=self.axis_name, dtype=self.dtype, name=name)

    conv3x3 = functools.partial(nn.Conv, self.features, (3, 3),
                                kernel_init=layers.xavier_uniform(2.0**0.5), dtype=self.dtype)
    h = nn.relu(bn(x, 'bn1'))
    if self.upsample:
      h = layers.UpsampleConv(self.features, dtype=self.dtype, name='conv1')(h)
    else:
      h = conv3x3(name='conv1')(h)
    h = conv3x3(name='conv2')(nn.relu(bn(h, 'bn2')))
    shortcut = x
    if self.upsample or x.shape[-1] != self.features:
      shortcut = nn.Conv(self.features, (1, 1), kernel_init=layers.xavier_uniform(1.0),
                         dtype=self.dtype, name='conv_shortcut')(x)
      if self.upsample:
        shortcut = layers.upsample_nearest(shortcut)
    return h + shortcut


class Generator(base.GeneratorBase):
  """G(z, y): SN-GAN ResNet generator, class-conditional or (num_classes=0) unconditional.

  Official `gen_models/resnet_32.py` (`ResNetGenerator`): Linear(z_dim -> bottom^2 * 16 ch),
  residual blocks 16ch -> 8ch -> 4ch -> 2ch (upsampling) -> 1ch, final BN, ReLU, conv3x3 -> 3
  (`channels`), tanh; `resnet_64.py`, `resnet_small.py`, `resnet.py`: other multipliers, every block upsampling.
  """
  num_classes: int = 10
  conditional_bn_momentum: float = 0.1

  @nn.compact
  def __call__(self, z: jax.Array, y: Optional[jax.Array] = None, *, train: bool) -> jax.Array:
    """Raises ValueError if the G is class-conditional and y is None."""
    if self.num_classes and y is None:
      raise ValueError(f'this generator is class-conditional ({self.num_classes} classes): '
                       'it needs labels y')
    h = self.project_latents(z, layers.xavier_uniform(1.0))
    # The official code reshapes NCHW; keep its feature order so converted weights would match.
    h = layers.maps_from_nchw_features(h, self.bottom_width)
    for i, m in enumerate(self.channel_multipliers[1:]):
      h = GeneratorBlock(m * self.width, upsample=i < self.num_upsample,
                         num_classes=self.num_classes, bn_momentum=self.bn_momentum,
                         conditional_bn_momentum=self.conditional_bn_momentum,
                         axis_name=self.axis_name, dtype=self.dtype,
                         name=f'block{i + 1}')(h, y, train=train)
    h = self.batch_norm(h, train, 'bn_out')
    h = nn.Conv(self.channels, (3, 3), kernel_init=layers.xavier_uniform(1.0), dtype=self.dtype,
                name='conv_out')(nn.relu(h))
    return layers.tanh_images(h)


class UnconditionalGeneratorBlock(nn.Module):
  """Upsampling residual block of `gen_models/resnet_32_unsup.py` (`UpResBlock`), all 3x3 convs
  to `features` channels (the official block keeps its input's)."""
  features: int
  bn_momentum: float
  axis_name: Optional[str]
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    bn = functools.partial(layers.batch_norm, train=train, momentum=self.bn_momentum,
                           axis_name=self.axis_name, dtype=self.dtype)
    upsample_conv = functools.partial(layers.UpsampleConv, self.features,
                                      kernel_init=layers.dcgan_normal(), dtype=self.dtype)
    h = upsample_conv(name='conv0')(nn.relu(bn(x, name='bn0')))
    h = nn.Conv(self.features, (3, 3), kernel_init=layers.dcgan_normal(), dtype=self.dtype,
                name='conv1')(nn.relu(bn(h, name='bn1')))
    return h + upsample_conv(name='conv_shortcut')(x)


class UnconditionalResNetGenerator(base.GeneratorBase):
  """G(z): unconditional ResNet generator with 3x3 shortcut convs (defaults: `resnet_32_unsup`).

  Official `gen_models/resnet_32_unsup.py` (`ResNetGenerator`), generalised by the multipliers:
  linear, ReLU (no BatchNorm), upsampling blocks, then ReLU before BatchNorm (the official order),
  conv3x3 -> 3, tanh. The official file cannot run as written (its blocks call an undefined
  `upsample`; here nearest-neighbour x2), and its `normal_(w, 0.02)` and `normal_(w, sqrt(1 /
  dim_z))` pass the value as the mean (standard deviation 1); this follows the evident intent:
  N(0, 0.02^2) conv kernels, N(0, 1 / z_dim) linear kernel; zero biases.
  """
  channel_multipliers: Sequence[int] = (4, 4, 4, 4)

  @nn.compact
  def __call__(self, z: jax.Array, y: Optional[jax.Array] = None, *, train: bool) -> jax.Array:
    """Raises ValueError unless every stage upsamples; y is ignored."""
    del y
    self.check_every_stage_upsamples()
    h = self.project_latents(z, nn.initializers.normal(self.z_dim**-0.5))
    h = layers.maps_from_nchw_features(nn.relu(h), self.bottom_width)
    for i, m in enumerate(self.channel_multipliers[1:], start=1):
      h = UnconditionalGeneratorBlock(m * self.width, bn_momentum=self.bn_momentum,
                                      axis_name=self.axis_name, dtype=self.dtype,
                                      name=f'block{i}')(h, train=train)
    h = self.batch_norm(nn.relu(h), train, 'bn_out')
    return layers.tanh_images(nn.Conv(self.channels, (3, 3), kernel_init=layers.dcgan_normal(),
                                      dtype=self.dtype, name='conv_out')(h))


class DiscriminatorBlock(layers.NormalizedLayers):
  """Residual block of D (`dis_models/resblocks.py`, `Block`, or `OptimizedBlock` when
  `optimized`: SN-GAN's first block, no pre-activation). conv1 keeps the input's channels
  (official hidden_channels = in_channels) except in the optimized block."""
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
      h = layers.avg_pool2(h)
    if self.optimized:  # official order: pool, 1x1 conv (, BN)
      return h + self.conv(layers.avg_pool2(x), self.features, 1, train, 'conv_shortcut')
    shortcut = x
    if self.downsample or x.shape[-1] != self.features:  # official order: 1x1 conv (, BN), pool
      shortcut = self.conv(x, self.features, 1, train, 'conv_shortcut')
      if self.downsample:
        shortcut = layers.avg_pool2(shortcut)
    return h + shortcut


class Discriminator(base.DiscriminatorBase):
  """D(x): SN-GAN ResNet discriminator with a source head and an AC-GAN class head.

  Official `dis_models/resnet_32.py` etc. (`ResNetAC`): optimized block (3 -> first width,
  downsampling), residual blocks (2x2 average pooling to downsample), ReLU, global sum pooling,
  two linear heads (no projection). `resnet_32` is widths (2, 2, 2, 2) x ndf, downsampling (T, T,
  F, F); normalization 'batch_norm' is the official CIFAR-10 `bn=True`.
  """

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> Tuple[jax.Array, jax.Array]:
    """Raises ValueError for an invalid layout or a first block that does not downsample."""
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
    return self.heads(h, train, layers.xavier_uniform(1.0))
