"""Tests of rob_gan_jax.input_pipeline."""

import logging
import os
import socket
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from rob_gan_jax.input_pipeline import batches
from rob_gan_jax.input_pipeline import classes as classes_lib
from rob_gan_jax.input_pipeline import sources
from rob_gan_jax.input_pipeline import splits
from rob_gan_jax.input_pipeline import transforms
from tests import conftest


def folder_config(path):
  config = default.get_config().dataset
  config.image_folder = str(path)
  return config


def test_load_split_reads_images_in_canonical_order(image_folder):
  images, labels = splits.load_split(folder_config(image_folder), 'train', image_size=32,
                                             num_classes=10)
  assert images.shape == (40, 32, 32, 3) and images.dtype == np.uint8
  np.testing.assert_array_equal(labels, np.repeat(np.arange(10), 4))  # Sorted by file name.
  # The images were drawn with brightness 25 * class.
  np.testing.assert_allclose(images.reshape(10, -1).mean(1), 25 * np.arange(10), atol=8)


def test_missing_folder_says_both_ways_to_get_data(tmp_path):
  with pytest.raises(FileNotFoundError, match='image_folder') as info:
    splits.load_split(folder_config(tmp_path / 'nope'), 'train', image_size=32,
                              num_classes=10)
  assert 'TFDS' in str(info.value)


def test_wrong_image_size_and_classes_and_split_raise(tmp_path, image_folder):
  small = conftest.write_image_folder(tmp_path / 'small', per_class={'train': 1}, size=28)
  # All 10 images are wrong: the message counts them and names the first 5.
  with pytest.raises(ValueError, match=r'^10 image.*airplane/0000.jpg has shape \(28, 28, 3\), '
                     r'expected \(32, 32, 3\).* and 5 more$'):
    splits.load_split(folder_config(small), 'train', image_size=32, num_classes=10)
  with pytest.raises(ValueError, match='classes'):
    splits.load_split(folder_config(image_folder), 'train', image_size=32,
                              num_classes=100)
  with pytest.raises(ValueError, match='validation'):
    splits.load_split(folder_config(image_folder), 'validation', image_size=32,
                              num_classes=10)


