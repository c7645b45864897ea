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

from absl import logging
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


def _listed(items, limit: int = 5) -> str:
  """The first `limit` items joined by '; ', with a count of the rest."""
  more = f'; ... and {len(items) - limit} more' if len(items) > limit else ''
  return '; '.join(items[:limit]) + more


def _subfolders(path: str):
  return sorted(entry.name for entry in os.scandir(path) if entry.is_dir())


def _check_class_folders(root: str) -> None:
  """Raises ValueError unless every split folder of `root` has the same class folders.

  (`tfds.ImageFolder` would silently take the union of the class folders of all splits.)
  """
  classes = {split: set(_subfolders(os.path.join(root, split))) for split in _subfolders(root)}
  differences = []
  for name in sorted(set().union(*classes.values())):
    having = [f'{split}/' for split in classes if name in classes[split]]
    lacking = [f'{split}/' for split in classes if name not in classes[split]]
    if lacking:
      differences.append(f'{name!r} is in {", ".join(having)} but not in {", ".join(lacking)}')
  if differences:
    raise ValueError(f'the splits of dataset.image_folder={root!r} must have the same class '
                     f'folders, but {len(differences)} differ: {_listed(differences)}')


def _builder(dataset_config):
  """The TFDS builder of the data and the feature that names an example (file name or TFDS id)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  root = dataset_config.image_folder
  if root:
    if not os.path.isdir(root):
      raise FileNotFoundError(_missing_data_message(
          dataset_config, f'dataset.image_folder={root!r} is not a directory.'))
    _check_class_folders(root)
    return tfds.ImageFolder(root), 'image/filename'
  builder = tfds.builder(dataset_config.name, data_dir=dataset_config.data_dir)
  if not builder.is_prepared():
    try:
      builder.download_and_prepare()
    except Exception as e:  # Offline, no permission, ... : say how to provide the data.
      raise FileNotFoundError(_missing_data_message(
          dataset_config, f'TFDS data set {dataset_config.name!r} is not prepared in '
          f'{builder.data_dir} and could not be downloaded ({type(e).__name__}: {e}).')) from e
  return builder, 'id'


def _bad_images(builder, split: str, key: str, root: Optional[str], shape) -> list:
  """Slow diagnosis: '<file or id> <problem>' for each image of `split` that is not `shape`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  decode = builder.info.features['image'].decode_example
  undecoded = builder.as_dataset(split=split, shuffle_files=False,
                                 decoders={'image': tfds.decode.SkipDecoding()})
  bad = []
  for ex in undecoded:
    name = ex[key].numpy().decode()
    if root:
      name = os.path.relpath(name, root)
    try:
      found = tuple(decode(ex['image']).shape)
    except tf.errors.InvalidArgumentError:
      bad.append(f'{name} cannot be decoded')
    else:
      if found != shape:
        bad.append(f'{name} has shape {found}, expected {shape}')
  return sorted(bad)


def load_split(dataset_config, split: str, *, image_size: int,
               num_classes: int) -> Tuple[np.ndarray, np.ndarray]:
  """Reads a whole split into memory, in a canonical order (sorted by file name or TFDS id).

  Logs a warning (absl) naming the classes, for an image folder the class folders, of which the
  split has no examples.

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
    ValueError: unknown split, wrong number of classes, an image folder whose splits have
      different class folders (the message names them), images that cannot be decoded or are
      not image_size x image_size x 3 (the message names up to 5 files or TFDS ids and counts
      them all), or an empty split.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder, key = _builder(dataset_config)
  root = dataset_config.image_folder
  where = root or dataset_config.name
  if split not in builder.info.splits:
    raise ValueError(f'split {split!r} does not exist in {where!r}; '
                     f'it has {sorted(builder.info.splits)}')
  class_names = builder.info.features['label'].names
  if len(class_names) != num_classes:
    raise ValueError(f'{where!r} has {len(class_names)} classes, but model.num_classes is '
                     f'{num_classes}')
  shape = (image_size, image_size, 3)
  ds = builder.as_dataset(split=split, shuffle_files=False).map(
      lambda ex: {'image': tf.ensure_shape(ex['image'], shape), 'label': ex['label'],
                  'key': ex[key]})
  images, labels, keys = [], [], []
  try:
    for batch in tfds.as_numpy(ds.batch(1024)):
      images.append(batch['image'])
      labels.append(batch['label'])
      keys.append(batch['key'])
  except tf.errors.InvalidArgumentError:
    bad = _bad_images(builder, split, key, root, shape)
    if not bad:
      raise
    raise ValueError(f'{len(bad)} image(s) of split {split!r} in {where!r} cannot be read as '
                     f'{shape} (model.image_size={image_size}): {_listed(bad)}') from None
  if not images:
    raise ValueError(f'split {split!r} of {where!r} is empty')
  order = np.argsort(np.concatenate(keys), kind='stable')
  labels = np.concatenate(labels)[order].astype(np.int32)
  empty = [os.path.join(root, split, class_names[c]) if root else class_names[c]
           for c in np.flatnonzero(np.bincount(labels, minlength=num_classes) == 0)]
  if empty:
    logging.warning('split %r of %r has no examples of %d class(es)%s: %s', split, where,
                    len(empty), ' (class folders without .jpg/.jpeg/.png files)' if root else '',
                    ', '.join(empty))
  return np.concatenate(images)[order], labels


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
