"""Class selection: the classes a model's labels name, in label order, and relabelling.

`dataset.classes` names classes (folders or TFDS label names) in label order; None: every class
in the data's order. 'imagenet143': ImageNet classes 151-293, the dogs and cats of SN-GAN
projection's `datasets/imagenet_dog_and_cat.py` (github.com/pfnet-research/sngan_projection).
An unconditional model (`model.num_classes == 0`) labels every example 0, so its data need no
labels, and `dataset.classes` must be None.
"""

import functools
from typing import Optional, Sequence, Tuple

from absl import logging
import numpy as np

from rob_gan_jax.input_pipeline import errors

IMAGENET143 = 'imagenet143'


@functools.lru_cache(maxsize=1)
def imagenet143_classes() -> Tuple[str, ...]:
  """n02085620 (Chihuahua) ... n02130308 (cheetah), from TFDS's imagenet2012 (no download)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return tuple(tfds.builder('imagenet2012').info.features['label'].names[151:294])


def _selected(dataset_config, available: Sequence[str], where: str) -> Tuple[str, ...]:
  spec = dataset_config.classes
  if spec is None:
    return tuple(available)
  if isinstance(spec, str) and spec != IMAGENET143:
    raise ValueError(f'dataset.classes must be None, {IMAGENET143!r} or a tuple of class names, '
                     f'got {spec!r}')
  names = imagenet143_classes() if spec == IMAGENET143 else tuple(spec)
  if len(set(names)) != len(names):
    raise ValueError(f'dataset.classes names a class more than once: {names}')
  missing = [name for name in names if name not in set(available)]
  if missing:
    what = repr(spec) if isinstance(spec, str) else f'({len(names)} names)'
    raise ValueError(f'{where!r} lacks {len(missing)} of the {len(names)} classes of '
                     f'dataset.classes={what}: {errors.listed(missing)}')
  return names


def model_classes(dataset_config, available: Optional[Sequence[str]], num_classes: int,
                  where: str) -> Optional[Tuple[str, ...]]:
  """The classes of the model's labels, from `available` (None: no labels); None if unconditional.

  Raises:
    ValueError: `dataset.classes` is not None, 'imagenet143' or distinct names, names classes
      `where` lacks (named), or is set for an unconditional model; the selection has not
      `num_classes` classes.
  """
  if num_classes == 0:
    if dataset_config.classes is not None:
      raise ValueError('dataset.classes must be None for an unconditional GAN '
                       f'(model.num_classes=0), got {dataset_config.classes!r}')
    return None
  selected = _selected(dataset_config, available, where)
  if len(selected) != num_classes:
    raise ValueError(f'{where!r} has {len(selected)} classes, but model.num_classes is '
                     f'{num_classes}')
  return selected


def relabel(labels: np.ndarray, available: Optional[Sequence[str]],
            selected: Optional[Sequence[str]]) -> np.ndarray:
  """Labels indexing `available` -> (N,) int32 labels indexing `selected`, -1 if not selected."""
  if selected is None:
    return np.zeros(len(labels), np.int32)
  table = np.full(len(available), -1, np.int32)
  position = {name: i for i, name in enumerate(available)}
  table[[position[name] for name in selected]] = np.arange(len(selected))
  return table[labels]


def warn_empty_classes(labels: np.ndarray, names: Optional[Sequence[str]], where: str) -> None:
  """Logs a warning naming the classes (`names`, in label order) without examples."""
  if names is None:
    return
  empty = [names[c] for c in np.flatnonzero(np.bincount(labels, minlength=len(names)) == 0)]
  if empty:
    logging.warning('%s has no examples of %d class(es): %s', where, len(empty),
                    ', '.join(empty))
