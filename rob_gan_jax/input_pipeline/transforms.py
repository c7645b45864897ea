"""Image transforms: on host (TF, per example, before batching) and on device (jittable).

`dataset.augmentation`, as the official `train.py` / `finetune.py` (`make_dataset`) have it:
'pad_crop' (CIFAR-10): zero padding, random crop and flip on device (`augment`);
'random_resized_crop' (ImageNet, dog_and_cat): `random_resized_crop` on host; 'centre_crop'
(the usual CelebA / LSUN GAN preprocessing, not official): `centre_crop_and_flip` on host.
Host transforms map (H, W, C) uint8 tf.Tensors of any size to (S, S, C) uint8 (C: 3, or 1 for
grayscale models), seeded statelessly by a (2,) int64 tf.Tensor per example. On device every path scales to [-1, 1] and,
in co-training only as officially, adds uniform dequantization noise (SN-GAN).
"""

import functools
from typing import Callable, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from rob_gan_jax.input_pipeline import host_tf

PAD_CROP = 'pad_crop'
RANDOM_RESIZED_CROP = 'random_resized_crop'
CENTRE_CROP = 'centre_crop'
AUGMENTATIONS = (PAD_CROP, RANDOM_RESIZED_CROP, CENTRE_CROP)


def check_dataset_config(dataset_config) -> None:
  """Raises ValueError for an unknown `augmentation` or a `crop_scale` outside 0 < lo <= hi <= 1."""
  if dataset_config.augmentation not in AUGMENTATIONS:
    raise ValueError(f'dataset.augmentation must be one of {", ".join(map(repr, AUGMENTATIONS))}, '
                     f'got {dataset_config.augmentation!r}')
  low, high = dataset_config.crop_scale
  if not 0 < low <= high <= 1:
    raise ValueError('dataset.crop_scale must be (low, high) with 0 < low <= high <= 1, got '
                     f'{tuple(dataset_config.crop_scale)}')


def decode(encoded, channels: int):
  """tf.string (JPEG, PNG, GIF or BMP) -> (H, W, channels) uint8: grayscale becomes RGB for 3
  channels, RGB becomes grayscale (luma) for 1."""
  tf = host_tf.tensorflow()
  image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
  return tf.ensure_shape(image, [None, None, channels])


def _saturate_uint8(image):
  tf = host_tf.tensorflow()
  return tf.saturate_cast(tf.round(image), tf.uint8)


def _flip(image, seed, random_flip: bool):
  """Flips left-right with probability 1/2 if `random_flip`, seeded by the flip half of `seed`."""
  tf = host_tf.tensorflow()
  if not random_flip:
    return image
  _, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  return tf.image.stateless_random_flip_left_right(image, flip_seed)


def random_resized_crop(image, seed, *, image_size: int, crop_scale: Tuple[float, float],
                        random_flip: bool):
  """torchvision's `RandomResizedCrop(S, scale=crop_scale, ratio=(1, 1))`, then a flip.

  Resized bilinearly with antialiasing, like PIL. Differs: TF's sampler (10 attempts) draws the
  side uniformly, torchvision the area; where no square fits, both take the centre square.
  """
  tf = host_tf.tensorflow()
  crop_seed, _ = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  shape = tf.shape(image)
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      shape, tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=crop_seed, min_object_covered=0.0,
      aspect_ratio_range=(1.0, 1.0), area_range=tuple(crop_scale), max_attempts=10,
      use_image_if_no_bounding_boxes=True)
  # The sampler falls back to the whole image; torchvision to the centre square.
  side = tf.minimum(shape[0], shape[1])
  whole = tf.reduce_all(size[:2] == shape[:2]) & (shape[0] != shape[1])
  begin = tf.where(whole, tf.stack([(shape[0] - side) // 2, (shape[1] - side) // 2, 0]), begin)
  size = tf.where(whole, tf.stack([side, side, -1]), size)
  x = tf.image.resize(tf.slice(image, begin, size), [image_size, image_size], antialias=True)
  return _saturate_uint8(_flip(x, seed, random_flip))


def resize_and_centre_crop(image, image_size: int):
  """torchvision's `Resize(image_size)` then `CenterCrop(image_size)` (bilinear, antialiased).

  The crop starts at ((H' - S) // 2, (W' - S) // 2) of the resized H' x W' image.
  """
  tf = host_tf.tensorflow()
  shape = tf.cast(tf.shape(image)[:2], tf.float64)
  resized = tf.maximum(tf.cast(tf.round(shape * image_size / tf.reduce_min(shape)), tf.int32),
                       image_size)
  x = tf.image.resize(image, resized, antialias=True)
  return _saturate_uint8(tf.image.resize_with_crop_or_pad(x, image_size, image_size))


def centre_crop_and_flip(image, seed, *, image_size: int, random_flip: bool):
  """`resize_and_centre_crop`, then the flip `random_resized_crop` would make with `seed`."""
  return _flip(resize_and_centre_crop(image, image_size), seed, random_flip)


def host_augmentation(dataset_config, image_size: int) -> Callable:
  """The streaming paths' training augmentation, `augment(image, seed)`."""
  if dataset_config.augmentation == CENTRE_CROP:
    return functools.partial(centre_crop_and_flip, image_size=image_size,
                             random_flip=dataset_config.random_flip)
  return functools.partial(random_resized_crop, image_size=image_size,
                           crop_scale=tuple(dataset_config.crop_scale),
                           random_flip=dataset_config.random_flip)


def to_float(images: jax.Array) -> jax.Array:
  """uint8 images in [0, 255] -> float32 in [-1, 1]."""
  return images.astype(jnp.float32) / 127.5 - 1.0


def to_uint8(images) -> np.ndarray:
  """float images in [-1, 1] -> uint8 in [0, 255] (host numpy)."""
  images = (np.asarray(images, np.float32) + 1.0) * 127.5
  return np.clip(np.round(images), 0, 255).astype(np.uint8)


def augment(images: jax.Array, key: jax.Array, dataset_config, *,
            dequantization_noise: float) -> jax.Array:
  """(B, H, W, C) uint8 -> float32 in [-1, 1 + dequantization_noise), augmented on device.

  'pad_crop': random crop after `crop_padding` zero padding (0: none), flip if `random_flip`.
  Then uniform noise in [0, dequantization_noise) (official co-training: 1/128; fine-tuning: 0).
  """
  on_device = dataset_config.augmentation == PAD_CROP
  crop_key, flip_key, noise_key = jax.random.split(key, 3)
  b, h, w, c = images.shape
  if on_device and dataset_config.crop_padding:
    p = dataset_config.crop_padding
    padded = jnp.pad(images, ((0, 0), (p, p), (p, p), (0, 0)))
    offsets = jax.random.randint(crop_key, (b, 2), 0, 2 * p + 1)
    crop = lambda img, o: jax.lax.dynamic_slice(img, (o[0], o[1], 0), (h, w, c))
    images = jax.vmap(crop)(padded, offsets)
  x = to_float(images)
  if on_device and dataset_config.random_flip:
    flip = jax.random.bernoulli(flip_key, 0.5, (b, 1, 1, 1))
    x = jnp.where(flip, x[:, :, ::-1], x)
  if dequantization_noise:
    x = x + jax.random.uniform(noise_key, x.shape, x.dtype, 0.0, dequantization_noise)
  return x
