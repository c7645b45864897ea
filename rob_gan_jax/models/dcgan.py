"""DCGAN-style unconditional G and D ('cnn' architectures, AS-GAN); calls as in `base`.

Official `gen_models/cnn_32.py` and `dis_models/cnn_32.py` (the defaults), generalised by the
channel multipliers, with the `weights_init` of `train_cifar_nosup.py` (`dcgan_normal` conv
kernels; linears PyTorch's default init; zero biases). Features are flattened and unflattened in
the official NCHW order.
"""

from typing import Optional, Sequence, Tuple

import flax.linen as nn
import jax

from rob_gan_jax.models import base
from rob_gan_jax.models import layers


class CNNGenerator(base.GeneratorBase):
  """G(z): official `Generator`: linear, BatchNorm per feature (`BatchNorm1d`), ReLU; per stage
  a 4x4 stride-2 transposed conv, BatchNorm, ReLU; a 3x3 stride-1 transposed conv -> 3 (`channels`),
  tanh."""
  channel_multipliers: Sequence[int] = (8, 4, 2, 1)

  @nn.compact
  def __call__(self, z: jax.Array, y: Optional[jax.Array] = None, *, train: bool) -> jax.Array:
    """Raises ValueError unless every stage upsamples; y is ignored."""
    del y
    self.check_every_stage_upsamples()
    h = nn.relu(self.batch_norm(self.project_latents(z, layers.torch_default_init()), train, 'bn0'))
    h = layers.maps_from_nchw_features(h, self.bottom_width)
    for i, m in enumerate(self.channel_multipliers[1:], start=1):
      h = layers.ConvTransposeStride2(m * self.width, dtype=self.dtype, name=f'deconv{i}')(h)
      h = nn.relu(self.batch_norm(h, train, f'bn{i}'))
    return layers.tanh_images(
        layers.torch_conv_transpose(self.channels, 3, 1, 1, dtype=self.dtype,
                                    name='deconv_out')(h))


class CNNDiscriminator(base.DiscriminatorBase):
  """D(x): official `Discriminator`: block i is a 3x3 conv to width * channel_multipliers[i],
  then, when downsample[i], a 4x4 stride-2 conv to the next block's width; each conv with bias and
  leaky ReLU 0.2; linear heads on the flattened last map. 'batch_norm' is the official `bn=True`
  (BatchNorm after every conv but the first)."""
  channel_multipliers: Sequence[int] = (1, 2, 4, 8)
  downsample: Sequence[bool] = (True, True, True, False)
  normalization: str = 'none'

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> Tuple[jax.Array, jax.Array]:
    """Raises ValueError for an invalid layout or a last block that downsamples."""
    blocks = self.blocks()
    if blocks[-1][1]:
      raise ValueError('the last CNN discriminator block cannot downsample (there is no next '
                       f'channel multiplier), got downsample={tuple(self.downsample)}')

    def conv(h, features, size, stride, name):
      layer = nn.Conv(features, (size, size), strides=stride, padding=1,
                      kernel_init=layers.dcgan_normal(), dtype=self.dtype, name=name)
      h = self.layer(layer, h, train)
      if name != 'conv0_0':  # Official bn=True: no BatchNorm after the first conv.
        h = self.batch_norm(h, train, f'{name}_bn')
      return nn.leaky_relu(h, layers.LEAKY_RELU_SLOPE)

    h = x.astype(self.dtype)
    for i, (features, down) in enumerate(blocks):
      h = conv(h, features, 3, 1, f'conv{i}_0')
      if down:
        h = conv(h, blocks[i + 1][0], 4, 2, f'conv{i}_1')
    return self.heads(layers.nchw_features(h), train, layers.torch_default_init())
