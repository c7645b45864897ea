"""Generators and discriminators of Rob-GAN and AS-GAN (Flax Linen), built by `create_models`.

They follow the official PyTorch code (github.com/xuanqing94/RobGAN): SN-GAN ResNet models with
an AC-GAN class head on D (`resnet`), the pre-activation ResNet D (`preact`) and DCGAN-style
unconditional models (`dcgan`); `base` states the calling conventions, `sampling` runs G outside
co-training. Trainable parameter counts equal the official ones (default config: G 12,272,515,
D 1,056,395); tests/models_test.py pins every official model's. Unconditional GANs (AS-GAN,
arXiv 1912.09670) have `model.num_classes=0`.

Images are NHWC float32 in [-1, 1]. Modules compute in `model.dtype` (float32 or bfloat16) with
float32 parameters, BatchNorm statistics and spectral-norm vectors; G's tanh is float32 and D
casts its logits to float32, so inputs and outputs are float32 whatever the dtype. (XLA:CPU runs
bfloat16 convolutions in float32 on converted operands: the gain is on GPUs and TPUs.)
"""

from typing import Optional, Tuple

import jax.numpy as jnp

from rob_gan_jax.models import base
from rob_gan_jax.models.dcgan import CNNDiscriminator
from rob_gan_jax.models.dcgan import CNNGenerator
from rob_gan_jax.models.preact import PreActResNetDiscriminator
from rob_gan_jax.models.resnet import Discriminator
from rob_gan_jax.models.resnet import Generator
from rob_gan_jax.models.resnet import UnconditionalResNetGenerator

NORMALIZATIONS = ('batch_norm', 'spectral_norm', 'none')
DTYPES = ('float32', 'bfloat16')
GENERATORS = {'resnet': Generator, 'resnet_unsup': UnconditionalResNetGenerator,
              'cnn': CNNGenerator}
DISCRIMINATORS = {'resnet': Discriminator, 'preact_resnet': PreActResNetDiscriminator,
                  'cnn': CNNDiscriminator}


def create_models(model_config,
                  axis_name: Optional[str] = None) -> Tuple[base.GeneratorBase,
                                                           base.DiscriminatorBase]:
  """Builds (G, D) from `config.model`, called as described in `base`.

  Raises:
    ValueError: for an unknown dtype, normalisation or architecture, num_classes < 0, an
      unconditional-only G ('resnet_unsup', 'cnn') with num_classes != 0, or an image size G
      cannot produce. Layouts are checked when the models are first called.
  """
  m = model_config
  if m.dtype not in DTYPES:
    raise ValueError(f'model.dtype must be one of {DTYPES}, got {m.dtype!r}')
  dtype = jnp.dtype(m.dtype)
  if m.normalization not in NORMALIZATIONS:
    raise ValueError(f'model.normalization must be one of {NORMALIZATIONS}, '
                     f'got {m.normalization!r}')
  if m.generator_architecture not in GENERATORS:
    raise ValueError(f'model.generator_architecture must be one of {tuple(GENERATORS)}, '
                     f'got {m.generator_architecture!r}')
  if m.discriminator_architecture not in DISCRIMINATORS:
    raise ValueError('model.discriminator_architecture must be one of '
                     f'{tuple(DISCRIMINATORS)}, got {m.discriminator_architecture!r}')
  if m.image_channels not in (1, 3):
    raise ValueError(f'model.image_channels must be 1 (grayscale) or 3 (RGB), got '
                     f'{m.image_channels}')
  if m.num_classes < 0:
    raise ValueError(f'model.num_classes must be >= 0 (0: unconditional), got {m.num_classes}')
  size = m.bottom_width * 2**m.num_upsample
  if size != m.image_size:
    raise ValueError(f'model.bottom_width * 2**model.num_upsample = {size} must equal '
                     f'model.image_size = {m.image_size}')
  generator_kwargs = dict(
      z_dim=m.z_dim, width=m.generator_width, bottom_width=m.bottom_width,
      channel_multipliers=tuple(m.generator_channel_multipliers), num_upsample=m.num_upsample,
      channels=m.image_channels, bn_momentum=m.bn_momentum, axis_name=axis_name, dtype=dtype)
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
