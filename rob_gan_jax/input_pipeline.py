"""Input pipeline: the training batches of a step and fixed evaluation subsets, in two paths.

`config.dataset.augmentation` picks the path and the training augmentation; 'pad_crop' and
'random_resized_crop' follow the official code (`train.py` and `finetune.py`, `make_dataset`):

- 'pad_crop' (official CIFAR-10): a whole split of images of exactly model.image_size is read
  once through TFDS and held in memory as uint8; the training augmentation (random crop after
  `crop_padding` zero padding, horizontal flip) runs on device in the jitted step (`augment`).
- 'random_resized_crop' (official ImageNet / dog_and_cat): images of any size, RGB or grayscale,
  are streamed from an image folder or a TFDS data set stored as array_record, and decoded and
  augmented on host workers (tf.data, parallel map, prefetch): torchvision's
  `RandomResizedCrop(image_size, scale=crop_scale, ratio=(1, 1))` and a horizontal flip give
  uint8 batches, which the device only scales to [-1, 1]. Evaluation images (`load_subset`,
  `load_split`, hence FID real statistics) have their short side resized to image_size and are
  centre-cropped.
- 'centre_crop' (the usual CelebA / LSUN GAN preprocessing): the streaming path of
  'random_resized_crop', but training images get the evaluation transform (short side resized
  to image_size, centre crop) and the horizontal flip (`centre_crop_and_flip`).

In every path the training step reads `host_batch(step)` of the object `training_data` returns.
Resumption is exact: the examples of step s are a function of (seed, s) (`batch_indices`: a fresh
permutation each epoch, a function of (seed, epoch)), and so is their augmentation: on device
from a key derived from (seed, step), on host from stateless TF random ops seeded by
(seed, example number), where the example number is the step's first example number plus the
position in the step. A run resumed at step s therefore sees exactly the batches an
uninterrupted one would. In the training step of every path, scaling to [-1, 1] is followed by
uniform noise in [0, dequantization_noise) (SN-GAN) during co-training, not during fine-tuning,
as in the official code.

`dataset.classes` selects classes by folder or label name, e.g. ImageNet-143 ('imagenet143'):
ImageNet classes 151-293, the dogs and cats of SN-GAN projection's `imagenet_dog_and_cat.py`
(github.com/pfnet-research/sngan_projection), labelled 0-142 in synset order.

Unconditional GANs (AS-GAN: CIFAR without labels, CelebA, LSUN) have `model.num_classes == 0`:
every image of a split is used, labelled 0 (int32), whatever its class folder or TFDS label;
the data need not have labels (a TFDS data set without a 'label' feature, e.g. celeb_a or
lsun/bedroom, or an image folder `split/<any folders>/*.jpg`), and `dataset.classes` must be None.
"""

import dataclasses
import functools
import os
from typing import Callable, Iterator, Optional, Protocol, Sequence, Tuple

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

PAD_CROP = 'pad_crop'
RANDOM_RESIZED_CROP = 'random_resized_crop'
CENTRE_CROP = 'centre_crop'
AUGMENTATIONS = (PAD_CROP, RANDOM_RESIZED_CROP, CENTRE_CROP)
IMAGENET143 = 'imagenet143'
# The image files an image folder holds, as `tfds.ImageFolder` reads them (any letter case).
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')
_EVAL_BATCH = 256  # Images decoded per tf.data batch when evaluation images are loaded.


def _missing_data_message(dataset_config, reason: str) -> str:
  return (f'{reason}\nProvide the data in one of two ways:\n'
          f'  1. TFDS: on a machine with internet, `tfds.load({dataset_config.name!r})` downloads '
          'it (set --config.dataset.data_dir to use a TFDS data directory other than the '
          'default);\n'
          '  2. an image folder laid out as {train,test}/<class>/*.jpg (class folders sorted in '
          'label order; for an unconditional GAN, model.num_classes=0, any folders, e.g. '
          'train/all/*.jpg): --config.dataset.image_folder=/path/to/folder.')


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


def check_dataset_config(dataset_config) -> None:
  """Raises ValueError for an unknown `augmentation` or a `crop_scale` outside 0 < lo <= hi <= 1."""
  if dataset_config.augmentation not in AUGMENTATIONS:
    raise ValueError(f'dataset.augmentation must be one of {", ".join(map(repr, AUGMENTATIONS))}, '
                     f'got {dataset_config.augmentation!r}')
  low, high = dataset_config.crop_scale
  if not 0 < low <= high <= 1:
    raise ValueError('dataset.crop_scale must be (low, high) with 0 < low <= high <= 1, got '
                     f'{tuple(dataset_config.crop_scale)}')


