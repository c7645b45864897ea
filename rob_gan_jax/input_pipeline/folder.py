"""The one listing of a split of an image folder, `image_folder/<split>/<class>/<file>`, that
both paths read: the files of IMAGE_EXTENSIONS (any case, as `tfds.ImageFolder` takes them) of
the selected class folders in label order (unconditional: every subfolder), each sorted by name.
"""

import dataclasses
import os
from typing import List, Tuple

import numpy as np

from rob_gan_jax.input_pipeline import classes
from rob_gan_jax.input_pipeline import errors

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')


@dataclasses.dataclass(frozen=True)
class Listing:
  where: str  # E.g. "split 'train' of '/data/cifar10'", for messages.
  root: str  # dataset.image_folder.
  files: Tuple[str, ...]  # Relative to root: '<split>/<class>/<file>'.
  labels: np.ndarray  # (N,) int32.


def subfolders(path: str) -> List[str]:
  return sorted(entry.name for entry in os.scandir(path) if entry.is_dir())


def check_class_folders(root: str) -> None:
  """Raises ValueError unless all splits have the same class folders (not their union)."""
  found = {split: set(subfolders(os.path.join(root, split))) for split in subfolders(root)}
  differences = []
  for name in sorted(set().union(*found.values())):
    having = [f'{split}/' for split in found if name in found[split]]
    lacking = [f'{split}/' for split in found if name not in found[split]]
    if lacking:
      differences.append(f'{name!r} is in {", ".join(having)} but not in {", ".join(lacking)}')
  if differences:
    raise ValueError(f'the splits of dataset.image_folder={root!r} must have the same class '
                     f'folders, but {len(differences)} differ: {errors.listed(differences)}')


def list_split(dataset_config, split: str, *, num_classes: int) -> Listing:
  """Logs a warning naming the selected class folders without image files.

  Raises:
    FileNotFoundError: image_folder is not a directory (the message says how to get data).
    ValueError: unknown split; as `classes.model_classes`; for a conditional model with
      `dataset.classes` None (labels follow the sorted class folders), splits with different
      class folders (named); no image files.
  """
  root = dataset_config.image_folder
  if not os.path.isdir(root):
    raise FileNotFoundError(errors.missing_data(
        dataset_config, f'dataset.image_folder={root!r} is not a directory.'))
  errors.check_split(split, subfolders(root), root)
  if num_classes and dataset_config.classes is None:
    check_class_folders(root)
  split_dir = os.path.join(root, split)
  available = subfolders(split_dir)
  selected = classes.model_classes(dataset_config, available, num_classes, split_dir)
  files, labels = [], []
  for label, name in enumerate(available if selected is None else selected):
    names = sorted(f for f in os.listdir(os.path.join(split_dir, name))
                   if f.lower().endswith(IMAGE_EXTENSIONS))
    files += [os.path.join(split, name, f) for f in names]
    labels += [0 if selected is None else label] * len(names)
  where = f'split {split!r} of {root!r}'
  if not files:
    raise ValueError(f'{where} is empty (the images must be in its subfolders, '
                     f'{split}/<class>/*.jpg)')
  labels = np.asarray(labels, np.int32)
  if selected is not None:
    classes.warn_empty_classes(labels, [os.path.join(split_dir, c) for c in selected], where)
  return Listing(where=where, root=root, files=tuple(files), labels=labels)
