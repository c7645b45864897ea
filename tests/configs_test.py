"""The paper's settings (configs/*.py) end to end at tiny widths.

The 64-px ImageNet-143 config and the PreActResNet18 one run every mode (train, finetune, eval);
the 128-px configs, whose models are the same code at other sizes, read their data and trace a
training step without compiling it (keeping the suite short). Each AS-GAN config trains, resumes,
evaluates and refuses --mode=finetune.
"""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import main
from configs import celeba64_asgan
from configs import cifar100_asgan
from configs import cifar10_asgan
from configs import cifar10_preact
from configs import fashion_mnist
from configs import imagenet143_64
from configs import imagenet143_128
from configs import imagenet_128
from configs import lsun_bedroom64_asgan
from rob_gan_jax import cotrain
from rob_gan_jax import finetune
from rob_gan_jax import models
from rob_gan_jax import parallel
from rob_gan_jax import state as state_lib
from rob_gan_jax import task as task_lib
from rob_gan_jax import workdir as workdir_lib
from rob_gan_jax.input_pipeline import classes
from rob_gan_jax.input_pipeline import splits
from rob_gan_jax.models import sampling
from tests import conftest


def shrink(config):
  """Tiny widths, batch 8, 2 D updates per G update, 1 step of each mode, 8 eval examples."""
  m = config.model
  m.z_dim, m.generator_width, m.discriminator_width = 8, 1, 2
  config.attack.num_steps = 1
  config.train.update(batch_size=8, n_dis=2, num_steps=1, log_every_steps=1,
                      checkpoint_every_steps=1)
  config.evals.pgd_accuracy.update(every_steps=1, cotrain_num_examples=8, finetune_num_examples=8)
  config.evals.sample_grid.update(every_steps=1, samples_per_class=1)
  config.finetune.update(batch_size=8, num_steps=1, log_every_steps=1, checkpoint_every_steps=1)
  config.finetune.attack.num_steps = 1
  config.eval.update(epsilons=(0.0, 0.02), num_examples=8, train_num_examples=8, batch_size=8)
  config.eval.attack.num_steps = 1
  # A D of 2 channels after 1 update may well predict one class.
  config.train.collapse_guard.patience = config.finetune.collapse_guard.patience = 0
  return config


@pytest.fixture(scope='module')
def synset_folder(tmp_path_factory):
  """An ImageNet-style folder: the 143 dog and cat synsets plus two others, one train and one
  validation image each, of assorted sizes."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp('imagenet')
  rng = np.random.default_rng(0)
  synsets = ('n01440764', 'n15075141') + classes.imagenet143_classes()
  for split in ('train', 'validation'):
    for i, synset in enumerate(synsets):
      os.makedirs(root / split / synset)
      size = (40 + i % 30, 50 + i % 20, 3)
      Image.fromarray(rng.integers(0, 256, size, np.uint8)).save(
          root / split / synset / f'{synset}_{i}.JPEG')
  return str(root)


def run_modes(config, workdir, modes=('train', 'finetune', 'eval')):
  """Runs `modes` with main.run; returns the latest stage's weights."""
  for mode in modes:
    main.run(config, workdir, mode)
  assert workdir_lib.load_weights(workdir, 'cotrain').step == 1
  if 'finetune' in modes:
    assert workdir_lib.load_weights(workdir, 'finetune').step == 1
  if 'eval' in modes:
    assert os.path.exists(os.path.join(workdir, 'eval', 'robustness.json'))
  weights = workdir_lib.load_weights(workdir)
  generator, _ = models.create_models(config.model)
  size = config.model.image_size
  assert sampling.sample(generator, weights.generator, np.arange(2), seed=0).shape == (
      2, size, size, 3)
  return weights


@pytest.mark.slow
def test_imagenet143_64_trains_finetunes_and_evaluates(synset_folder, tmp_path):
  config = shrink(imagenet143_64.get_config())
  config.dataset.image_folder = synset_folder
  run_modes(config, str(tmp_path))


@pytest.mark.parametrize('module', [pytest.param(imagenet143_128, marks=pytest.mark.slow),
                                    imagenet_128], ids=lambda m: m.__name__)
