"""Input pipeline: a whole split read once through TFDS, held as uint8, augmented on device.

CIFAR-10-sized data sets fit in memory, which makes resumption exact: the order of training
examples is a function of (seed, epoch) and the augmentation randomness a function of a key
derived from (seed, step), so a restarted run sees exactly the batches an uninterrupted one would.

Augmentation follows the official code (`train.py`, `make_dataset`): random crop with 4-pixel
zero padding, horizontal flip, scaling to [-1, 1], plus uniform noise in [0, 1/128) (SN-GAN).
"""

import functools
import os
from typing import Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np


def _missing_data_message(dataset_config, reason: str) -> str:
  return (f'{reason}\nProvide the data in one of two ways:\n'
          f'  1. TFDS: on a machine with internet, `tfds.load({dataset_config.name!r})` downloads '
          'it (set --config.dataset.data_dir to use a TFDS data directory other than the '
          'default);\n'
          '  2. an image folder laid out as {train,test}/<class>/*.jpg (class folders sorted in '
          'label order): --config.dataset.image_folder=/path/to/folder.')


def _dataset(dataset_config, split: str):
  """Returns (tf.data.Dataset of dicts with 'image', 'label', 'key', number of classes)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  root = dataset_config.image_folder
  if root:
    if not os.path.isdir(root):
      raise FileNotFoundError(_missing_data_message(
          dataset_config, f'dataset.image_folder={root!r} is not a directory.'))
    builder = tfds.ImageFolder(root)
    key = 'image/filename'
  else:
    builder = tfds.builder(dataset_config.name, data_dir=dataset_config.data_dir)
    if not builder.is_prepared():
      try:
        builder.download_and_prepare()
      except Exception as e:  # Offline, no permission, ... : say how to provide the data.
        raise FileNotFoundError(_missing_data_message(
            dataset_config, f'TFDS data set {dataset_config.name!r} is not prepared in '
            f'{builder.data_dir} and could not be downloaded ({type(e).__name__}: {e}).')) from e
    key = 'id'
  if split not in builder.info.splits:
    raise ValueError(f'split {split!r} does not exist in {root or dataset_config.name!r}; '
                     f'it has {sorted(builder.info.splits)}')
  num_classes = builder.info.features['label'].num_classes
  ds = builder.as_dataset(split=split, shuffle_files=False)
  return ds.map(lambda ex: {'image': ex['image'], 'label': ex['label'], 'key': ex[key]}), num_classes


def load_split(dataset_config, split: str, *, image_size: int,
               num_classes: int) -> Tuple[np.ndarray, np.ndarray]:
  """Reads a whole split into memory, in a canonical order (sorted by file name or TFDS id).

  Args:
    dataset_config: `config.dataset`; `image_folder` (if set) is read with `tfds.ImageFolder`,
      otherwise the TFDS data set `name` (from `data_dir`, downloaded if missing and possible).
    split: split name, e.g. 'train' or 'test'.
    image_size: required height and width.
    num_classes: required number of classes.

  Returns:
    images: (N, image_size, image_size, 3) uint8.
    labels: (N,) int32.

  Raises:
    FileNotFoundError: the data are missing (the message says how to provide them).
    ValueError: unknown split, wrong number of classes, or images that are not
      image_size x image_size x 3.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  ds, found_classes = _dataset(dataset_config, split)
  where = dataset_config.image_folder or dataset_config.name
  if found_classes != num_classes:
    raise ValueError(f'{where!r} has {found_classes} classes, but model.num_classes is '
                     f'{num_classes}')
  shape = (image_size, image_size, 3)
  ds = ds.map(lambda ex: dict(ex, image=tf.ensure_shape(ex['image'], shape)))
  images, labels, keys = [], [], []
  try:
    for batch in tfds.as_numpy(ds.batch(1024)):
      images.append(batch['image'])
      labels.append(batch['label'])
      keys.append(batch['key'])
  except tf.errors.InvalidArgumentError as e:
    raise ValueError(f'images of split {split!r} in {where!r} must all be {shape} '
                     f'(model.image_size={image_size}): {e.message.splitlines()[0]}') from e
  if not images:
    raise ValueError(f'split {split!r} of {where!r} is empty')
  order = np.argsort(np.concatenate(keys), kind='stable')
  return np.concatenate(images)[order], np.concatenate(labels)[order].astype(np.int32)