@functools.lru_cache(maxsize=1)
def imagenet143_classes() -> Tuple[str, ...]:
  """The 143 synsets of ImageNet-143 (dogs and cats), in label order.

  Classes 151..293 (inclusive) of ImageNet 2012's 1000 synsets in TFDS's label order, as
  SN-GAN projection's `datasets/imagenet_dog_and_cat.py` (`np.arange(151, 294)`) selects them:
  n02085620 (Chihuahua) ... n02130308 (cheetah). Read from the `imagenet2012` TFDS builder's
  label feature; nothing is downloaded.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return tuple(tfds.builder('imagenet2012').info.features['label'].names[151:294])


def _selected_classes(dataset_config, available: Sequence[str], where: str) -> Tuple[str, ...]:
  """The class names `dataset.classes` selects, in label order (None: all of `available`).

  Raises:
    ValueError: `dataset.classes` is not None, 'imagenet143' or a sequence of distinct names,
      or `where` lacks some of them (the message names them).
  """
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
                     f'dataset.classes={what}: {_listed(missing)}')
  return names


def _model_classes(dataset_config, available: Optional[Sequence[str]], num_classes: int,
                   where: str) -> Optional[Tuple[str, ...]]:
  """The classes of the model's labels, in label order; None for an unconditional model.

  Args:
    dataset_config: `config.dataset` (`classes`).
    available: the class names of the data, in their label order (None: the data have no
      labels, allowed only when unconditional).
    num_classes: `model.num_classes`; 0: unconditional, every example is used and labelled 0.
    where: the data, for messages.

  Raises:
    ValueError: `dataset.classes` set for an unconditional model; as `_selected_classes`; the
      number of selected classes is not num_classes.
  """
  if num_classes == 0:
    if dataset_config.classes is not None:
      raise ValueError('dataset.classes must be None for an unconditional GAN '
                       f'(model.num_classes=0), got {dataset_config.classes!r}')
    return None
  selected = _selected_classes(dataset_config, available, where)
  _check_num_classes(selected, num_classes, where)
  return selected


def _tfds_class_names(builder, num_classes: int, name: str) -> Optional[Sequence[str]]:
  """The names of a TFDS data set's 'label' feature; None (labels unused) if unconditional.

  Raises:
    ValueError: a conditional model (num_classes > 0) and a data set without a 'label' feature.
  """
  if num_classes == 0:
    return None
  if 'label' not in builder.info.features:
    raise ValueError(f'TFDS data set {name!r} has no \'label\' feature (it has '
                     f'{sorted(builder.info.features)}); set model.num_classes=0 for an '
                     'unconditional GAN')
  return builder.info.features['label'].names


def _relabel(labels: np.ndarray, available: Optional[Sequence[str]],
             selected: Optional[Sequence[str]]) -> np.ndarray:
  """Labels indexing `available` -> labels indexing `selected` (int32; -1: not selected).

  `selected` None (unconditional): every label becomes 0.
  """
  if selected is None:
    return np.zeros(len(labels), np.int32)
  table = np.full(len(available), -1, np.int32)
  position = {name: i for i, name in enumerate(available)}
  table[[position[name] for name in selected]] = np.arange(len(selected))
  return table[labels]


def _check_num_classes(selected: Sequence[str], num_classes: int, where: str) -> None:
  if len(selected) != num_classes:
    raise ValueError(f'{where!r} has {len(selected)} classes, but model.num_classes is '
                     f'{num_classes}')


def _warn_empty_classes(labels: np.ndarray, classes: Optional[Sequence[str]], split: str,
                        where: str, root: Optional[str]) -> None:
  """Logs a warning naming the classes (for an image folder, the folders) without examples.

  `classes` None (unconditional): nothing to warn of.
  """
  if classes is None:
    return
  empty = [os.path.join(root, split, classes[c]) if root else classes[c]
           for c in np.flatnonzero(np.bincount(labels, minlength=len(classes)) == 0)]
  if empty:
    logging.warning('split %r of %r has no examples of %d class(es)%s: %s', split, where,
                    len(empty), ' (class folders without .jpg/.jpeg/.png files)' if root else '',
                    ', '.join(empty))


def _builder(dataset_config, num_classes: int):
  """The TFDS builder of the data and the feature that names an example.

  The name is the file name (image folder), the TFDS 'id' feature (e.g. cifar10), or, for data
  sets without one (lsun, celeb_a, mnist), the 'tfds_id' ('<file>__<index>') that `_as_dataset`
  adds. For a conditional model (num_classes > 0) the splits of an image folder must have the same
  class folders; an unconditional one ignores the folders.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  root = dataset_config.image_folder
  if root:
    _check_folder(dataset_config)
    if num_classes:
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
  return builder, 'id' if 'id' in builder.info.features else 'tfds_id'


