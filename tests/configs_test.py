"""The paper's settings (configs/*.py) end to end at tiny widths.

The 64-px ImageNet-143 config and the PreActResNet18 one run every mode (train, finetune, eval);
the 128-px configs, whose models are the same code at other sizes, read their data and trace a
training step without compiling it (keeping the suite short). Each AS-GAN config trains, resumes,
evaluates and refuses --mode=finetune.
"""

import os

import jax
import numpy as np
import pytest

import main
from configs import celeba64_asgan
from configs import cifar100_asgan
from configs import cifar10_asgan
from configs import cifar10_preact
from configs import imagenet143_64
from configs import imagenet143_128
from configs import imagenet_128
from configs import lsun_bedroom64_asgan
from rob_gan_jax import checkpoints
from rob_gan_jax import cotrain
from rob_gan_jax import input_pipeline
from rob_gan_jax import models
from rob_gan_jax import parallel
from rob_gan_jax import state as state_lib
from tests import conftest


def shrink(config):
  """Tiny widths, batch 8, 2 D updates per G update, 1 step of each mode, 8 eval examples."""
  m = config.model
  m.z_dim, m.generator_width, m.discriminator_width = 8, 1, 2
  config.attack.num_steps = 1
  config.train.update(batch_size=8, n_dis=2, num_steps=1, log_every_steps=1,
                      checkpoint_every_steps=1, eval_num_examples=8, samples_per_class=1)
  config.train.evaluators.update(pgd_accuracy=1, sample_grid=1)
  config.finetune.update(batch_size=8, num_steps=1, log_every_steps=1, checkpoint_every_steps=1,
                         eval_num_examples=8)
  config.finetune.attack.num_steps = 1
  config.eval.update(epsilons=(0.0, 0.02), num_examples=8, train_num_examples=8, batch_size=8)
  config.eval.attack.num_steps = 1
  return config


@pytest.fixture(scope='module')
def synset_folder(tmp_path_factory):
  """An ImageNet-style folder: the 143 dog and cat synsets plus two others, one train and one
  validation image each, of assorted sizes."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp('imagenet')
  rng = np.random.default_rng(0)
  synsets = ('n01440764', 'n15075141') + input_pipeline.imagenet143_classes()
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
  assert checkpoints.load_weights(workdir, 'cotrain').step == 1
  if 'finetune' in modes:
    assert checkpoints.load_weights(workdir, 'finetune').step == 1
  if 'eval' in modes:
    assert os.path.exists(os.path.join(workdir, 'eval', 'robustness.json'))
  weights = checkpoints.load_weights(workdir)
  generator, _ = models.create_models(config.model)
  size = config.model.image_size
  assert models.sample(generator, weights.generator, np.arange(2), seed=0).shape == (
      2, size, size, 3)
  return weights


@pytest.mark.slow
def test_imagenet143_64_trains_finetunes_and_evaluates(synset_folder, tmp_path):
  config = shrink(imagenet143_64.get_config())
  config.dataset.image_folder = synset_folder
  run_modes(config, str(tmp_path))


@pytest.mark.parametrize('module', [imagenet143_128, imagenet_128], ids=lambda m: m.__name__)
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
  data = input_pipeline.training_data(config, batch_size=8, batches_per_step=2)
  images, labels = data.host_batch(0)
  assert images.shape == (2, 8, 128, 128, 3) and images.dtype == np.uint8
  generator, discriminator = models.create_models(config.model, axis_name=parallel.AXIS)
  state = jax.eval_shape(lambda: state_lib.create_gan_state(config, generator, discriminator,
                                                            data.num_examples))
  step = cotrain.make_train_step(config, generator, discriminator, parallel.make_mesh())
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
  assert checkpoints.load_weights(workdir).step == 2
  with pytest.raises(ValueError, match='unconditional GAN'):
    main.run(config, workdir, 'finetune')
  if size == 32:  # The 64-px models are the same code; their eval would only cost compile time.
    result = main.run(config, workdir, 'eval')
    assert result['head'] == 'source' and result['stage'] == 'cotrain'
    assert all(0 <= a <= 1 for a in result['test_accuracy'])
    assert os.path.exists(os.path.join(workdir, 'eval', 'samples.png'))
  weights = checkpoints.load_weights(workdir)
  generator, _ = models.create_models(config.model)
  assert models.sample(generator, weights.generator, np.zeros(3), seed=0).shape == (
      3, size, size, 3)

