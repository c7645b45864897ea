"""TFDS data sets: the builder, a whole split in memory (`as_dataset`), labels of a data source.

In memory, examples are sorted by the 'id' feature (e.g. cifar10) or, for data sets without
one (lsun, celeb_a, mnist), by TFDS's 'tfds_id' ('<file>__<index>'), which also name them in
errors. Streamed, they are read by index from array_record files (`sources.split_examples`).
"""

import socket
from typing import Tuple
import urllib.parse
import urllib.request

from absl import logging
import numpy as np

from rob_gan_jax.input_pipeline import classes
from rob_gan_jax.input_pipeline import errors
from rob_gan_jax.input_pipeline import host_tf


def is_prepared(dataset_config) -> bool:
  """Whether `dataset.name` is prepared in `dataset.data_dir` (nothing is downloaded)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return tfds.builder(dataset_config.name, data_dir=dataset_config.data_dir).is_prepared()


def builder(dataset_config):
  """The prepared TFDS builder of `dataset.name` in `dataset.data_dir`, downloaded if missing.

  Raises:
    FileNotFoundError: not prepared and not downloadable (the message says how to get data).
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  found = tfds.builder(dataset_config.name, data_dir=dataset_config.data_dir)
  if not found.is_prepared():
    where = f'TFDS data set {dataset_config.name!r} is not prepared in {found.data_dir}'
    hosts = sorted({urllib.parse.urlparse(url).hostname for url in found.url_infos or {}})
    # Offline, TFDS would retry for minutes before failing. Behind a proxy, the proxy resolves.
    offline = (hosts and not urllib.request.getproxies()
               and not any(_resolves(host) for host in hosts))
    if offline:
      raise FileNotFoundError(errors.missing_data(
          dataset_config, f'{where} and cannot be downloaded: this machine cannot resolve '
          f'{", ".join(hosts)} (offline?).'))
    logging.info('%s: downloading it from %s (where a download cannot finish, TFDS retries for '
                 'minutes; stop it and set dataset.image_folder or dataset.data_dir to local '
                 'data).', where, ', '.join(hosts) or 'its sources')
    try:
      found.download_and_prepare()
    except Exception as e:  # Offline, no permission, ... : say how to provide the data.
      raise FileNotFoundError(errors.missing_data(
          dataset_config, f'{where} and could not be downloaded ({type(e).__name__}: {e}).')) from e
  return found


def _resolves(host: str) -> bool:
  try:
    socket.getaddrinfo(host, 443)
  except socket.gaierror:
    return False
  return True


def open_split(dataset_config, split: str, num_classes: int):
  """builder, the 'label' names (None if unconditional) and `classes.model_classes`.

  Raises:
    As `builder` and `classes.model_classes`; ValueError: unknown split, a conditional model and
    a data set without a 'label' feature.
  """
  found, name = builder(dataset_config), dataset_config.name
  errors.check_split(split, found.info.splits, name)
  available = None
  if num_classes:
    if 'label' not in found.info.features:
      raise ValueError(f'TFDS data set {name!r} has no \'label\' feature (it has '
                       f'{sorted(found.info.features)}); set model.num_classes=0 for an '
                       'unconditional GAN')
    available = found.info.features['label'].names
  return found, available, classes.model_classes(dataset_config, available, num_classes, name)


def source_labels(source, name: str, split: str) -> np.ndarray:
  """The 'label' feature of every example of a TFDS data source, (N,) int64 (reads the split)."""
  logging.info('Reading the labels of the %d examples of %s %s.', len(source), name, split)
  chunks = (source.__getitems__(range(i, min(i + 4096, len(source))))
            for i in range(0, len(source), 4096))
  return np.fromiter((ex['label'] for chunk in chunks for ex in chunk), np.int64, len(source))


def _as_dataset(tfds_builder, split: str, **kwargs):
  """`as_dataset` of `split` in file order, with each example's 'tfds_id'."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return tfds_builder.as_dataset(split=split, shuffle_files=False,
                                 read_config=tfds.ReadConfig(add_tfds_id=True), **kwargs)


def _problems(tfds_builder, split: str, key: str, shape) -> list:
  """Slow diagnosis: `errors.image_problem` of each image of the split."""
  tf = host_tf.tensorflow()
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  decode = tfds_builder.info.features['image'].decode_example
  problems = []
  for ex in _as_dataset(tfds_builder, split, decoders={'image': tfds.decode.SkipDecoding()}):
    try:
      found = tuple(decode(ex['image']).shape)
    except tf.errors.InvalidArgumentError:
      found = None
    problems.append(errors.image_problem(ex[key].numpy().decode(), found, shape))
  return [p for p in problems if p]


def load_split(dataset_config, split: str, *, image_size: int, num_classes: int,
               channels: int) -> Tuple[np.ndarray, np.ndarray]:
  """A whole split of S x S x C images (S = image_size, C = channels): (N, S, S, C) uint8, (N,)
  int32.

  Raises:
    As `open_split`; ValueError: the data set declares another image shape (before reading it;
    the message names the model fields to set), images not decodable or not S x S x C (named),
    empty split.
  """
  tf = host_tf.tensorflow()
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tfds_builder, available, selected = open_split(dataset_config, split, num_classes)
  key = 'id' if 'id' in tfds_builder.info.features else 'tfds_id'
  name = dataset_config.name
  shape, where = (image_size, image_size, channels), f'split {split!r} of {name!r}'
  declared = tfds_builder.info.features['image'].shape
  if any(d is not None and d != s for d, s in zip(declared, shape)):
    raise ValueError(errors.shape_mismatch(f'TFDS data set {name!r}', declared, shape))

  def example(ex):  # Unconditional: the labels, if any, are not read (`relabel` makes them 0).
    label = ex['label'] if selected is not None else tf.constant(0, tf.int64)
    return {'image': tf.ensure_shape(ex['image'], shape), 'label': label, 'key': ex[key]}

  batches = []
  try:
    batches += tfds.as_numpy(_as_dataset(tfds_builder, split).map(example).batch(1024))
  except tf.errors.InvalidArgumentError:
    problems = _problems(tfds_builder, split, key, shape)
    if not problems:
      raise
    raise errors.unusable_images(where, problems) from None
  if not batches:
    raise ValueError(f'{where} is empty')
  order = np.argsort(np.concatenate([b['key'] for b in batches]), kind='stable')
  labels = classes.relabel(np.concatenate([b['label'] for b in batches])[order], available,
                           selected)
  order, labels = order[labels >= 0], labels[labels >= 0]
  classes.warn_empty_classes(labels, selected, where)
  return np.concatenate([b['image'] for b in batches])[order], labels