def _as_dataset(builder, split: str, **kwargs):
  """`builder.as_dataset` of `split` in file order, with each example's 'tfds_id'."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return builder.as_dataset(split=split, shuffle_files=False,
                            read_config=tfds.ReadConfig(add_tfds_id=True), **kwargs)


def _check_folder(dataset_config) -> None:
  if not os.path.isdir(dataset_config.image_folder):
    raise FileNotFoundError(_missing_data_message(
        dataset_config, f'dataset.image_folder={dataset_config.image_folder!r} is not a '
        'directory.'))


def _check_split(split: str, splits: Sequence[str], where: str) -> None:
  if split not in splits:
    raise ValueError(f'split {split!r} does not exist in {where!r}; it has {sorted(splits)}')


def _bad_images(builder, split: str, key: str, root: Optional[str], shape) -> list:
  """Slow diagnosis: '<file or id> <problem>' for each image of `split` that is not `shape`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  decode = builder.info.features['image'].decode_example
  undecoded = _as_dataset(builder, split, decoders={'image': tfds.decode.SkipDecoding()})
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


def _load_exact_size_split(dataset_config, split: str, *, image_size: int,
                           num_classes: int) -> Tuple[np.ndarray, np.ndarray]:
  """`load_split` for 'pad_crop': every image of the split, read through TFDS, must be S x S x 3."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder, key = _builder(dataset_config, num_classes)
  root = dataset_config.image_folder
  where = root or dataset_config.name
  _check_split(split, builder.info.splits, where)
  available = _tfds_class_names(builder, num_classes, where)
  selected = _model_classes(dataset_config, available, num_classes, where)
  shape = (image_size, image_size, 3)
  conditional = selected is not None

  def example(ex):  # Unconditional: the labels, if any, are not read (`_relabel` makes them 0).
    label = ex['label'] if conditional else tf.constant(0, tf.int64)
    return {'image': tf.ensure_shape(ex['image'], shape), 'label': label, 'key': ex[key]}

  ds = _as_dataset(builder, split).map(example)
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
  labels = _relabel(np.concatenate(labels)[order], available, selected)
  order = order[labels >= 0]
  labels = labels[labels >= 0]
  _warn_empty_classes(labels, selected, split, where, root)
  return np.concatenate(images)[order], labels


@dataclasses.dataclass(frozen=True)
class Examples:
  """The examples of a split, read one at a time by index (the streaming path).

  Attributes:
    where: the split, for messages (e.g. "split 'train' of '/data/imagenet'").
    labels: (N,) int32 labels in 0 .. num_classes - 1 (unconditional: zeros).
    names: `names(i)` -> the name of example i in messages (file path relative to the image
      folder, or '<split>[<TFDS index>]').
    read: TF-traceable `read(i)`: int64 scalar index -> tf.string scalar, the encoded image.
  """
  where: str
  labels: np.ndarray
  names: Callable[[int], str]
  read: Callable


def _folder_examples(dataset_config, split: str, num_classes: int) -> Examples:
  """The files of `image_folder/split/<class>/` with the extensions of IMAGE_EXTENSIONS.

  Unconditional (num_classes == 0): the files of every subfolder of the split, labelled 0.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  _check_folder(dataset_config)
  root = dataset_config.image_folder
  _check_split(split, _subfolders(root), root)
  # A conditional model's labels follow the sorted class folders: all splits must agree.
  if num_classes and dataset_config.classes is None:
    _check_class_folders(root)
  split_dir = os.path.join(root, split)
  available = _subfolders(split_dir)
  selected = _model_classes(dataset_config, available, num_classes, split_dir)
  folders = available if selected is None else selected
  paths, folder_numbers = [], []
  for number, name in enumerate(folders):
    folder = os.path.join(split_dir, name)
    files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
    paths += [os.path.join(folder, f) for f in files]
    folder_numbers += [number] * len(files)
  labels = _relabel(np.asarray(folder_numbers, np.int64), folders, selected)
  if not paths:
    raise ValueError(f'split {split!r} of {root!r} is empty (the images must be in its '
                     f'subfolders, {split}/<class>/*.jpg)')
  _warn_empty_classes(labels, selected, split, root, root)
  path_tensor = tf.constant(paths)
  return Examples(where=f'split {split!r} of {root!r}', labels=labels,
                  names=lambda i: os.path.relpath(paths[i], root),
                  read=lambda i: tf.io.read_file(tf.gather(path_tensor, i)))


def _tfds_labels(source, name: str, split: str) -> np.ndarray:
  """The 'label' feature of every example of a TFDS data source, (N,) int64 (reads the split)."""
  logging.info('Reading the labels of the %d examples of %s %s.', len(source), name, split)
  chunks = (source.__getitems__(range(i, min(i + 4096, len(source))))
            for i in range(0, len(source), 4096))
  return np.fromiter((ex['label'] for chunk in chunks for ex in chunk), np.int64, len(source))


