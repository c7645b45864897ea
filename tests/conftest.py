"""Test set-up: 4 fake CPU devices (before JAX starts) and a small JPEG image folder.

Compiled programs are cached on disk for the session (JAX's persistent compilation cache), so the
tests and the `main.py` subprocesses that build the same tiny train step compile it once.
"""

import os
import tempfile

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=4')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', tempfile.mkdtemp(prefix='jax_cache_'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')

import jax  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top

CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship',
           'truck')


def write_image_folder(root, *, per_class, size=32, classes=CLASSES, seed=0):
  """Writes {train,test}/<class>/NNNN.jpg with images whose colour depends on the class."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  for split, n in per_class.items():
    for c, name in enumerate(classes):
      os.makedirs(os.path.join(root, split, name))
      for i in range(n):
        base = np.full((size, size, 3), 25 * c, np.float32)
        pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(os.path.join(root, split, name, f'{i:04d}.jpg'))
  return str(root)


def assert_same_networks(a, b):
  """G's and D's parameters and BatchNorm statistics of two GANStates equal up to float rounding
  (which differs with the reduction order, the fusion of operations, ...).

  Adam (b1 = 0, b2 = 0.9) scales each update to at most lr / sqrt(1 - b2) ~ 3.2 lr whatever the
  gradient's size, so on parameters whose true gradient is 0 (the biases of G's convolutions,
  which BatchNorm follows) it turns rounding noise into updates of that size, and the running
  means of the BatchNorms after them follow (a block's output carries two such biases, conv2's
  and the shortcut's). Those get 2 x steps x 3.2 lr; every other array (kernels, scales,
  embeddings, running variances) must agree to 2e-5 (a tenth of one update), which a wrong data
  split (O(lr) changes everywhere) would break.
  """
  assert int(a.step) == int(b.step)
  noise = 2 * int(a.step) * 2e-4 / np.sqrt(1 - 0.9)
  for net in ('generator', 'discriminator'):
    leaves = lambda state: jax.tree_util.tree_flatten_with_path(getattr(state, net).variables)[0]
    for (path, x), (_, y) in zip(leaves(a), leaves(b), strict=True):
      name = net + jax.tree_util.keystr(path)
      noisy = net == 'generator' and ("'bias'" in name or "'mean'" in name)
      np.testing.assert_allclose(x, y, err_msg=name, **(
          dict(rtol=0, atol=noise) if noisy else dict(rtol=1e-4, atol=2e-5)))


@pytest.fixture(scope='session')
def image_folder(tmp_path_factory):
  """A CIFAR-10-like folder: 10 classes, 32x32, 4 train and 2 test images per class."""
  return write_image_folder(tmp_path_factory.mktemp('data') / 'images',
                            per_class={'train': 4, 'test': 2})


@pytest.fixture
def tiny_config(image_folder):
  from configs import tiny  # pylint: disable=g-import-not-at-top
  config = tiny.get_config()
  config.dataset.image_folder = image_folder
  return config


@pytest.fixture
def tiny_asgan_config(image_folder):
  """configs/tiny.py:asgan (unconditional AS-GAN) on the test image folder."""
  from configs import tiny  # pylint: disable=g-import-not-at-top
  config = tiny.get_config('asgan')
  config.dataset.image_folder = image_folder
  return config


@pytest.fixture(scope='session')
def trained_workdir(image_folder, tmp_path_factory):
  """A workdir with 2 co-training steps and 2 fine-tuning steps of the tiny config."""
  from configs import tiny  # pylint: disable=g-import-not-at-top
  from rob_gan_jax import cotrain, finetune  # pylint: disable=g-import-not-at-top
  config = tiny.get_config()
  config.dataset.image_folder = image_folder
  config.train.num_steps = 2
  config.finetune.stage_epochs = (0.2, 0.2)  # Batch 8, 5 steps an epoch: 1 + 1 steps.
  workdir = str(tmp_path_factory.mktemp('trained'))
  cotrain.train_and_evaluate(config, workdir)
  finetune.train_classifier(config, workdir)
  return workdir


@pytest.fixture(scope='session')
def trained_asgan_workdir(image_folder, tmp_path_factory):
  """A workdir with 2 AS-GAN training steps of configs/tiny.py:asgan."""
  from configs import tiny  # pylint: disable=g-import-not-at-top
  from rob_gan_jax import cotrain  # pylint: disable=g-import-not-at-top
  config = tiny.get_config('asgan')
  config.dataset.image_folder = image_folder
  config.train.num_steps = 2
  workdir = str(tmp_path_factory.mktemp('trained_asgan'))
  cotrain.train_and_evaluate(config, workdir)
  return workdir
