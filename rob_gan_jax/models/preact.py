"""Pre-activation ResNet discriminator (He et al., 2016), architecture 'preact_resnet'.

Official code: `dis_models/preact_resnet.py` (`PreActResNet18`, the CIFAR-10 D of the official
`finetune.py` and `acc_under_attack.py`). It has no BatchNorm: `normalization` is 'none'
(official) or 'spectral_norm'. Calling conventions are those of `base`.
"""

from typing import Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from rob_gan_jax.models import base
from rob_gan_jax.models import layers


class PreActBlock(layers.NormalizedLayers):
  """Pre-activation basic block with leaky ReLU (`dis_models/preact_resnet.py`, `PreActBlock`);
  conv1 and the 1x1 shortcut conv (of lrelu(x)) are strided by 2 when downsampling."""
  features: int = 64
  downsample: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    stride = 2 if self.downsample else 1
    h = nn.leaky_relu(x, layers.LEAKY_RELU_SLOPE)
    shortcut = x
    if self.downsample or x.shape[-1] != self.features:
      shortcut = self.conv(h, self.features, 1, train, 'conv_shortcut', stride=stride,
                           kernel_init=layers.torch_default_init())
    h = self.conv(h, self.features, 3, train, 'conv1', stride=stride,
                  kernel_init=layers.kaiming_normal_fan_out())
    h = self.conv(nn.leaky_relu(h, layers.LEAKY_RELU_SLOPE), self.features, 3, train, 'conv2',
                  kernel_init=layers.kaiming_normal_fan_out())
    return h + shortcut


class PreActResNetDiscriminator(base.DiscriminatorBase):
  """D(x): 3x3 conv, blocks, global average pooling (the official `avg_pool2d(out, 4)` on a 32 px
  image's 4x4 map), linear heads. Defaults: PreActResNet18 (official width 64 hard-coded).
  Inputs are used as they come ([-1, 1], as in the official scripts)."""
  channel_multipliers: Sequence[int] = (1, 1, 2, 2, 4, 4, 8, 8)
  downsample: Sequence[bool] = (False, False, True, False, True, False, True, False)
  normalization: str = 'none'

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> Tuple[jax.Array, jax.Array]:
    """Raises ValueError with normalization='batch_norm' or an invalid layout."""
    if self.normalization == 'batch_norm':
      raise ValueError("the pre-activation ResNet discriminator has no BatchNorm: use "
                       "normalization='none' (official) or 'spectral_norm'")
    blocks = self.blocks()
    h = self.conv(x.astype(self.dtype), blocks[0][0], 3, train, 'conv_in',
                  kernel_init=layers.torch_default_init())
    for i, (features, down) in enumerate(blocks):
      h = PreActBlock(features=features, downsample=down, normalization=self.normalization,
                      dtype=self.dtype, name=f'block{i + 1}')(h, train=train)
    h = jnp.mean(h, axis=(1, 2))
    return self.heads(h, train, layers.torch_default_init())
