"""Input pipeline: fixed evaluation splits and subsets, and the training batches of step s.

Modules, by concept: `folder` (the one listing of an image folder's split), `tfds_data` and
`sources` (TFDS and folder data as examples read by index, or a whole split in memory),
`classes` (class selection, ImageNet-143), `transforms` (host crops and flips, the device
`augment`), `batches` (the batches of step s), `splits` (where 'pad_crop' versus streaming is
decided, and the public entry points).
"""

import os

from rob_gan_jax.input_pipeline import classes
from rob_gan_jax.input_pipeline import folder

from rob_gan_jax.input_pipeline.batches import batch_indices
from rob_gan_jax.input_pipeline.batches import host_batch
from rob_gan_jax.input_pipeline.batches import InMemoryTrainingData
from rob_gan_jax.input_pipeline.batches import step_indices
from rob_gan_jax.input_pipeline.batches import StreamedTrainingData
from rob_gan_jax.input_pipeline.batches import TrainingData
from rob_gan_jax.input_pipeline.classes import IMAGENET143
from rob_gan_jax.input_pipeline.classes import imagenet143_classes
from rob_gan_jax.input_pipeline.folder import IMAGE_EXTENSIONS
from rob_gan_jax.input_pipeline.sources import Examples
from rob_gan_jax.input_pipeline.sources import load_examples
from rob_gan_jax.input_pipeline.sources import split_examples
from rob_gan_jax.input_pipeline.splits import data_identity
from rob_gan_jax.input_pipeline.splits import load_split
from rob_gan_jax.input_pipeline.splits import load_subset
from rob_gan_jax.input_pipeline.splits import split_chunks
from rob_gan_jax.input_pipeline.splits import training_data
from rob_gan_jax.input_pipeline.transforms import augment
from rob_gan_jax.input_pipeline.transforms import AUGMENTATIONS
from rob_gan_jax.input_pipeline.transforms import CENTRE_CROP
from rob_gan_jax.input_pipeline.transforms import centre_crop_and_flip
from rob_gan_jax.input_pipeline.transforms import check_dataset_config
from rob_gan_jax.input_pipeline.transforms import PAD_CROP
from rob_gan_jax.input_pipeline.transforms import RANDOM_RESIZED_CROP
from rob_gan_jax.input_pipeline.transforms import random_resized_crop
from rob_gan_jax.input_pipeline.transforms import resize_and_centre_crop
from rob_gan_jax.input_pipeline.transforms import to_float
from rob_gan_jax.input_pipeline.transforms import to_uint8

# The order of the examples of a split, which the batches of step s index (a resumed run must
# read them in the order its first part did). 2: an image folder's split is listed once
# (`folder.list_split`) for both paths, class folders in label order, then file name. In 1 the
# in-memory path ('pad_crop', through `tfds.ImageFolder`) sorted examples by file path, which
# orders class folders as paths ('cat-2/' before 'cat/') and ignores the order of
# `dataset.classes`. Only such splits changed: not CIFAR-10 (identical, checked on the JPEGs),
# not the streaming paths, not TFDS data sets.
EXAMPLE_ORDER_VERSION = 2


def example_order_version(dataset_config) -> int:
  """EXAMPLE_ORDER_VERSION if the training split's order differs from version 1's, else 1.

  Lists the class folders of an in-memory image folder's `train_split` (missing: 1).
  """
  root, spec = dataset_config.image_folder, dataset_config.classes
  split_dir = os.path.join(root or '', dataset_config.train_split)
  if dataset_config.augmentation != PAD_CROP or not root:
    return 1
  if spec is None:
    names = folder.subfolders(split_dir) if os.path.isdir(split_dir) else []
  elif spec == IMAGENET143:
    names = list(classes.imagenet143_classes())
  else:
    names = [] if isinstance(spec, str) else list(spec)  # A bad string fails on reading.
  return 1 if names == sorted(names, key=lambda name: name + '/') else EXAMPLE_ORDER_VERSION
