"""Fields, layout checks and heads shared by the generator and discriminator architectures.

Every G is called as `G.apply(variables, z, y, train=...)`: z (B, z_dim) float32 latents, y (B,)
int32 labels (ignored, may be None, by an unconditional G) -> (B, S, S, C) float32 images in
[-1, 1], S = bottom_width * 2**num_upsample, C = `channels` (`model.image_channels`). Every D is called as `D.apply(variables, x,
train=...)` on such images -> float32 (source logits (B,), class logits (B, num_classes)), (B, 0)
when num_classes is 0. `train=True` uses (cross-replica) batch statistics and updates BatchNorm
running averages and spectral norm's power iteration (`mutable=['batch_stats']`); `train=False`
changes no state. `width` is the official `ngf` / `ndf`: channels are `width * multiplier`.
"""

from typing import Optional, Sequence, Tuple

import flax.linen as nn
from flax.typing import Dtype
import jax
import jax.numpy as jnp

from rob_gan_jax.models import layers


class GeneratorBase(nn.Module):
  """Fields and layers shared by the generators: `channel_multipliers` give the channels of the
  linear output (a bottom_width^2 map), then of each stage's output; the first `num_upsample`
  stages upsample x2. `bn_momentum` is that of the unconditional BatchNorms."""
  z_dim: int = 128
  width: int = 64
  bottom_width: int = 4
  channel_multipliers: Sequence[int] = (16, 8, 4, 2, 1)
  num_upsample: int = 3
  channels: int = 3
  bn_momentum: float = 0.9
  axis_name: Optional[str] = None
  dtype: Dtype = jnp.float32

  def batch_norm(self, x: jax.Array, train: bool, name: str) -> jax.Array:
    return layers.batch_norm(x, train=train, momentum=self.bn_momentum,
                             axis_name=self.axis_name, dtype=self.dtype, name=name)

  def project_latents(self, z: jax.Array, kernel_init) -> jax.Array:
    """The first layer, 'linear': (B, z_dim) -> (B, bottom_width^2 * channel_multipliers[0] *
    width) features, in the official NCHW order."""
    features = self.bottom_width**2 * self.channel_multipliers[0] * self.width
    return nn.Dense(features, kernel_init=kernel_init, dtype=self.dtype, name='linear')(z)

  def check_every_stage_upsamples(self):
    """Raises ValueError unless num_upsample == len(channel_multipliers) - 1."""
    if self.num_upsample != len(self.channel_multipliers) - 1:
      raise ValueError(f'{type(self).__name__} upsamples in every stage, so num_upsample = '
                       f'{self.num_upsample} must be len(channel_multipliers) - 1 for '
                       f'channel_multipliers={tuple(self.channel_multipliers)}')


class DiscriminatorBase(layers.NormalizedLayers):
  """Block layout (`channel_multipliers` and `downsample`, one entry per block) and the linear
  heads shared by the discriminators; num_classes=0: no class head (unconditional GAN)."""
  num_classes: int = 10
  width: int = 64
  channel_multipliers: Sequence[int] = (2, 2, 2, 2)
  downsample: Sequence[bool] = (True, True, False, False)

  def blocks(self) -> Sequence[Tuple[int, bool]]:
    """(output channels, downsamples) of each block; ValueError if the lengths differ."""
    if not self.downsample or len(self.channel_multipliers) != len(self.downsample):
      raise ValueError('the discriminator needs one channel multiplier per block, got '
                       f'channel_multipliers={tuple(self.channel_multipliers)} and '
                       f'downsample={tuple(self.downsample)}')
    return [(m * self.width, bool(d)) for m, d in zip(self.channel_multipliers, self.downsample)]

  def heads(self, h: jax.Array, train: bool, kernel_init) -> Tuple[jax.Array, jax.Array]:
    """(B, F) features -> float32 source logits (B,), class logits (B, num_classes) or (B, 0)."""
    def head(features, name):
      dense = nn.Dense(features, kernel_init=kernel_init, dtype=self.dtype, name=name)
      return self.layer(dense, h, train).astype(jnp.float32)

    source_logits = head(1, 'source_head')[:, 0]
    if not self.num_classes:
      return source_logits, jnp.zeros((h.shape[0], 0), jnp.float32)
    return source_logits, head(self.num_classes, 'class_head')
