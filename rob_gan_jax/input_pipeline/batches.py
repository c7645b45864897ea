"""The training batches of step s: a function of (seed, s), so a resumed run reads the same.

A step reads k global batches of B examples (co-training: k = n_dis; classifiers: k = 1), batch
numbers s * k ... s * k + k - 1, over a fresh permutation of each epoch, a function of
(seed, epoch); an epoch's last partial batch is dropped. Host augmentation is seeded by (seed,
s * k * B + position in the step), whichever process reads the example. `rows`: this process's
rows of each global batch (`parallel.process_rows`), b of them. Batches: images
(k, b, S, S, C) uint8, labels (k, b) int32.
"""

import dataclasses
import functools
from typing import Callable, Protocol, Tuple

import numpy as np

from rob_gan_jax.input_pipeline import host_tf
from rob_gan_jax.input_pipeline import sources
from rob_gan_jax.input_pipeline import transforms


@functools.lru_cache(maxsize=2)
def _permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  return np.random.default_rng([seed, epoch]).permutation(num_examples)


def batch_indices(seed: int, batch_index: int, *, num_examples: int,
                  batch_size: int) -> np.ndarray:
  """(batch_size,) int64 indices of batch number `batch_index` into the training split.

  Raises:
    ValueError: the split has fewer than `batch_size` examples.
  """
  batches_per_epoch = num_examples // batch_size
  if batches_per_epoch == 0:
    raise ValueError(f'the training split has {num_examples} examples, fewer than one batch '
                     f'of {batch_size}')
  epoch, i = divmod(batch_index, batches_per_epoch)
  return _permutation(seed, epoch, num_examples)[i * batch_size:(i + 1) * batch_size]


def step_indices(seed: int, step: int, *, num_examples: int, batch_size: int,
                 batches_per_step: int = 1) -> np.ndarray:
  """(k, batch_size) int64 indices of step `step`; raises as `batch_indices`."""
  return np.stack([batch_indices(seed, step * batches_per_step + i, num_examples=num_examples,
                                 batch_size=batch_size) for i in range(batches_per_step)])


def host_batch(images: np.ndarray, labels: np.ndarray, step: int, *, seed: int, batch_size: int,
               batches_per_step: int = 1,
               rows: slice = slice(None)) -> Tuple[np.ndarray, np.ndarray]:
  """The batches of step `step` of a split in memory, (N, S, S, C) and (N,); raises as
  `batch_indices`."""
  idx = step_indices(seed, step, num_examples=len(labels), batch_size=batch_size,
                     batches_per_step=batches_per_step)[:, rows]
  return images[idx], labels[idx]


class TrainingData(Protocol):
  """The training batches of a run (`splits.training_data`)."""
  num_examples: int  # Size of the training split.

  def host_batch(self, step: int) -> Tuple[np.ndarray, np.ndarray]:
    """This process's rows of the k global batches of the 0-based step `step`."""


@dataclasses.dataclass(frozen=True)
class InMemoryTrainingData:
  """'pad_crop': the whole training split in memory; augmentation on device."""
  images: np.ndarray  # (N, S, S, C) uint8.
  labels: np.ndarray  # (N,) int32.
  seed: int
  batch_size: int
  batches_per_step: int
  rows: slice

  @property
  def num_examples(self) -> int:
    return len(self.labels)

  def host_batch(self, step: int) -> Tuple[np.ndarray, np.ndarray]:
    return host_batch(self.images, self.labels, step, seed=self.seed, batch_size=self.batch_size,
                      batches_per_step=self.batches_per_step, rows=self.rows)


class StreamedTrainingData:
  """The streaming paths: tf.data workers decode and `augment(image, seed)` while training.

  Calls for consecutive steps read on (prefetched); any other step starts a new pipeline there.
  """

  def __init__(self, examples: sources.Examples, *, seed: int, batch_size: int,
               batches_per_step: int, augment: Callable, rows: slice):
    self.num_examples = len(examples.labels)
    self._examples = examples
    self._seed, self._batch_size, self._k, self._rows = seed, batch_size, batches_per_step, rows
    # Positions of this process's examples among the k * B of a step.
    self._positions = np.arange(batches_per_step * batch_size).reshape(
        batches_per_step, batch_size)[:, rows]
    self._augment = augment
    self._iterator, self._next_step = None, None
    self._indices(0)  # Raises now if the split has fewer examples than a batch.

  def _indices(self, step: int) -> np.ndarray:
    return step_indices(self._seed, step, num_examples=self.num_examples,
                        batch_size=self._batch_size,
                        batches_per_step=self._k)[:, self._rows]

  def _dataset(self, first_step: int):
    """The tf.data pipeline of steps first_step, first_step + 1, ..."""
    tf = host_tf.tensorflow()
    per_step, local = self._k * self._batch_size, self._positions.size
    positions = tf.constant(self._positions.ravel(), tf.int64)

    def step_examples(step):  # -> this process's indices and example numbers, (k * b,) each.
      indices = tf.numpy_function(lambda s: self._indices(int(s)).ravel(), [step], tf.int64,
                                  stateful=False)
      return tf.ensure_shape(indices, [local]), step * per_step + positions

    def example(index, number):
      seed = tf.stack([tf.constant(self._seed, tf.int64), number])
      image = self._augment(
          transforms.decode(self._examples.read(index), self._examples.channels), seed)
      return image, tf.gather(self._examples.labels, index)

    return (tf.data.Dataset.range(first_step, np.iinfo(np.int64).max).map(step_examples)
            .unbatch().map(example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .batch(local).prefetch(tf.data.AUTOTUNE))

  def host_batch(self, step: int) -> Tuple[np.ndarray, np.ndarray]:
    """Raises ValueError naming the step's images that cannot be read or decoded."""
    tf = host_tf.tensorflow()
    if step != self._next_step:
      self._iterator = self._dataset(step).as_numpy_iterator()
    self._next_step = None
    try:
      images, labels = next(self._iterator)
    except tf.errors.OpError as e:
      raise sources.unusable(self._examples, self._indices(step), e) from None
    self._next_step = step + 1
    return (images.reshape(self._positions.shape + images.shape[1:]),
            labels.reshape(self._positions.shape))