def test_128px_configs_read_their_data_and_trace_a_training_step(module, synset_folder,
                                                               tmp_path):
  """The 128-px models are the 64-px code at other sizes (their parameter counts are pinned in
  models_test.py); their data and a whole training step are checked here without compiling."""
  config = shrink(module.get_config())
  if module is imagenet_128:
    config.model.num_classes = 10  # 1000 classes in the real data; 10 folders here.
    config.dataset.image_folder = conftest.write_image_folder(
        tmp_path / 'data', per_class={'train': 1, 'validation': 1}, size=48)
  else:
    config.dataset.image_folder = synset_folder
  data = splits.training_data(config, batch_size=8, batches_per_step=2)
  images, labels = data.host_batch(0)
  assert images.shape == (2, 8, 128, 128, 3) and images.dtype == np.uint8
  generator, discriminator = models.create_models(config.model, axis_name=parallel.AXIS)
  state = jax.eval_shape(lambda: state_lib.create_gan_state(config, generator, discriminator,
                                                            data.num_examples))
  settings = cotrain.Settings.from_config(config, task_lib.Task.from_config(config), generator,
                                          discriminator)
  step = cotrain.make_train_step(config, settings, parallel.make_mesh())
  new_state, metrics = jax.eval_shape(step, state, images, labels)
  assert jax.tree.map(lambda a: (a.shape, a.dtype), new_state) == jax.tree.map(
      lambda a: (a.shape, a.dtype), state)
  assert metrics['d_loss'].shape == ()


@pytest.mark.slow
def test_cifar10_preact_trains_finetunes_and_evaluates(image_folder, tmp_path):
  config = shrink(cifar10_preact.get_config())
  config.dataset.image_folder = image_folder
  weights = run_modes(config, str(tmp_path))
  assert not jax.tree.leaves(weights.discriminator['batch_stats'])  # No BatchNorm.


