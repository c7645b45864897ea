"""Splits as evaluation and training read them; the one place the path is decided.

'pad_crop' holds a whole split of images of exactly S x S (S = model.image_size) in memory;
'random_resized_crop' and 'centre_crop' stream images of any size, RGB or grayscale, decoding
only those asked for (evaluation: short side resized to S, centre crop). Images are decoded to
C = `channels` channels (`model.image_channels`: 3, or 1 for a grayscale model). `dataset_config` is
`config.dataset`: `image_folder` if set, else the TFDS data set `name` in `data_dir` (downloaded
if missing and possible); `num_classes` is the number of selected classes, 0: unconditional.
Images are (n, S, S, C) uint8, labels (n,) int32, in the order of `sources`. Every entry
point raises as `load_split`.
"""

import hashlib
from typing import Callable, Iterator, Optional, Tuple, Union

import numpy as np

from rob_gan_jax.input_pipeline import batches
from rob_gan_jax.input_pipeline import folder
from rob_gan_jax.input_pipeline import sources
from rob_gan_jax.input_pipeline import tfds_data
from rob_gan_jax.input_pipeline import transforms

Indices = Union[np.ndarray, slice]


class _InMemorySplit:

  def __init__(self, images: np.ndarray, labels: np.ndarray):
    self.labels, self._images = labels, images

  def images(self, indices: Indices) -> np.ndarray:
    return self._images[indices]  # A slice gives a view.

  def training_data(self, **kwargs) -> batches.TrainingData:
    data = batches.InMemoryTrainingData(self._images, self.labels, **kwargs)
    data.host_batch(0)  # Raises now if the split has fewer examples than a batch.
    return data


class _StreamedSplit:

  def __init__(self, examples: sources.Examples, image_size: int, augment: Callable):
    self.labels, self._examples = examples.labels, examples
    self._image_size, self._augment = image_size, augment

  def images(self, indices: Indices) -> np.ndarray:
    if isinstance(indices, slice):
      indices = np.arange(len(self.labels))[indices]
    return sources.load_examples(self._examples, indices, image_size=self._image_size)

  def training_data(self, **kwargs) -> batches.TrainingData:
    return batches.StreamedTrainingData(self._examples, augment=self._augment, **kwargs)


def _open(dataset_config, split: str, *, image_size: int, num_classes: int, channels: int):
  transforms.check_dataset_config(dataset_config)
  if dataset_config.augmentation == transforms.PAD_CROP:
    return _InMemorySplit(*sources.load_split(dataset_config, split, image_size=image_size,
                                              num_classes=num_classes, channels=channels))
  examples = sources.split_examples(dataset_config, split, num_classes=num_classes,
                                    channels=channels)
  return _StreamedSplit(examples, image_size,
                        transforms.host_augmentation(dataset_config, image_size))


def _open_model_split(config, split: str):
  """`_open` of a split for the images `config.model` takes."""
  m = config.model
  return _open(config.dataset, split, image_size=m.image_size, num_classes=m.num_classes,
               channels=m.image_channels)


def load_split(dataset_config, split: str, *, image_size: int, num_classes: int,
               channels: int = 3) -> Tuple[np.ndarray, np.ndarray]:
  """A whole split in memory, as evaluation sees it: images, labels.

  Raises:
    FileNotFoundError: the data are missing (the message says how to provide them).
    ValueError: bad `augmentation` or `crop_scale`; as `sources.split_examples` and
      `sources.load_split`.
  """
  opened = _open(dataset_config, split, image_size=image_size, num_classes=num_classes,
                 channels=channels)
  return opened.images(slice(None)), opened.labels


def split_chunks(config, split: str, chunk_size: int = 10_000) -> Iterator[np.ndarray]:
  """The images of a split as `config.model` takes them, in chunks; streamed, one at a time is
  decoded (ImageNet, LSUN)."""
  opened = _open_model_split(config, split)
  for start in range(0, len(opened.labels), chunk_size):
    yield opened.images(slice(start, start + chunk_size))


def load_subset(config, split: str,
                num_examples: Optional[int]) -> Tuple[np.ndarray, np.ndarray]:
  """A random subset of `num_examples` (None: all) of a split, fixed by config.seed."""
  opened = _open_model_split(config, split)
  subset = np.random.default_rng(config.seed).permutation(len(opened.labels))[:num_examples]
  return opened.images(subset), opened.labels[subset]


def training_data(config, *, batch_size: int, batches_per_step: int = 1,
                  rows: slice = slice(None)) -> batches.TrainingData:
  """The batches of `config.dataset.train_split` (see `batches`) for `loop.run`.

  The jitted step finishes them with `transforms.augment`.

  Raises:
    As `load_split`; ValueError: the split has fewer than `batch_size` examples.
  """
  return _open_model_split(config, config.dataset.train_split).training_data(
      seed=config.seed, batch_size=batch_size, batches_per_step=batches_per_step, rows=rows)


def data_identity(dataset_config, num_classes: int) -> dict:
  """What the data of `dataset_config` is, wherever it lies, for a run resumed on data that has
  moved (`workdir.check_and_write_config`): for an image folder, per split (train and test) the
  number of images, the selected class folders and a SHA-256 of the listing
  ('<split>/<class>/<file>' names, in reading order); for TFDS, the data set's name, version and
  split sizes. JSON values.

  Raises:
    As `load_split` (the data is missing or unreadable).
  """
  d = dataset_config
  if d.image_folder is None:
    found = tfds_data.builder(d)
    return {'tfds': d.name, 'version': str(found.info.version),
            'splits': {s: found.info.splits[s].num_examples for s in (d.train_split, d.test_split)}}
  identity = {}
  for split in (d.train_split, d.test_split):
    listing = folder.list_split(d, split, num_classes=num_classes)
    classes = sorted({f.split('/')[1] for f in listing.files})
    identity[split] = {'images': len(listing.files), 'classes': classes, 'listing_sha256':
                       hashlib.sha256('\n'.join(listing.files).encode()).hexdigest()}
  return identity