def _tfds_examples(dataset_config, split: str, num_classes: int) -> Examples:
  """The examples of a TFDS split stored as array_record (random access by index).

  Unconditional (num_classes == 0): every example, labelled 0; the labels are not read.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder, _ = _builder(dataset_config, num_classes)
  name = dataset_config.name
  _check_split(split, builder.info.splits, name)
  available = _tfds_class_names(builder, num_classes, name)
  selected = _model_classes(dataset_config, available, num_classes, name)
  try:
    source = builder.as_data_source(split, decoders={'image': tfds.decode.SkipDecoding()})
  except NotImplementedError as e:
    raise ValueError(
        f'dataset.augmentation={dataset_config.augmentation!r} reads examples by index, which '
        f'TFDS offers for data stored as array_record, but {name!r} in {builder.data_dir} is '
        f'stored as {builder.info.file_format.value}. Prepare it with `tfds build {name} '
        '--file_format=array_record` (or `download_and_prepare(file_format=\'array_record\')`) '
        'in another data_dir, or use --config.dataset.image_folder.') from e
  raw = _tfds_labels(source, name, split) if selected is not None else np.zeros(len(source))
  labels = _relabel(raw, available, selected)  # Unconditional: zeros, the labels are not read.
  keys = np.flatnonzero(labels >= 0)
  if not len(keys):
    raise ValueError(f'split {split!r} of {name!r} has no examples of the selected classes')
  _warn_empty_classes(labels[keys], selected, split, name, None)

  def read(i):
    encoded = tf.numpy_function(lambda j: source[int(keys[j])]['image'], [i], tf.string,
                                stateful=False)
    return tf.ensure_shape(encoded, [])

  return Examples(where=f'split {split!r} of {name!r}', labels=labels[keys],
                  names=lambda i: f'{split}[{keys[i]}]', read=read)


def split_examples(dataset_config, split: str, *, num_classes: int) -> Examples:
  """The examples of a split for the streaming path, in a canonical order.

  An image folder's examples are its files `split/<class>/*.{jpg,jpeg,png}` (any letter case),
  sorted by class (label order) then file name; a TFDS data set's are those of its array_record
  files in index order. Only the classes of `dataset.classes` are kept, relabelled 0, 1, ... in
  that order. Logs a warning naming the selected classes of which the split has no examples.
  Unconditional (num_classes == 0): every example (the files of every subfolder), labelled 0.

  Args:
    dataset_config: `config.dataset`: `image_folder` if set, else the TFDS data set `name` in
      `data_dir` (downloaded if missing and possible); `classes`.
    split: split name, e.g. 'train'.
    num_classes: required number of (selected) classes; 0: unconditional.

  Returns:
    `Examples`. For TFDS and a conditional model, reading the labels reads the split once
    (logged).

  Raises:
    FileNotFoundError: the data are missing (the message says how to provide them).
    ValueError: unknown split; wrong number of classes; `dataset.classes` names classes the data
      lack (the message names them), or is set for an unconditional model; a conditional model
      and a TFDS data set without a 'label' feature; for a conditional model with `classes`
      None, an image folder whose splits have different class folders; a TFDS data set not
      stored as array_record; no examples.
  """
  if dataset_config.image_folder:
    return _folder_examples(dataset_config, split, num_classes)
  return _tfds_examples(dataset_config, split, num_classes)


def _decode(encoded):
  """tf.string (JPEG, PNG, GIF or BMP) -> (H, W, 3) uint8; grayscale becomes RGB."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  return tf.ensure_shape(image, [None, None, 3])


def _to_uint8(image):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.saturate_cast(tf.round(image), tf.uint8)


def _example_seeds(seed):
  """(2,) int64 stateless seed of an example -> the seeds of its crop and of its flip."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.unstack(tf.random.experimental.stateless_split(seed, 2))


def _flip(image, flip_seed, random_flip: bool):
  """`image` flipped left-right with probability 1/2 (stateless, `flip_seed`) if `random_flip`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.image.stateless_random_flip_left_right(image, flip_seed) if random_flip else image