@pytest.fixture(scope='module')
def unlabelled_folder(tmp_path_factory):
  """A CelebA/LSUN-like folder without classes: `<split>/all/*.jpg`, non-square images."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp('faces')
  rng = np.random.default_rng(1)
  for split in ('train', 'test', 'validation'):
    os.makedirs(root / split / 'all')
    for i in range(10):
      Image.fromarray(rng.integers(0, 256, (80 + i, 66, 3), np.uint8)).save(
          root / split / 'all' / f'{i:06d}.jpg')
  return str(root)


@pytest.mark.slow
@pytest.mark.parametrize('module', [cifar10_asgan, cifar100_asgan, celeba64_asgan,
                                    lsun_bedroom64_asgan], ids=lambda m: m.__name__)
def test_asgan_config_trains_resumes_and_evaluates(module, image_folder, unlabelled_folder,
                                                   tmp_path):
  config = shrink(module.get_config())
  size = config.model.image_size
  config.dataset.image_folder = image_folder if size == 32 else unlabelled_folder
  workdir = str(tmp_path)
  main.run(config, workdir, 'train')
  config.train.num_steps = 2
  main.run(config, workdir, 'train')  # Resumes from step 1.
  assert workdir_lib.load_weights(workdir).step == 2
  with pytest.raises(ValueError, match='unconditional GAN'):
    main.run(config, workdir, 'finetune')
  if size == 32:  # The 64-px models are the same code; their eval would only cost compile time.
    result = main.run(config, workdir, 'eval')
    assert result['head'] == 'source' and result['stage'] == 'cotrain'
    assert all(0 <= a <= 1 for a in result['test_accuracy'])
    assert os.path.exists(os.path.join(workdir, 'eval', 'samples.png'))
  weights = workdir_lib.load_weights(workdir)
  generator, _ = models.create_models(config.model)
  assert sampling.sample(generator, weights.generator, np.zeros(3), seed=0).shape == (
      3, size, size, 3)



# Fashion-MNIST (configs/fashion_mnist.py): 28x28 grayscale, every variant.


def flat(tree, prefix=''):
  """{'a.b': value} of a nested dict."""
  out = {}
  for key, value in tree.items():
    out.update(flat(value, f'{prefix}{key}.') if isinstance(value, dict)
               else {f'{prefix}{key}': value})
  return out


def test_fashion_mnist_variants_differ_only_where_they_say():
  base = flat(fashion_mnist.get_config().to_dict())
  changes = {}
  for variant in fashion_mnist.VARIANTS[1:]:
    new = flat(fashion_mnist.get_config(variant).to_dict())
    changes[variant] = {k for k, v in new.items() if base.get(k) != v}
  assert changes['noattack'] == {'attack.num_steps'}
  assert changes['vanilla'] == changes['asgan'] | {'attack.num_steps'}
  assert {'method', 'model.num_classes'} <= changes['asgan']
  assert changes['quickstart'] == {'train.num_steps'}
  with pytest.raises(ValueError, match='must be one of'):
    fashion_mnist.get_config('mnist')


@pytest.mark.parametrize('variant', ['', 'madry', 'asgan'])
def test_fashion_mnist_variants_trace_a_training_step_on_28px_grayscale(variant):
  """The models, state and whole training step of each kind of run at the data's shape, traced
  without compiling; the radii are those the config documents."""
  config = fashion_mnist.get_config(variant)
  m = config.model
  assert (m.image_size, m.image_channels) == (28, 1) and config.dataset.name == 'fashion_mnist'
  assert config.eval.epsilons == (0.0, 0.1, 0.2, 0.3, 0.4)
  task = task_lib.Task.from_config(config)
  generator, discriminator = models.create_models(m, axis_name=parallel.AXIS)
  mesh = parallel.make_mesh()
  if task.method == 'madry':
    assert config.finetune.attack.epsilon == 0.2
    f = config.finetune
    state = jax.eval_shape(lambda: state_lib.create_classifier_state(
        config, task, generator, discriminator, 60_000))
    settings = finetune.Settings.from_config(config, generator, discriminator)
    step = finetune.make_classifier_step(config, task, settings, mesh)
    shape = (1, f.batch_size, 28, 28, 1)
  else:
    assert config.attack.epsilon == 0.2
    state = jax.eval_shape(lambda: state_lib.create_gan_state(config, generator, discriminator,
                                                              60_000))
    settings = cotrain.Settings.from_config(config, task, generator, discriminator)
    step = cotrain.make_train_step(config, settings, mesh)
    shape = (config.train.n_dis, config.train.batch_size, 28, 28, 1)
  images = jax.ShapeDtypeStruct(shape, np.uint8)
  labels = jax.ShapeDtypeStruct(shape[:2], np.int32)
  new_state, metrics = jax.eval_shape(step, state, images, labels)
  assert jax.tree.map(lambda a: (a.shape, a.dtype), new_state) == jax.tree.map(
      lambda a: (a.shape, a.dtype), state)
  assert all(v.shape == () for v in metrics.values())


@pytest.fixture(scope='module')
def shared_tfds_dir():
  """The TFDS data_dir beside the checkout with fashion_mnist prepared (CI has it)."""
  path = os.path.join(os.path.dirname(conftest.REPO), 'shared', 'data', 'tfds')
  if not os.path.isdir(os.path.join(path, 'fashion_mnist')):
    pytest.skip(f'no prepared fashion_mnist in {path}')
  return path


@pytest.mark.slow
@pytest.mark.parametrize('variant', ['', 'madry', 'asgan'])
def test_fashion_mnist_trains_and_evaluates_offline(variant, shared_tfds_dir, tmp_path):
  """The real Fashion-MNIST through a TFDS data_dir: every mode of the variant at tiny widths."""
  config = shrink(fashion_mnist.get_config(variant))
  config.dataset.data_dir = shared_tfds_dir
  config.eval.epsilons = (0.0, 0.2)
  workdir = str(tmp_path)
  modes = {'': ('train', 'finetune', 'eval'), 'madry': ('train', 'eval'),
           'asgan': ('train', 'eval')}[variant]
  for mode in modes:
    main.run(config, workdir, mode)
  result = json.load(open(os.path.join(workdir, 'eval', 'robustness.json')))
  assert all(0 <= a <= 1 for a in result['test_accuracy'])
  if variant != 'madry':
    weights = workdir_lib.load_weights(workdir, 'cotrain')
    generator, _ = models.create_models(config.model)
    images = sampling.sample(generator, weights.generator, np.arange(3) % 10, seed=0)
    assert images.shape == (3, 28, 28, 1)
    assert os.path.exists(os.path.join(workdir, 'eval', 'samples.png'))


@pytest.mark.slow
def test_fashion_mnist_through_tfds_default_data_dir(shared_tfds_dir, tmp_path):
  """With no dataset.data_dir, main.py finds the data where TFDS keeps what it downloads
  (TFDS_DATA_DIR), as on a machine that downloaded it."""
  workdir = tmp_path / 'run'
  shrunk = ['--config.model.z_dim=8', '--config.model.generator_width=1',
            '--config.model.discriminator_width=2', '--config.train.batch_size=8',
            '--config.train.num_steps=1', '--config.train.n_dis=1',
            '--config.evals.pgd_accuracy.every_steps=0', '--config.evals.sample_grid.every_steps=1',
            '--config.evals.sample_grid.samples_per_class=1']
  result = subprocess.run(
      [sys.executable, 'main.py', '--config=configs/fashion_mnist.py', f'--workdir={workdir}',
       *shrunk], cwd=conftest.REPO, capture_output=True, text=True, timeout=600,
      env=dict(os.environ, TFDS_DATA_DIR=shared_tfds_dir))
  assert result.returncode == 0, result.stderr[-3000:]
  assert workdir_lib.load_weights(str(workdir), 'cotrain').step == 1
  assert os.path.exists(workdir / 'samples' / 'step_0000001.png')
