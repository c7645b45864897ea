"""Sources: the examples of a split, read by index (`Examples`), and splits read whole.

An image folder's split is `folder.list_split`'s listing on both paths; a TFDS data set is read
whole through `as_dataset` (`tfds_data`) or by index from array_record files. Images come out
(n, S, S, C) uint8 (C = `channels`, decoded to that many), labels (N,) int32. Images that cannot
be read, decoded or (in memory) are not S x S x C raise ValueError naming up to 5 (files relative to the image folder,
'<split>[<index>]' or TFDS ids) and counting them all.
"""

import dataclasses
import os
from typing import Callable, Optional, Tuple

import numpy as np

from rob_gan_jax.input_pipeline import classes
from rob_gan_jax.input_pipeline import errors
from rob_gan_jax.input_pipeline import folder
from rob_gan_jax.input_pipeline import host_tf
from rob_gan_jax.input_pipeline import tfds_data
from rob_gan_jax.input_pipeline import transforms

_BATCH = 256  # Images decoded per tf.data batch.


@dataclasses.dataclass(frozen=True)
class Examples:
  """The examples of a split, read one at a time by index."""
  where: str  # E.g. "split 'train' of '/data/imagenet'", for messages.
  channels: int  # Channels the images are decoded to (`transforms.decode`).
  labels: np.ndarray  # (N,) int32 in 0 .. num_classes - 1 (unconditional: zeros).
  names: Callable[[int], str]  # The name of example i in messages.
  read: Callable  # TF-traceable: int64 scalar index -> tf.string scalar, the encoded image.


def _folder_examples(dataset_config, split: str, num_classes: int, channels: int) -> Examples:
  tf = host_tf.tensorflow()
  listing = folder.list_split(dataset_config, split, num_classes=num_classes)
  paths = tf.constant([os.path.join(listing.root, f) for f in listing.files])
  return Examples(where=listing.where, channels=channels, labels=listing.labels,
                  names=listing.files.__getitem__,
                  read=lambda i: tf.io.read_file(tf.gather(paths, i)))


def _tfds_examples(dataset_config, split: str, num_classes: int, channels: int) -> Examples:
  """Unconditional: every example, labelled 0; the labels are not read."""
  tf = host_tf.tensorflow()
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder, available, selected = tfds_data.open_split(dataset_config, split, num_classes)
  name = dataset_config.name
  try:
    source = builder.as_data_source(split, decoders={'image': tfds.decode.SkipDecoding()})
  except NotImplementedError as e:
    raise ValueError(
        f'dataset.augmentation={dataset_config.augmentation!r} reads examples by index, which '
        f'TFDS offers for data stored as array_record, but {name!r} in {builder.data_dir} is '
        f'stored as {builder.info.file_format.value}. Prepare it with `tfds build {name} '
        '--file_format=array_record` (or `download_and_prepare(file_format=\'array_record\')`) '
        'in another data_dir, or use --config.dataset.image_folder.') from e
  raw = (tfds_data.source_labels(source, name, split) if selected is not None
         else np.zeros(len(source), np.int64))
  labels = classes.relabel(raw, available, selected)
  keys = np.flatnonzero(labels >= 0)
  where = f'split {split!r} of {name!r}'
  if not len(keys):
    raise ValueError(f'{where} has no examples of the selected classes')
  classes.warn_empty_classes(labels[keys], selected, where)

  def read(i):
    encoded = tf.numpy_function(lambda j: source[int(keys[j])]['image'], [i], tf.string,
                                stateful=False)
    return tf.ensure_shape(encoded, [])

  return Examples(where=where, channels=channels, labels=labels[keys],
                  names=lambda i: f'{split}[{keys[i]}]', read=read)


def split_examples(dataset_config, split: str, *, num_classes: int, channels: int) -> Examples:
  """The examples of a split; TFDS labels are read from the whole split (logged).

  Raises:
    FileNotFoundError: the data are missing (the message says how to provide them).
    ValueError: as `folder.list_split` or `classes.model_classes`; unknown split; a conditional
      model and a TFDS data set without a 'label' feature, or not stored as array_record; no
      examples.
  """
  if dataset_config.image_folder:
    return _folder_examples(dataset_config, split, num_classes, channels)
  return _tfds_examples(dataset_config, split, num_classes, channels)


def unusable(examples: Examples, indices: np.ndarray, error: Exception,
             shape: Optional[Tuple[int, ...]] = None) -> Exception:
  """ValueError naming the examples among `indices` that cannot be read or decoded or are not
  `shape`; `error` if there are none."""
  tf = host_tf.tensorflow()
  indices = np.unique(indices)
  decoded = tf.data.Dataset.from_tensor_slices(indices).map(
      lambda i: (i, tf.shape(transforms.decode(examples.read(i), examples.channels))),
      num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()
  found = {int(i): tuple(map(int, s)) for i, s in decoded.as_numpy_iterator()}
  problems = []
  for i in indices.tolist():
    name = examples.names(i)
    if i not in found:
      try:
        examples.read(i).numpy()
      except tf.errors.OpError:
        problems.append(f'{name} cannot be read')
        continue
    problems.append(errors.image_problem(name, found.get(i), shape))
  problems = [p for p in problems if p]
  return errors.unusable_images(examples.where, problems) if problems else error


def load_examples(examples: Examples, indices, *, image_size: int,
                  exact_size: bool = False) -> np.ndarray:
  """Images of `indices`, decoded on parallel tf.data workers: S x S x C if `exact_size` (else
  ValueError), otherwise `transforms.resize_and_centre_crop` (the streaming paths' evaluation)."""
  tf = host_tf.tensorflow()
  shape = (image_size, image_size, examples.channels)

  def image(i):
    decoded = transforms.decode(examples.read(i), examples.channels)
    if exact_size:
      return tf.ensure_shape(decoded, shape)
    return transforms.resize_and_centre_crop(decoded, image_size)

  indices = np.asarray(indices, np.int64)
  ds = tf.data.Dataset.from_tensor_slices(indices).map(
      image, num_parallel_calls=tf.data.AUTOTUNE).batch(_BATCH)
  try:
    batches = list(ds.as_numpy_iterator())
  except tf.errors.OpError as e:
    raise unusable(examples, indices, e, shape if exact_size else None) from None
  return np.concatenate(batches) if batches else np.zeros((0,) + shape, np.uint8)


def load_split(dataset_config, split: str, *, image_size: int, num_classes: int,
               channels: int) -> Tuple[np.ndarray, np.ndarray]:
  """A whole split of S x S x C images (S = image_size, C = channels), decoded once: images,
  labels.

  Raises:
    As `split_examples` (an image folder) or `tfds_data.load_split`.
  """
  if not dataset_config.image_folder:
    return tfds_data.load_split(dataset_config, split, image_size=image_size,
                                num_classes=num_classes, channels=channels)
  examples = _folder_examples(dataset_config, split, num_classes, channels)
  return (load_examples(examples, np.arange(len(examples.labels)), image_size=image_size,
                        exact_size=True), examples.labels)