def load_subset(config, split: str,
                num_examples: Optional[int]) -> Tuple[np.ndarray, np.ndarray]:
  """A fixed random subset of a split, the same for every run of the same `config.seed`.

  Args:
    config: the full config (`dataset`, `model.image_size`, `model.num_classes`, `seed`).
    split: split name.
    num_examples: size of the subset; None = the whole split (in a seeded random order).

  Returns:
    images (n, H, W, 3) uint8 and labels (n,) int32.

  Raises:
    As `load_split`.
  """
  images, labels = load_split(config.dataset, split, image_size=config.model.image_size,
                              num_classes=config.model.num_classes)
  subset = np.random.default_rng(config.seed).permutation(len(labels))[:num_examples]
  return images[subset], labels[subset]


@functools.lru_cache(maxsize=2)
def _permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  return np.random.default_rng([seed, epoch]).permutation(num_examples)


def batch_indices(seed: int, batch_index: int, *, num_examples: int,
                  batch_size: int) -> np.ndarray:
  """Indices of training batch number `batch_index` (0, 1, ... over all epochs).

  Each epoch is a fresh permutation, a function of (seed, epoch); the last partial batch of an
  epoch is dropped.

  Returns:
    (batch_size,) int64 indices into the training split.

  Raises:
    ValueError: the split has fewer than `batch_size` examples.
  """
  batches_per_epoch = num_examples // batch_size
  if batches_per_epoch == 0:
    raise ValueError(f'the training split has {num_examples} examples, fewer than one batch '
                     f'of {batch_size}')
  epoch, i = divmod(batch_index, batches_per_epoch)
  return _permutation(seed, epoch, num_examples)[i * batch_size:(i + 1) * batch_size]


def host_batch(images: np.ndarray, labels: np.ndarray, step: int, *, seed: int, batch_size: int,
               batches_per_step: int = 1) -> Tuple[np.ndarray, np.ndarray]:
  """The training batches of step `step` (0-based): batch numbers step * k, ..., step * k + k - 1.

  A co-training step uses k = n_dis batches (one per D update), a classifier-training step one.

  Args:
    images: (N, H, W, 3) uint8, the whole training split.
    labels: (N,) int32.
    step: 0-based step index.
    seed: the run's seed.
    batch_size: global batch size.
    batches_per_step: k.

  Returns:
    images (k, batch_size, H, W, 3) uint8 and labels (k, batch_size) int32.

  Raises:
    ValueError: the split has fewer than `batch_size` examples.
  """
  idx = np.stack([batch_indices(seed, step * batches_per_step + i, num_examples=len(labels),
                                batch_size=batch_size) for i in range(batches_per_step)])
  return images[idx], labels[idx]


def to_float(images: jax.Array) -> jax.Array:
  """uint8 images in [0, 255] -> float32 in [-1, 1]."""
  return images.astype(jnp.float32) / 127.5 - 1.0


def to_uint8(images) -> np.ndarray:
  """float images in [-1, 1] -> uint8 in [0, 255] (host numpy)."""
  images = (np.asarray(images, np.float32) + 1.0) * 127.5
  return np.clip(np.round(images), 0, 255).astype(np.uint8)


def augment(images: jax.Array, key: jax.Array, *, crop_padding: int, random_flip: bool,
            dequantization_noise: float) -> jax.Array:
  """Training augmentation, jittable.

  Args:
    images: (B, H, W, 3) uint8.
    key: PRNG key.
    crop_padding: zero padding (black pixels) before a random H x W crop; 0 disables.
    random_flip: flip each image horizontally with probability 1/2.
    dequantization_noise: add uniform noise in [0, this) after scaling to [-1, 1].

  Returns:
    (B, H, W, 3) float32 in [-1, 1 + dequantization_noise).
  """
  crop_key, flip_key, noise_key = jax.random.split(key, 3)
  b, h, w, c = images.shape
  if crop_padding:
    p = crop_padding
    padded = jnp.pad(images, ((0, 0), (p, p), (p, p), (0, 0)))
    offsets = jax.random.randint(crop_key, (b, 2), 0, 2 * p + 1)
    crop = lambda img, o: jax.lax.dynamic_slice(img, (o[0], o[1], 0), (h, w, c))
    images = jax.vmap(crop)(padded, offsets)
  x = to_float(images)
  if random_flip:
    flip = jax.random.bernoulli(flip_key, 0.5, (b, 1, 1, 1))
    x = jnp.where(flip, x[:, :, ::-1], x)
  if dequantization_noise:
    x = x + jax.random.uniform(noise_key, x.shape, x.dtype, 0.0, dequantization_noise)
  return x
