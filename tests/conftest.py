"""Test set-up: 4 fake CPU devices (before JAX starts) and a small JPEG image folder.

Compiling dominates the fast lane's time, so there XLA compiles with its cheapest settings
(`pytest_configure`: LLVM optimisation level 0, no expensive passes; about half the compile time
of a tiny train step, the same arithmetic up to float rounding). Compiled programs are cached on
disk (JAX's persistent compilation cache), so the tests and the `main.py` subprocesses that build
the same tiny train step compile it once; the pytest-xdist workers of a run share the cache.
`ROBGAN_TEST_COMPILATION_CACHE` names a directory that several runs share (.ci/run: both lanes).
"""

import fcntl
import importlib
import importlib.util
import os
import shutil
import tempfile

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=4')
CHEAP_COMPILATION = ' --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true'
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
_RUN = os.environ.get('PYTEST_XDIST_TESTRUNUID')  # Shared by the workers of one run.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', (
    os.environ.get('ROBGAN_TEST_COMPILATION_CACHE') or
    (os.path.join(tempfile.gettempdir(), f'jax_cache_{_RUN}') if _RUN else
     tempfile.mkdtemp(prefix='jax_cache_'))))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')

import flax.linen as nn  # pylint: disable=g-import-not-at-top
import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top


def pytest_configure(config):
  """Cheap compilation in the fast lane only: the second lane's attacks run thousands of steps,
  which unoptimised code runs several times slower (APGD-T: 171 s instead of 5 s). XLA reads
  XLA_FLAGS at JAX's first computation, after this."""
  if 'not slow' in (config.option.markexpr or ''):
    os.environ['XLA_FLAGS'] += CHEAP_COMPILATION


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship',
           'truck')


def require(name: str, *, load: bool = True):
  """A test-only package (torch, torchattacks, torch_fidelity): imported (or, with load=False,
  only found: its spec), skipping the calling test or module when it is not installed, unless
  ROBGAN_REQUIRE_TORCH is set (.ci/run), where a missing one fails."""
  spec = importlib.util.find_spec(name)
  if spec is None:
    if os.environ.get('ROBGAN_REQUIRE_TORCH'):
      pytest.fail(f'{name} is not installed, and ROBGAN_REQUIRE_TORCH is set')
    pytest.skip(f'{name} is not installed', allow_module_level=True)
  return importlib.import_module(name) if load else spec


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


class TinyCNN(nn.Module):
  """The attacks' tests' classifier of 8x8x3 images: one strided convolution and a dense layer."""
  num_classes: int = 10

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(8, (3, 3), strides=2)(x))
    return nn.Dense(self.num_classes)(x.reshape(x.shape[0], -1))


def tiny_logits_fn(num_classes=10, seed=0):
  model = TinyCNN(num_classes)
  variables = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, 8, 8, 3)))
  return lambda x: model.apply(variables, x)


def tiny_cnn_batch(num_images, num_wrong):
  """(x, y): `num_images` 8x8x3 images in [-1, 1], rows 0 and 1 at the range's limits, labelled
  by `tiny_logits_fn()` but for the first `num_wrong`, labelled wrongly."""
  x = jax.random.uniform(jax.random.PRNGKey(5), (num_images, 8, 8, 3), minval=-1, maxval=1)
  x = x.at[:, 0].set(1.0).at[:, 1].set(-1.0)
  predicted = jnp.argmax(tiny_logits_fn()(x), axis=-1)
  return x, predicted.at[:num_wrong].set((predicted[:num_wrong] + 1) % 10)


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


def built_once(tmp_path_factory, name, build):
  """The directory `build(path)` writes, built once per test run: the first pytest-xdist worker
  that needs it builds it in the workers' shared temporary directory, the others wait for it."""
  shared = tmp_path_factory.getbasetemp()
  if _RUN:
    shared = shared.parent
  path = shared / name
  with open(f'{path}.lock', 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not os.path.exists(f'{path}.done'):
      build(str(path))
      open(f'{path}.done', 'w').close()
  return str(path)


def private_copy(tmp_path_factory, path):
  """A copy of a workdir for this worker alone (tests write eval/ into it and lock it)."""
  copy = tmp_path_factory.mktemp(os.path.basename(path)) / 'workdir'
  shutil.copytree(path, copy)
  return str(copy)


@pytest.fixture(scope='session')
def image_folder(tmp_path_factory):
  """A CIFAR-10-like folder: 10 classes, 32x32, 4 train and 2 test images per class."""
  return built_once(tmp_path_factory, 'images', lambda path: write_image_folder(
      path, per_class={'train': 4, 'test': 2}))


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
  from rob_gan_jax import task as task_lib  # pylint: disable=g-import-not-at-top
  config = tiny.get_config()
  config.dataset.image_folder = image_folder
  config.train.num_steps = 2
  config.finetune.stage_epochs = (0.2, 0.2)  # Batch 8, 5 steps an epoch: 1 + 1 steps.
  # No evaluators while training (tests of the hooks train their own runs): fewer compiles.
  config.evals.pgd_accuracy.update(every_steps=0, every_epochs=0)
  config.evals.sample_grid.every_steps = 0

  def build(workdir):
    cotrain.train_and_evaluate(config, task_lib.Task.from_config(config), workdir)
    finetune.train_classifier(config, task_lib.Task.from_config(config), workdir)

  return private_copy(tmp_path_factory, built_once(tmp_path_factory, 'trained', build))


@pytest.fixture(scope='session')
def trained_asgan_workdir(image_folder, tmp_path_factory):
  """A workdir with 2 AS-GAN training steps of configs/tiny.py:asgan."""
  from configs import tiny  # pylint: disable=g-import-not-at-top
  from rob_gan_jax import cotrain  # pylint: disable=g-import-not-at-top
  from rob_gan_jax import task as task_lib  # pylint: disable=g-import-not-at-top
  config = tiny.get_config('asgan')
  config.dataset.image_folder = image_folder
  config.train.num_steps = 2
  config.evals.pgd_accuracy.every_steps = config.evals.sample_grid.every_steps = 0
  return private_copy(tmp_path_factory, built_once(
      tmp_path_factory, 'trained_asgan', lambda workdir: cotrain.train_and_evaluate(
          config, task_lib.Task.from_config(config), workdir)))