def random_resized_crop(image, seed, *, image_size: int, crop_scale: Tuple[float, float],
                        random_flip: bool):
  """Official ImageNet training augmentation, on host: square random resized crop and flip.

  torchvision's `RandomResizedCrop(image_size, scale=crop_scale, ratio=(1, 1))` then
  `RandomHorizontalFlip()` (official `train.py` / `finetune.py`, `make_dataset`): a square crop
  covering a fraction in `crop_scale` of the image area, at a random place, resized to
  image_size x image_size (bilinear, antialiased like PIL). The crop is drawn by
  `tf.image.stateless_sample_distorted_bounding_box` (10 attempts); where no square of that area
  fits (images whose short side is below sqrt(crop_scale[0]) of the long one, e.g. 4:3 photos
  at scale 0.8), the centre square of side min(H, W) is taken, as torchvision's fallback does.
  TF's sampler draws the crop side uniformly where torchvision draws the area uniformly.

  Args:
    image: (H, W, 3) uint8 tf.Tensor.
    seed: (2,) int64 tf.Tensor, the stateless seed of this example.
    image_size: output height and width.
    crop_scale: (low, high) fraction of the image area.
    random_flip: flip horizontally with probability 1/2.

  Returns:
    (image_size, image_size, 3) uint8 tf.Tensor.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  crop_seed, flip_seed = _example_seeds(seed)
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
  return _to_uint8(_flip(x, flip_seed, random_flip))


def resize_and_centre_crop(image, image_size: int):
  """Evaluation transform of the streaming path: short side resized to image_size, centre crop.

  torchvision's `Resize(image_size)` then `CenterCrop(image_size)` (bilinear, antialiased); the
  crop starts at ((H' - image_size) // 2, (W' - image_size) // 2) of the resized H' x W' image.

  Args:
    image: (H, W, 3) uint8 tf.Tensor.
    image_size: output height and width.

  Returns:
    (image_size, image_size, 3) uint8 tf.Tensor.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  shape = tf.cast(tf.shape(image)[:2], tf.float64)
  resized = tf.maximum(tf.cast(tf.round(shape * image_size / tf.reduce_min(shape)), tf.int32),
                       image_size)
  x = tf.image.resize(image, resized, antialias=True)
  return _to_uint8(tf.image.resize_with_crop_or_pad(x, image_size, image_size))


def centre_crop_and_flip(image, seed, *, image_size: int, random_flip: bool):
  """'centre_crop' training augmentation, on host: `resize_and_centre_crop` and a random flip.

  The usual CelebA / LSUN GAN preprocessing: the evaluation transform (short side resized to
  image_size, centre crop), then a horizontal flip with probability 1/2, seeded as
  `random_resized_crop`'s flip is (an example flipped by one is flipped by the other).

  Args:
    image: (H, W, 3) uint8 tf.Tensor.
    seed: (2,) int64 tf.Tensor, the stateless seed of this example.
    image_size: output height and width.
    random_flip: flip horizontally with probability 1/2.

  Returns:
    (image_size, image_size, 3) uint8 tf.Tensor.
  """
  _, flip_seed = _example_seeds(seed)
  return _flip(resize_and_centre_crop(image, image_size), flip_seed, random_flip)


def _host_augmentation(dataset_config, image_size: int) -> Callable:
  """The streaming path's training augmentation: `augment(image, seed)` -> uint8 image."""
  if dataset_config.augmentation == CENTRE_CROP:
    return functools.partial(centre_crop_and_flip, image_size=image_size,
                             random_flip=dataset_config.random_flip)
  return functools.partial(random_resized_crop, image_size=image_size,
                           crop_scale=tuple(dataset_config.crop_scale),
                           random_flip=dataset_config.random_flip)


def _unreadable(examples: Examples, indices: np.ndarray, error: Exception) -> Exception:
  """ValueError naming the examples among `indices` that cannot be read or decoded, else `error`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  indices = np.unique(indices)
  readable = tf.data.Dataset.from_tensor_slices(indices).map(
      lambda i: (i, tf.shape(_decode(examples.read(i))))).ignore_errors()
  ok = {int(i) for i, _ in readable.as_numpy_iterator()}
  bad = [examples.names(int(i)) for i in indices if int(i) not in ok]
  if not bad:
    return error
  return ValueError(f'{len(bad)} image(s) of {examples.where} cannot be read or decoded: '
                    f'{_listed(sorted(bad))}')


def load_examples(examples: Examples, indices: np.ndarray, *, image_size: int) -> np.ndarray:
  """Decodes examples for evaluation (`resize_and_centre_crop`) on parallel tf.data workers.

  Args:
    examples: from `split_examples`.
    indices: (n,) int indices into `examples`.
    image_size: output height and width.

  Returns:
    (n, image_size, image_size, 3) uint8, in the order of `indices`.

  Raises:
    ValueError: images that cannot be read or decoded (the message names up to 5 and counts
      them all).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  indices = np.asarray(indices, np.int64)
  ds = tf.data.Dataset.from_tensor_slices(indices).map(
      lambda i: resize_and_centre_crop(_decode(examples.read(i)), image_size),
      num_parallel_calls=tf.data.AUTOTUNE).batch(_EVAL_BATCH)
  try:
    batches = list(ds.as_numpy_iterator())
  except tf.errors.OpError as e:
    raise _unreadable(examples, indices, e) from None
  return np.concatenate(batches) if batches else np.zeros((0, image_size, image_size, 3),
                                                          np.uint8)


def _streams(dataset_config) -> bool:
  """Whether the data are streamed ('random_resized_crop', 'centre_crop'), not held in memory."""
  check_dataset_config(dataset_config)
  return dataset_config.augmentation != PAD_CROP


def load_split(dataset_config, split: str, *, image_size: int,
               num_classes: int) -> Tuple[np.ndarray, np.ndarray]:
  """Reads a whole split into memory, in a canonical order, as evaluation sees it.

  'pad_crop': every image must be exactly image_size x image_size (any TFDS data set or image
  folder, read through TFDS, sorted by file name or TFDS id, see `_builder`).
  'random_resized_crop' and 'centre_crop' (streaming): images of any size, short side resized to
  image_size and centre-cropped (`split_examples` order). Only the classes of `dataset.classes`
  are kept, relabelled 0, 1, ... in that order. Logs a warning (absl) naming the classes, for an
  image folder the class folders, of which the split has no examples. Unconditional
  (num_classes == 0): every image of the split, labelled 0 (see the module docstring).

  Args:
    dataset_config: `config.dataset`; `image_folder` (if set) is read, otherwise the TFDS data
      set `name` (from `data_dir`, downloaded if missing and possible); `augmentation`,
      `classes`.
    split: split name, e.g. 'train' or 'test'.
    image_size: height and width (required of the files for 'pad_crop').
    num_classes: required number of (selected) classes; 0: unconditional.

  Returns:
    images: (N, image_size, image_size, 3) uint8.
    labels: (N,) int32 (unconditional: zeros).

  Raises:
    FileNotFoundError: the data are missing (the message says how to provide them).
    ValueError: bad `augmentation` or `crop_scale`, unknown split, wrong number of classes,
      classes of `dataset.classes` the data lack (named), an image folder whose splits have
      different class folders (named; conditional only), `dataset.classes` set for an
      unconditional model, a conditional model on a TFDS data set without a 'label' feature,
      images that cannot be decoded or, for 'pad_crop', are not image_size x image_size x 3 (the
      message names up to 5 files or TFDS ids and counts them all), an empty split; on the
      streaming path a TFDS data set not stored as array_record.
  """
  if not _streams(dataset_config):
    return _load_exact_size_split(dataset_config, split, image_size=image_size,
                                  num_classes=num_classes)
  examples = split_examples(dataset_config, split, num_classes=num_classes)
  return (load_examples(examples, np.arange(len(examples.labels)), image_size=image_size),
          examples.labels)


def split_chunks(dataset_config, split: str, *, image_size: int, num_classes: int,
                 chunk_size: int = 10_000) -> Iterator[np.ndarray]:
  """The images of a whole split, as `load_split` gives them, in chunks of `chunk_size`.

  On the streaming path ('random_resized_crop', 'centre_crop') only one chunk is decoded at a
  time, so a split larger than host memory (ImageNet, LSUN) can be gone through; 'pad_crop'
  splits are read whole.

  Yields:
    (n <= chunk_size, image_size, image_size, 3) uint8 arrays, in `load_split`'s order.

  Raises:
    As `load_split`.
  """
  if not _streams(dataset_config):
    images, _ = load_split(dataset_config, split, image_size=image_size, num_classes=num_classes)
    yield from (images[i:i + chunk_size] for i in range(0, len(images), chunk_size))
    return
  examples = split_examples(dataset_config, split, num_classes=num_classes)
  for start in range(0, len(examples.labels), chunk_size):
    yield load_examples(examples, np.arange(start, min(start + chunk_size, len(examples.labels))),
                        image_size=image_size)


def _subset(seed: int, size: int, num_examples: Optional[int]) -> np.ndarray:
  return np.random.default_rng(seed).permutation(size)[:num_examples]


def load_subset(config, split: str,
                num_examples: Optional[int]) -> Tuple[np.ndarray, np.ndarray]:
  """A fixed random subset of a split, the same for every run of the same `config.seed`.

  Images are as `load_split` gives them; on the streaming path only the subset is decoded.

  Args:
    config: the full config (`dataset`, `model.image_size`, `model.num_classes`, `seed`).
    split: split name.
    num_examples: size of the subset; None = the whole split (in a seeded random order).

  Returns:
    images (n, image_size, image_size, 3) uint8 and labels (n,) int32.

  Raises:
    As `load_split`.
  """
  m = config.model
  if not _streams(config.dataset):
    images, labels = load_split(config.dataset, split, image_size=m.image_size,
                                num_classes=m.num_classes)
    subset = _subset(config.seed, len(labels), num_examples)
    return images[subset], labels[subset]
  examples = split_examples(config.dataset, split, num_classes=m.num_classes)
  subset = _subset(config.seed, len(examples.labels), num_examples)
  return load_examples(examples, subset, image_size=m.image_size), examples.labels[subset]


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


def step_indices(seed: int, step: int, *, num_examples: int, batch_size: int,
                 batches_per_step: int = 1) -> np.ndarray:
  """Indices of the training batches of step `step`: batch numbers step * k ... step * k + k - 1.

  Returns:
    (batches_per_step, batch_size) int64 indices into the training split.

  Raises:
    ValueError: the split has fewer than `batch_size` examples.
  """
  return np.stack([batch_indices(seed, step * batches_per_step + i, num_examples=num_examples,
                                 batch_size=batch_size) for i in range(batches_per_step)])


def host_batch(images: np.ndarray, labels: np.ndarray, step: int, *, seed: int, batch_size: int,
               batches_per_step: int = 1,
               rows: slice = slice(None)) -> Tuple[np.ndarray, np.ndarray]:
  """The training batches of step `step` (0-based) of a split held in memory (`step_indices`).

  A co-training step uses k = n_dis batches (one per D update), a classifier-training step one.

  Args:
    images: (N, H, W, 3) uint8, the whole training split.
    labels: (N,) int32.
    step: 0-based step index.
    seed: the run's seed.
    batch_size: global batch size B.
    batches_per_step: k.
    rows: the rows of each global batch to return (this process's, `parallel.process_rows`).

  Returns:
    images (k, b, H, W, 3) uint8 and labels (k, b) int32, b the number of `rows` of B.

  Raises:
    ValueError: the split has fewer than `batch_size` examples.
  """
  idx = step_indices(seed, step, num_examples=len(labels), batch_size=batch_size,
                     batches_per_step=batches_per_step)[:, rows]
  return images[idx], labels[idx]


class TrainingData(Protocol):
  """The training batches of a run, whichever path gives them (see `training_data`)."""
  num_examples: int

  def host_batch(self, step: int) -> Tuple[np.ndarray, np.ndarray]:
    """images (k, b, S, S, 3) uint8 and labels (k, b) int32 of the 0-based step `step`: the
    process's rows of the step's k global batches (b = B in a single process)."""


@dataclasses.dataclass(frozen=True)
class InMemoryTrainingData:
  """'pad_crop': the whole training split in memory; augmentation on device (`augment`)."""
  images: np.ndarray  # (N, S, S, 3) uint8.
  labels: np.ndarray  # (N,) int32.
  seed: int
  batch_size: int
  batches_per_step: int
  rows: slice  # This process's rows of each global batch.

  @property
  def num_examples(self) -> int:
    return len(self.labels)

  def host_batch(self, step: int) -> Tuple[np.ndarray, np.ndarray]:
    """The un-augmented batches of step `step` (see the module-level `host_batch`)."""
    return host_batch(self.images, self.labels, step, seed=self.seed, batch_size=self.batch_size,
                      batches_per_step=self.batches_per_step, rows=self.rows)


class StreamedTrainingData:
  """The streaming path: batches decoded and augmented by tf.data workers while training.

  The pipeline maps the examples of `step_indices` (this process's `rows` of each global batch)
  through `augment` (`random_resized_crop` or `centre_crop_and_flip`) in parallel (in order),
  seeding each example by (seed, example number), example number = step * k * B + position in
  the step's global batches, so an example is augmented the same way whichever process reads it,
  and prefetches the next steps' batches in the background. Calls for consecutive steps read on;
  a call for any other step starts a new pipeline there, so the batch of a step does not depend
  on where the run started.

  Attributes:
    num_examples: size of the training split.
  """

  def __init__(self, examples: Examples, *, seed: int, batch_size: int, batches_per_step: int,
               augment: Callable, rows: slice):
    """`augment(image, seed)`: (H, W, 3) uint8 and (2,) int64 stateless seed -> (S, S, 3) uint8."""
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
    """(k, b) indices of this process's examples of step `step`."""
    return step_indices(self._seed, step, num_examples=self.num_examples,
                        batch_size=self._batch_size,
                        batches_per_step=self._k)[:, self._rows]

  def _dataset(self, first_step: int):
    """The tf.data pipeline of steps first_step, first_step + 1, ..."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    per_step, local = self._k * self._batch_size, self._positions.size
    positions = tf.constant(self._positions.ravel(), tf.int64)

    def step_examples(step):  # -> this process's indices and example numbers, (k * b,) each.
      indices = tf.numpy_function(lambda s: self._indices(int(s)).ravel(), [step], tf.int64,
                                  stateful=False)
      return tf.ensure_shape(indices, [local]), step * per_step + positions

    def example(index, number):
      seed = tf.stack([tf.constant(self._seed, tf.int64), number])
      image = self._augment(_decode(self._examples.read(index)), seed)
      return image, tf.gather(self._examples.labels, index)

    return (tf.data.Dataset.range(first_step, np.iinfo(np.int64).max).map(step_examples)
            .unbatch().map(example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .batch(local).prefetch(tf.data.AUTOTUNE))

  def host_batch(self, step: int) -> Tuple[np.ndarray, np.ndarray]:
    """The augmented batches of step `step` (0-based): this process's rows of them.

    Returns:
      images (k, b, S, S, 3) uint8 (cropped, resized, flipped; the device only scales them to
      [-1, 1] and adds noise, see `augment`) and labels (k, b) int32.

    Raises:
      ValueError: images of the step that cannot be read or decoded (named).
    """
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    if step != self._next_step:
      self._iterator = self._dataset(step).as_numpy_iterator()
    self._next_step = None
    try:
      images, labels = next(self._iterator)
    except tf.errors.OpError as e:
      raise _unreadable(self._examples, self._indices(step), e) from None
    self._next_step = step + 1
    return (images.reshape(self._positions.shape + images.shape[1:]),
            labels.reshape(self._positions.shape))


def training_data(config, *, batch_size: int, batches_per_step: int = 1,
                  rows: slice = slice(None)) -> TrainingData:
  """The training batches of a stage, from `config.dataset.train_split`.

  'pad_crop': `InMemoryTrainingData` (`load_split`); 'random_resized_crop' and 'centre_crop':
  `StreamedTrainingData` (`split_examples`; `random_resized_crop` or `centre_crop_and_flip` on
  host). Either way `host_batch(step)` gives the global
  batches of a step, a function of (config.seed, step), for `loop.run`, and the jitted step
  finishes them with `augment(images, key, config.dataset, ...)`.

  Args:
    config: the full config (`dataset`, `model.image_size`, `model.num_classes`, `seed`).
    batch_size: global batch size.
    batches_per_step: batches a step uses (co-training: n_dis; fine-tuning: 1).
    rows: the rows of each global batch this process reads and augments
      (`parallel.process_rows`; all in a single process).

  Returns:
    An object with `num_examples` (size of the training split) and `host_batch(step)` ->
    images (k, b, S, S, 3) uint8 and labels (k, b) int32, the `rows` of the step's global
    batches.

  Raises:
    As `load_split`; ValueError: the split has fewer than `batch_size` examples.
  """
  d, m = config.dataset, config.model
  if not _streams(d):
    images, labels = load_split(d, d.train_split, image_size=m.image_size,
                                num_classes=m.num_classes)
    data = InMemoryTrainingData(images, labels, config.seed, batch_size, batches_per_step, rows)
    data.host_batch(0)  # Raises now if the split has fewer examples than a batch.
    return data
  return StreamedTrainingData(
      split_examples(d, d.train_split, num_classes=m.num_classes), seed=config.seed,
      batch_size=batch_size, batches_per_step=batches_per_step,
      augment=_host_augmentation(d, m.image_size), rows=rows)


def to_float(images: jax.Array) -> jax.Array:
  """uint8 images in [0, 255] -> float32 in [-1, 1]."""
  return images.astype(jnp.float32) / 127.5 - 1.0


def to_uint8(images) -> np.ndarray:
  """float images in [-1, 1] -> uint8 in [0, 255] (host numpy)."""
  images = (np.asarray(images, np.float32) + 1.0) * 127.5
  return np.clip(np.round(images), 0, 255).astype(np.uint8)


def augment(images: jax.Array, key: jax.Array, dataset_config, *,
            dequantization_noise: float) -> jax.Array:
  """The device part of the training augmentation, jittable.

  'pad_crop' (official CIFAR-10): random image_size crop after `dataset_config.crop_padding`
  zero padding (black pixels; 0 disables), horizontal flip with probability 1/2 if
  `random_flip`. 'random_resized_crop', 'centre_crop': the host already cropped and flipped the
  images (`StreamedTrainingData`), so they are only scaled. Then, in all, uniform noise.

  Args:
    images: (B, H, W, 3) uint8.
    key: PRNG key.
    dataset_config: `config.dataset` (`augmentation`, `crop_padding`, `random_flip`).
    dequantization_noise: add uniform noise in [0, this) after scaling to [-1, 1] (official
      co-training: 1/128; fine-tuning: 0).

  Returns:
    (B, H, W, 3) float32 in [-1, 1 + dequantization_noise).
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