def test_undecodable_image_is_named(tmp_path):
  root = conftest.write_image_folder(tmp_path / 'images', per_class={'train': 2})
  cat = os.path.join(root, 'train', 'cat', '0001.jpg')
  with open(cat, 'rb') as f:
    data = f.read()
  with open(cat, 'wb') as f:
    f.write(data[:len(data) // 2])  # Truncated.
  with pytest.raises(ValueError, match=r'^1 image.*: train/cat/0001.jpg cannot be decoded$'):
    splits.load_split(folder_config(root), 'train', image_size=32, num_classes=10)


def test_image_of_the_wrong_size_is_named_with_its_shape(tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  root = conftest.write_image_folder(tmp_path / 'images', per_class={'train': 2})
  Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(
      os.path.join(root, 'train', 'dog', '0000.jpg'))
  with pytest.raises(ValueError, match=r'^1 image.*: train/dog/0000.jpg has shape '
                     r'\(64, 64, 3\), expected \(32, 32, 3\)$'):
    splits.load_split(folder_config(root), 'train', image_size=32, num_classes=10)


@pytest.mark.parametrize('augmentation', ['pad_crop', 'random_resized_crop'])
def test_splits_with_different_class_folders_raise(tmp_path, augmentation):
  root = conftest.write_image_folder(tmp_path / 'images', per_class={'train': 1, 'test': 1})
  conftest.write_image_folder(tmp_path / 'more', per_class={'test': 1}, classes=('unicorn',))
  os.rename(tmp_path / 'more' / 'test' / 'unicorn', os.path.join(root, 'test', 'unicorn'))
  config = folder_config(root)
  config.augmentation = augmentation
  # Reading either split checks all of them (TFDS would count 11 classes).
  with pytest.raises(ValueError, match=r"'unicorn' is in test/ but not in train/$"):
    splits.load_split(config, 'train', image_size=32, num_classes=10)


def test_empty_class_folder_is_logged(tmp_path, caplog):
  root = conftest.write_image_folder(tmp_path / 'images', per_class={'train': 1, 'test': 1})
  os.remove(os.path.join(root, 'train', 'cat', '0000.jpg'))
  with caplog.at_level(logging.WARNING):
    _, labels = splits.load_split(folder_config(root), 'test', image_size=32,
                                          num_classes=10)
  assert len(labels) == 10 and not caplog.records  # The test split has every class.
  with caplog.at_level(logging.WARNING):
    _, labels = splits.load_split(folder_config(root), 'train', image_size=32,
                                          num_classes=10)
  assert len(labels) == 9 and 3 not in labels
  assert [r.levelno for r in caplog.records] == [logging.WARNING]
  assert os.path.join(root, 'train', 'cat') in caplog.records[0].getMessage()


def test_tfds_download_runs_up_to_the_http_request(tmp_path, monkeypatch):
  """Issue 8 item 0: TFDS's download code imports packages (importlib_resources) we must install."""
  import requests  # pylint: disable=g-import-not-at-top
  from tensorflow_datasets.core.download import downloader  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(downloader, 'MAX_RETRIES', 0)  # Its urllib3 retries back off for ~200 s.
  with socket.socket() as closed_port:  # Bound, not listening: connections are refused at once.
    closed_port.bind(('127.0.0.1', 0))
    proxy = 'http://127.0.0.1:%d' % closed_port.getsockname()[1]
    for var in ('http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY'):
      monkeypatch.setenv(var, proxy)  # The request fails whether the machine is online or not.
    for var in ('no_proxy', 'NO_PROXY'):
      monkeypatch.delenv(var, raising=False)
    config = default.get_config().dataset
    config.name, config.data_dir, config.image_folder = 'cifar10', str(tmp_path), None
    with pytest.raises(FileNotFoundError, match='could not be downloaded') as info:
      splits.load_split(config, 'train', image_size=32, num_classes=10)
  chain = [info.value]
  while chain[-1].__cause__ or chain[-1].__context__:
    chain.append(chain[-1].__cause__ or chain[-1].__context__)
  assert not any(isinstance(e, ImportError) for e in chain), chain
  assert any(isinstance(e, requests.exceptions.ConnectionError) for e in chain), chain


def test_tfds_download_fails_at_once_when_its_hosts_cannot_be_resolved(tmp_path, monkeypatch):
  for var in ('http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'all_proxy', 'ALL_PROXY'):
    monkeypatch.delenv(var, raising=False)

  def offline(host, *args, **kwargs):
    raise socket.gaierror(socket.EAI_NONAME, 'Name or service not known')

  monkeypatch.setattr(socket, 'getaddrinfo', offline)
  config = default.get_config().dataset
  config.name, config.data_dir, config.image_folder = 'cifar10', str(tmp_path), None
  start = time.monotonic()
  with pytest.raises(FileNotFoundError, match=r'(?s)cannot resolve www\.cs\.toronto\.edu \(offline'
                                              r'.*image_folder'):
    splits.load_split(config, 'train', image_size=32, num_classes=10)
  assert time.monotonic() - start < 30  # Not TFDS's minutes of retries.


def test_batch_indices_are_a_function_of_seed_and_step():
  epoch0 = np.concatenate([batches.batch_indices(7, i, num_examples=10, batch_size=3)
                           for i in range(3)])
  assert len(set(epoch0.tolist())) == 9  # No repeats within an epoch; the remainder is dropped.
  np.testing.assert_array_equal(batches.batch_indices(7, 4, num_examples=10, batch_size=3),
                                batches.batch_indices(7, 4, num_examples=10, batch_size=3))
  assert not np.array_equal(batches.batch_indices(7, 0, num_examples=10, batch_size=3),
                            batches.batch_indices(8, 0, num_examples=10, batch_size=3))


def test_augment_range_crop_and_flip():
  images = np.full((64, 32, 32, 3), 255, np.uint8)
  images[:, :, :16] = 0
  config = default.get_config().dataset
  x = transforms.augment(jnp.asarray(images), jax.random.PRNGKey(0), config,
                             dequantization_noise=1 / 128)
  assert x.shape == (64, 32, 32, 3) and x.dtype == jnp.float32
  assert float(x.min()) >= -1.0 and float(x.max()) < 1.0 + 1 / 128
  left_dark = np.asarray(x[:, 10, 0, 0] < 0)
  assert 0 < left_dark.sum() < 64  # Some flipped, some not.
  config.crop_padding, config.random_flip = 0, False
  plain = transforms.augment(jnp.asarray(images), jax.random.PRNGKey(0), config,
                                 dequantization_noise=0.0)
  np.testing.assert_array_equal(plain, transforms.to_float(images))


def test_augment_only_scales_host_augmented_images():
  """'random_resized_crop': crop and flip happened on host; the device adds only the noise."""
  images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), np.uint8)
  config = default.get_config().dataset
  config.augmentation = 'random_resized_crop'
  x = transforms.augment(jnp.asarray(images), jax.random.PRNGKey(0), config,
                             dequantization_noise=1 / 128)
  noise = np.asarray(x - transforms.to_float(images))
  assert 0 <= noise.min() and noise.max() < 1 / 128 and noise.std() > 1e-3


def test_host_batch_is_the_batches_of_step_s(image_folder):
  images, labels = splits.load_split(folder_config(image_folder), 'train', image_size=32,
                                             num_classes=10)
  kwargs = dict(seed=3, batch_size=8)
  x, y = batches.host_batch(images, labels, 2, batches_per_step=3, **kwargs)
  assert x.shape == (3, 8, 32, 32, 3) and x.dtype == np.uint8 and y.shape == (3, 8)
  # Step 2 of 3 batches a step holds batches 6, 7, 8 (epochs of 40 // 8 = 5 batches).
  for i, batch in enumerate((6, 7, 8)):
    idx = batches.batch_indices(3, batch, num_examples=40, batch_size=8)
    np.testing.assert_array_equal(x[i], images[idx])
    np.testing.assert_array_equal(y[i], labels[idx])
  # One batch a step: step s is batch s.
  x1, y1 = batches.host_batch(images, labels, 7, **kwargs)
  np.testing.assert_array_equal(x1, x[1:2])
  np.testing.assert_array_equal(y1, y[1:2])
  with pytest.raises(ValueError, match='fewer than one batch'):
    batches.host_batch(images, labels, 0, seed=3, batch_size=41)


def test_training_data_holds_exact_size_data_in_memory(tiny_config):
  tiny_config.seed = 3
  data = splits.training_data(tiny_config, batch_size=8, batches_per_step=3)
  images, labels = splits.load_split(tiny_config.dataset, 'train', image_size=32,
                                             num_classes=10)
  assert data.num_examples == 40
  for got, expected in zip(data.host_batch(2), batches.host_batch(
      images, labels, 2, seed=3, batch_size=8, batches_per_step=3)):
    np.testing.assert_array_equal(got, expected)
  with pytest.raises(ValueError, match='fewer than one batch'):
    splits.training_data(tiny_config, batch_size=41)
  # A process of a multi-process run gets its rows of the same global batches.
  rows = splits.training_data(tiny_config, batch_size=8, batches_per_step=3,
                                      rows=slice(4, 8))
  for got, expected in zip(rows.host_batch(2), data.host_batch(2)):
    np.testing.assert_array_equal(got, expected[:, 4:8])


def test_load_subset_is_a_fixed_function_of_the_seed(tiny_config):
  images, labels = splits.load_subset(tiny_config, 'test', 5)
  assert images.shape == (5, 32, 32, 3) and labels.shape == (5,)
  again, _ = splits.load_subset(tiny_config, 'test', 5)
  np.testing.assert_array_equal(images, again)
  everything, all_labels = splits.load_subset(tiny_config, 'test', None)
  assert len(everything) == 20 and sorted(all_labels) == sorted(np.repeat(np.arange(10), 2))
  tiny_config.seed = 1
  other, _ = splits.load_subset(tiny_config, 'test', 5)
  assert not np.array_equal(images, other)


# The streaming path ('random_resized_crop'): images of any size, decoded and augmented on host.


def write_images(root, images):
  """Writes {relative path: (H, W, 3) or (H, W) uint8 array} (PNG is lossless, JPEG is not)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  for name, pixels in images.items():
    path = os.path.join(root, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(pixels).save(path)
  return str(root)


def streaming_config(root, *, image_size=32, num_classes=2, **dataset):
  config = default.get_config()
  config.dataset.image_folder = str(root)
  config.dataset.augmentation = 'random_resized_crop'
  config.dataset.update(dataset)
  config.model.image_size, config.model.num_classes = image_size, num_classes
  return config


def constant(value, height, width):
  return np.full((height, width, 3), value, np.uint8)


@pytest.fixture(scope='module')
def mixed_folder(tmp_path_factory):
  """2 classes (brightness 40 and 200), 6 training images of different sizes, one grayscale."""
  root = tmp_path_factory.mktemp('mixed')
  sizes = [(40, 50), (64, 64), (50, 40), (37, 90), (64, 48), (33, 33)]
  images = {f'train/{c}/{i}.{"png" if i % 2 else "jpg"}': constant(value, *sizes[(i + c) % 6])
            for c, value in enumerate((40, 200)) for i in range(6)}
  images['train/0/5.png'] = np.full((45, 70), 40, np.uint8)  # Grayscale.
  images.update({f'test/{c}/0.png': constant(value, 48, 40)
                 for c, value in enumerate((40, 200))})
  return write_images(root, images)


def test_streaming_reads_images_of_any_size_and_grayscale(mixed_folder):
  config = streaming_config(mixed_folder)
  data = splits.training_data(config, batch_size=4, batches_per_step=2)
  assert data.num_examples == 12
  images, labels = data.host_batch(0)
  assert images.shape == (2, 4, 32, 32, 3) and images.dtype == np.uint8
  assert labels.shape == (2, 4) and labels.dtype == np.int32
  # Each image is one colour, that of its class: labels go with their images.
  np.testing.assert_allclose(images.mean((2, 3, 4)), np.where(labels == 1, 200, 40), atol=3)
  everything, all_labels = splits.load_split(config.dataset, 'train', image_size=32,
                                                     num_classes=2)
  assert everything.shape == (12, 32, 32, 3)
  np.testing.assert_array_equal(all_labels, np.repeat([0, 1], 6))
  np.testing.assert_array_equal(everything[5], constant(40, 32, 32))  # The grayscale one.
  test_images, test_labels = splits.load_subset(config, 'test', None)
  assert test_images.shape == (2, 32, 32, 3) and sorted(test_labels) == [0, 1]


def gradient_image(height, width):
  """Red = row index, green = column index: a crop shows where it was taken."""
  rows, cols = np.mgrid[:height, :width]
  return np.stack([rows, cols, np.zeros_like(rows)], -1).astype(np.uint8)


def crop_window(image):
  """(first, side) in input pixels along each axis, from the ramps of a resized gradient crop.

  The centre of output pixel i of n comes from input coordinate first - 0.5 + (i + 0.5) side / n
  (a linear ramp survives antialiased resizing away from the borders).
  """
  n = image.shape[0]
  i = np.arange(2, n - 2)
  windows = []
  for profile in (image[:, :, 0].mean(1), image[:, :, 1].mean(0)):  # Red by row, green by column.
    slope, intercept = np.polyfit(i, profile[i], 1)
    side = abs(slope) * n
    start = intercept if slope > 0 else intercept + slope * (n - 1)
    windows.append((start + 0.5 - side / (2 * n), side, slope < 0))
  return windows


def test_random_resized_crop_keeps_the_crop_scale_of_the_area():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  crop = lambda image, seed: transforms.random_resized_crop(
      tf.constant(image), tf.constant([7, seed], tf.int64), image_size=32,
      crop_scale=(0.8, 0.9), random_flip=True).numpy()
  square = gradient_image(200, 200)
  flips, tops = [], []
  for seed in range(24):
    out = crop(square, seed)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    (top, height, row_flip), (left, width, flip) = crop_window(out)
    assert not row_flip and abs(height - width) < 1  # Square, flipped only left-right.
    assert 0.8 - 0.01 < height * width / 200**2 < 0.9 + 0.01
    assert -0.5 < top and top + height < 200.5 and -0.5 < left and left + width < 200.5
    flips.append(flip)
    tops.append(round(top))
  assert 0 < sum(flips) < 24 and len(set(tops)) > 3  # Random flips and places.
  np.testing.assert_array_equal(crop(square, 3), crop(square, 3))  # A function of the seed.
  # No square of 80% of the area fits in 100 x 160: the centre square, as torchvision does.
  (top, height, _), (left, width, _) = crop_window(crop(gradient_image(100, 160), 0))
  np.testing.assert_allclose([top, height, left, width], [0, 100, 30, 100], atol=0.5)


def test_streaming_batch_of_step_s_is_the_same_after_a_resume(mixed_folder):
  config = streaming_config(mixed_folder, crop_scale=(0.5, 0.6))
  kwargs = dict(batch_size=4, batches_per_step=2)  # 3 batches an epoch: steps cross epochs.
  data = splits.training_data(config, **kwargs)
  straight = [data.host_batch(step) for step in range(4)]
  resumed = splits.training_data(config, **kwargs)
  for step in (3, 3, 1, 2):  # A fresh pipeline at 3, the same call again, then backwards.
    for got, expected in zip(resumed.host_batch(step), straight[step]):
      np.testing.assert_array_equal(got, expected)
  examples = sources.split_examples(config.dataset, 'train', num_classes=2, channels=3)
  np.testing.assert_array_equal(straight[3][1], examples.labels[batches.step_indices(
      config.seed, 3, num_examples=12, **kwargs)])
  assert not np.array_equal(straight[0][0], straight[1][0])
  # A process of a multi-process run reads and augments only its rows, as a single one does.
  for step in (1, 2):
    for got, expected in zip(splits.training_data(config, rows=slice(2, 4), **kwargs)
                             .host_batch(step), straight[step]):
      np.testing.assert_array_equal(got, expected[:, 2:4])
  config.seed = 1
  assert not np.array_equal(splits.training_data(config, **kwargs).host_batch(3)[0],
                            straight[3][0])


def test_eval_resizes_the_short_side_and_crops_the_centre(tmp_path):
  landscape = np.arange(6 * 10 * 3, dtype=np.uint8).reshape(6, 10, 3)
  portrait = np.ascontiguousarray(landscape.transpose(1, 0, 2))
  root = write_images(tmp_path, {'test/a/0.png': landscape, 'test/a/1.png': portrait,
                                 'test/b/0.png': constant(77, 30, 18),
                                 'test/b/1.png': np.full((9, 6), 130, np.uint8)})
  images, labels = splits.load_split(streaming_config(root).dataset, 'test',
                                             image_size=6, num_classes=2)
  np.testing.assert_array_equal(labels, [0, 0, 1, 1])
  np.testing.assert_array_equal(images[0], landscape[:, 2:8])  # Short side 6 already.
  np.testing.assert_array_equal(images[1], portrait[2:8])
  np.testing.assert_array_equal(images[2], constant(77, 6, 6))  # Resized to 6 x 10, cropped.
  np.testing.assert_array_equal(images[3], constant(130, 6, 6))  # Grayscale, cropped.


@pytest.mark.parametrize('augmentation', ['pad_crop', 'random_resized_crop'])
def test_both_paths_name_an_unreadable_image_alike(tmp_path, augmentation):
  root = write_images(tmp_path, {f'{split}/{c}/{i}.jpg': constant(9, 32, 32)
                                 for split in ('train', 'test') for c in 'ab' for i in range(2)})
  with open(os.path.join(root, 'train', 'b', '1.jpg'), 'r+b') as f:
    f.truncate(200)
  config = streaming_config(root, augmentation=augmentation)
  message = (r"^1 image\(s\) of split 'train' of .* cannot be read: train/b/1.jpg cannot be "
             r"decoded$")
  with pytest.raises(ValueError, match=message):  # Streamed: every step has every image.
    splits.training_data(config, batch_size=4).host_batch(0)
  with pytest.raises(ValueError, match=message):
    splits.load_subset(config, 'train', None)
  assert len(splits.load_subset(config, 'test', None)[0]) == 4


def test_both_paths_list_a_folder_alike_in_label_order(tmp_path):
  """One listing: class folders in label order (not path order, 'cat-2/' < 'cat/'), files by name,
  any letter case of the extension, other files left out."""
  names = ['cat/b.png', 'cat/a.PNG', 'cat-2/a.png', 'dog/a.png', 'dog/notes.txt']
  files = {f'{split}/{name}': constant(10 * i, 32, 32) for i, name in enumerate(names)
           for split in ('train', 'test') if not name.endswith('.txt')}
  root = write_images(tmp_path, files)
  with open(os.path.join(root, 'train', 'dog', 'notes.txt'), 'w') as f:
    f.write('not an image')
  for classes, num_classes, brightness, expected in (
      (None, 3, [10, 0, 20, 30], [0, 0, 1, 2]),
      (('dog', 'cat'), 2, [30, 10, 0], [0, 1, 1]),
      (None, 0, [10, 0, 20, 30], [0, 0, 0, 0])):
    for augmentation in ('pad_crop', 'random_resized_crop'):
      config = streaming_config(root, augmentation=augmentation, classes=classes)
      images, labels = splits.load_split(config.dataset, 'train', image_size=32,
                                                 num_classes=num_classes)
      np.testing.assert_array_equal(images[:, 0, 0, 0], brightness)
      np.testing.assert_array_equal(labels, expected)


SYNSETS = ('n01440764', 'n02085620', 'n02085782', 'n02086240')  # ImageNet classes 0, 151-153.


@pytest.fixture(scope='module')
def synset_folder(tmp_path_factory):
  """An ImageNet-style folder: one 32x32 image a synset, of brightness 50 x (1 + position)."""
  return write_images(tmp_path_factory.mktemp('imagenet'), {
      f'{split}/{name}/{name}_0.JPEG': constant(50 * (i + 1), 32, 32)
      for split in ('train', 'val') for i, name in enumerate(SYNSETS)})


def test_imagenet143_is_classes_151_to_293():
  classes = classes_lib.imagenet143_classes()
  assert len(classes) == 143 and classes[:2] == SYNSETS[1:3] and classes[-1] == 'n02130308'


@pytest.mark.parametrize('augmentation', ['random_resized_crop', 'pad_crop'])
def test_classes_are_selected_by_name_in_the_given_order(synset_folder, augmentation):
  config = streaming_config(synset_folder, augmentation=augmentation,
                            classes=('n02085782', 'n02085620'))
  images, labels = splits.load_subset(config, 'val', None)
  assert sorted(labels) == [0, 1]
  # n02085782 (brightness 150) is class 0, n02085620 (100) class 1; the others are left out.
  np.testing.assert_allclose(images.mean((1, 2, 3)), np.where(labels == 0, 150, 100), atol=2)


def test_missing_or_bad_classes_raise(synset_folder):
  config = streaming_config(synset_folder, classes='imagenet143', num_classes=143)
  missing = [name for name in classes_lib.imagenet143_classes() if name not in SYNSETS]
  with pytest.raises(ValueError, match=rf"/train' lacks 140 of the 143 classes of "
                     rf"dataset.classes='imagenet143': {'; '.join(missing[:5])}; "
                     r"\.\.\. and 135 more$"):
    splits.training_data(config, batch_size=1)
  config.dataset.augmentation = 'pad_crop'  # The in-memory path checks the same.
  with pytest.raises(ValueError, match='lacks 140 of the 143 classes'):
    splits.load_subset(config, 'val', 4)
  config.dataset.classes = 'imagenet1000'
  with pytest.raises(ValueError, match="must be None, 'imagenet143' or a tuple"):
    splits.load_subset(config, 'val', 4)
  config.dataset.classes, config.model.num_classes = SYNSETS[:3], 4
  with pytest.raises(ValueError, match='has 3 classes, but model.num_classes is 4'):
    splits.load_subset(config, 'val', 4)


@pytest.mark.parametrize('field, value, match', [
    ('augmentation', 'random_crop', 'dataset.augmentation must be one of'),
    ('crop_scale', (0.9, 0.8), 'dataset.crop_scale must be'),
])
def test_bad_dataset_config_raises(mixed_folder, field, value, match):
  config = streaming_config(mixed_folder, **{field: value})
  with pytest.raises(ValueError, match=match):
    splits.training_data(config, batch_size=4)


def test_tfds_data_set_streams_by_index_with_class_selection(tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  features = tfds.features.FeaturesDict({
      'image': tfds.features.Image(shape=(None, None, 3)),
      'label': tfds.features.ClassLabel(names=SYNSETS)})
  examples = [(i, {'image': constant(50 * (i % 4 + 1), 40 + i, 50), 'label': i % 4})
              for i in range(8)]
  for name, file_format in (('synsets_ar', 'array_record'), ('synsets_tfr', 'tfrecord')):
    tfds.dataset_builders.store_as_tfds_dataset(
        name=name, version='1.0.0', features=features, split_datasets={'train': examples},
        data_dir=str(tmp_path), file_format=file_format)
  config = streaming_config(None, image_folder=None, name='synsets_ar', data_dir=str(tmp_path),
                            classes=('n02085782', 'n02085620'))
  data = splits.training_data(config, batch_size=2, batches_per_step=2)
  assert data.num_examples == 4
  images, labels = data.host_batch(1)
  assert images.shape == (2, 2, 32, 32, 3)
  np.testing.assert_allclose(images.mean((2, 3, 4)), np.where(labels == 0, 150, 100), atol=2)
  config.dataset.name = 'synsets_tfr'
  with pytest.raises(ValueError, match="stored as tfrecord.*--file_format=array_record"):
    splits.training_data(config, batch_size=2)


# Unconditional GANs (model.num_classes == 0): every image, labelled 0; 'centre_crop'.


@pytest.fixture(scope='module')
def unlabelled_folder(tmp_path_factory):
  """train/all/ (5 images, CelebA-like: one folder) and test/{a,b}/ (2 each): folders differ."""
  root = tmp_path_factory.mktemp('unlabelled') / 'images'
  conftest.write_image_folder(root, per_class={'train': 5}, classes=('all',))
  return conftest.write_image_folder(root, per_class={'test': 2}, classes=('a', 'b'), seed=1)


def test_unconditional_folder_uses_every_image_labelled_0(unlabelled_folder):
  results = {}
  for augmentation in ('pad_crop', 'random_resized_crop'):  # In memory and streamed.
    config = streaming_config(unlabelled_folder, num_classes=0, augmentation=augmentation)
    images, labels = splits.load_split(config.dataset, 'train', image_size=32,
                                               num_classes=0)
    assert images.shape == (5, 32, 32, 3) and labels.dtype == np.int32
    np.testing.assert_array_equal(labels, np.zeros(5))
    results[augmentation] = images
    _, test_labels = splits.load_subset(config, 'test', None)  # Two folders: both read.
    np.testing.assert_array_equal(test_labels, np.zeros(4))
    data = splits.training_data(config, batch_size=2, batches_per_step=2)
    batch_images, batch_labels = data.host_batch(1)
    assert data.num_examples == 5 and batch_images.shape == (2, 2, 32, 32, 3)
    assert batch_labels.dtype == np.int32 and not batch_labels.any()
  # 32 x 32 files: the streaming path's evaluation images are the files, as in memory.
  np.testing.assert_array_equal(results['pad_crop'], results['random_resized_crop'])


@pytest.mark.parametrize('augmentation', ['pad_crop', 'centre_crop'])
def test_unconditional_model_rejects_dataset_classes(unlabelled_folder, augmentation):
  config = streaming_config(unlabelled_folder, num_classes=0, augmentation=augmentation,
                            classes=('all',))
  with pytest.raises(ValueError, match=r'dataset.classes must be None for an unconditional GAN '
                     r"\(model.num_classes=0\), got \('all',\)"):
    splits.training_data(config, batch_size=2)


def test_centre_crop_and_flip_flips_as_random_resized_crop_does():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  image = tf.constant(np.random.default_rng(0).integers(0, 256, (8, 8, 3), np.uint8))
  outputs = []
  for number in range(16):
    seed = tf.constant([5, number], tf.int64)
    # A crop of the whole of an image of the output size only flips it, or not.
    expected = transforms.random_resized_crop(image, seed, image_size=8,
                                                  crop_scale=(1.0, 1.0), random_flip=True)
    got = transforms.centre_crop_and_flip(image, seed, image_size=8, random_flip=True)
    np.testing.assert_array_equal(got, expected)
    outputs.append(np.array_equal(got, image))
  assert 0 < sum(outputs) < 16  # Some flipped, some not.


def test_centre_crop_trains_on_the_flipped_centre_crop(tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  files = {f'train/all/{i}.png': rng.integers(0, 256, (40, 48, 3), np.uint8) for i in range(6)}
  config = streaming_config(write_images(tmp_path, files), image_size=16, num_classes=0,
                            augmentation='centre_crop', crop_scale=(0.1, 0.2))
  centre = [transforms.resize_and_centre_crop(tf.constant(files[f'train/all/{i}.png']),
                                                  16).numpy() for i in range(6)]
  kwargs = dict(batch_size=4, batches_per_step=2)
  images, labels = splits.training_data(config, **kwargs).host_batch(1)
  assert images.shape == (2, 4, 16, 16, 3) and images.dtype == np.uint8
  assert labels.shape == (2, 4) and not labels.any()
  indices = batches.step_indices(config.seed, 1, num_examples=6, **kwargs)
  flipped = []
  for image, i in zip(images.reshape(8, 16, 16, 3), indices.ravel()):
    flipped.append(np.array_equal(image, centre[i][:, ::-1]))
    assert flipped[-1] or np.array_equal(image, centre[i])
  assert 0 < sum(flipped) < 8
  for got, expected in zip(splits.training_data(config, **kwargs).host_batch(1),
                           (images, labels)):  # A function of (seed, step).
    np.testing.assert_array_equal(got, expected)
  config.dataset.random_flip = False
  images, _ = splits.training_data(config, **kwargs).host_batch(1)
  np.testing.assert_array_equal(images.reshape(8, 16, 16, 3), np.stack(centre)[indices.ravel()])


def test_unconditional_tfds_data_sets_with_and_without_labels(tmp_path):
  """TFDS data sets with labels (cifar10) and without (celeb_a, lsun), in memory and streamed."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  image = tfds.features.Image(shape=(None, None, 3))
  label = tfds.features.ClassLabel(names=('a', 'b'))
  file_formats = {'pad_crop': 'tfrecord', 'centre_crop': 'array_record'}  # What each path reads.
  for name, features in (('unlabelled', {'image': image}),
                         ('labelled', {'image': image, 'label': label})):
    examples = [(i, {'image': constant(40 * (i + 1), 32, 32), 'label': i % 2}) for i in range(5)]
    for file_format in file_formats.values():
      tfds.dataset_builders.store_as_tfds_dataset(
          name=f'{name}_{file_format}', version='1.0.0',
          features=tfds.features.FeaturesDict(features), data_dir=str(tmp_path),
          split_datasets={'train': [(i, {k: ex[k] for k in features}) for i, ex in examples]},
          file_format=file_format)
  for name in ('unlabelled', 'labelled'):
    for augmentation, file_format in file_formats.items():
      config = streaming_config(None, image_folder=None, name=f'{name}_{file_format}',
                                data_dir=str(tmp_path), augmentation=augmentation, num_classes=0)
      images, labels = splits.load_split(config.dataset, 'train', image_size=32,
                                                 num_classes=0)
      np.testing.assert_array_equal(labels, np.zeros(5))
      np.testing.assert_allclose(np.sort(images.mean((1, 2, 3))), 40 * np.arange(1, 6), atol=1)
      _, batch_labels = splits.training_data(config, batch_size=2).host_batch(0)
      assert batch_labels.shape == (1, 2) and not batch_labels.any()
  # Without an 'id' feature (lsun, celeb_a), images are named by TFDS's '<file>__<index>'.
  config.dataset.name, config.dataset.augmentation = 'unlabelled_tfrecord', 'pad_crop'
  with pytest.raises(ValueError, match=r'^5 image.*: unlabelled_tfrecord-train.tfrecord-00000-of-'
                     r'00001__0 has shape \(32, 32, 3\), expected \(16, 16, 3\);'):
    splits.load_split(config.dataset, 'train', image_size=16, num_classes=0)
  for augmentation, file_format in file_formats.items():  # A conditional model needs labels.
    config.dataset.name, config.dataset.augmentation = f'unlabelled_{file_format}', augmentation
    config.model.num_classes = 2
    with pytest.raises(ValueError, match=f"'unlabelled_{file_format}' has no 'label' feature .*; "
                       'set model.num_classes=0 for an unconditional GAN$'):
      splits.training_data(config, batch_size=2)


# Grayscale data (Fashion-MNIST): model.image_channels=1.


def store_grayscale_tfds(data_dir, name='gray', file_format='tfrecord'):
  """A TFDS data set of 6 28x28x1 images in 2 classes, brightness 40 (class 0) and 200 (class 1)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  features = tfds.features.FeaturesDict({
      'image': tfds.features.Image(shape=(28, 28, 1)),
      'label': tfds.features.ClassLabel(names=('dark', 'light'))})
  examples = [(i, {'image': np.full((28, 28, 1), (40, 200)[i % 2], np.uint8), 'label': i % 2})
              for i in range(6)]
  tfds.dataset_builders.store_as_tfds_dataset(
      name=name, version='1.0.0', features=features, data_dir=str(data_dir),
      split_datasets={'train': examples}, file_format=file_format)


def test_grayscale_tfds_data_set_in_memory_and_its_shape_checked_first(tmp_path):
  store_grayscale_tfds(tmp_path)
  config = streaming_config(None, image_folder=None, name='gray', data_dir=str(tmp_path),
                            augmentation='pad_crop', image_size=28)
  config.model.image_channels = 1
  data = splits.training_data(config, batch_size=2, batches_per_step=1)
  images, labels = data.host_batch(0)
  assert images.shape == (1, 2, 28, 28, 1) and images.dtype == np.uint8
  np.testing.assert_array_equal(images.mean((2, 3, 4)), np.where(labels == 0, 40, 200))
  # Another shape fails before any image is read, naming the model fields that would fit.
  with pytest.raises(ValueError, match=r"^TFDS data set 'gray' has images of shape \(28, 28, 1\),"
                     r' but the model takes \(32, 32, 3\) .*--config.model.image_size=28 .*'
                     r'--config.model.image_channels=1; configs/fashion_mnist.py'):
    splits.load_split(config.dataset, 'train', image_size=32, num_classes=2)


def test_grayscale_folder_and_streaming_decode_to_one_channel(mixed_folder):
  """RGB and grayscale files become (S, S, 1) luma for a grayscale model, on both paths."""
  config = streaming_config(mixed_folder, image_size=16)
  config.model.image_channels = 1
  images, labels = splits.training_data(config, batch_size=4).host_batch(0)
  assert images.shape == (1, 4, 16, 16, 1)
  np.testing.assert_allclose(images.mean((2, 3, 4)), np.where(labels == 0, 40, 200), atol=2)
  test_images, _ = splits.load_subset(config, 'test', None)
  assert test_images.shape == (2, 16, 16, 1)
