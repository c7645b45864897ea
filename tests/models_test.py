"""Tests of rob_gan_jax.models."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import cifar10
from configs import cifar10_preact
from configs import imagenet143_64
from configs import imagenet143_128
from configs import imagenet_128
from configs import tiny
from rob_gan_jax import models


# name: (the config whose `model` builds the official models, changes to it, trainable parameters
# of G, of D), the counts taken on the official PyTorch models (ngf = ndf = 64, nz = 128). The
# configs follow train.py; finetune.py builds resnet_small's D with BatchNorm and resnet's without.
OFFICIAL_MODELS = {
    'resnet_32': (cifar10, {}, 12_272_515, 1_056_395),
    'resnet_64': (imagenet143_64, {}, 13_038_595, 10_283_024),
    'resnet_small': (imagenet143_128, {}, 10_606_339, 8_570_896),
    'resnet_small_bn': (imagenet143_128, {'normalization': 'batch_norm'}, 10_606_339, 8_579_344),
    'resnet': (imagenet_128, {}, 41_996_931, 30_049_897),
    'resnet_no_bn': (imagenet_128, {'normalization': 'none'}, 41_996_931, 30_035_817),
    'preact_resnet18': (cifar10_preact, {}, 12_272_515, 11_164_875),
}


def official_config(name, **changes):
  module, official_changes, _, _ = OFFICIAL_MODELS[name]
  config = module.get_config().model
  config.update(official_changes)
  config.update(changes)
  return config


def count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize('name', OFFICIAL_MODELS)
def test_parameter_counts_match_official_models(name):
  config = official_config(name)
  generator, discriminator = models.create_models(config)
  z, y = jnp.zeros((1, config.z_dim)), jnp.zeros((1,), jnp.int32)
  x = jnp.zeros((1, config.image_size, config.image_size, 3))
  g = jax.eval_shape(lambda: generator.init(jax.random.PRNGKey(0), z, y, train=False))
  d = jax.eval_shape(lambda: discriminator.init(jax.random.PRNGKey(0), x, train=False))
  _, _, g_params, d_params = OFFICIAL_MODELS[name]
  assert (count(g['params']), count(d['params'])) == (g_params, d_params)
  assert ('batch_stats' in d) == (config.normalization == 'batch_norm')


@pytest.mark.parametrize('normalization', models.NORMALIZATIONS)
def test_output_shapes_and_ranges(normalization):
  config = tiny.get_config().model
  config.normalization = normalization
  generator, discriminator = models.create_models(config)
  key = jax.random.PRNGKey(0)
  z = 3.0 * jax.random.normal(key, (6, config.z_dim))
  y = jnp.arange(6) % config.num_classes
  g_vars = generator.init(key, z, y, train=False)
  images, _ = generator.apply(g_vars, z, y, train=True, mutable=['batch_stats'])
  assert images.shape == (6, 32, 32, 3) and images.dtype == jnp.float32
  assert float(jnp.min(images)) >= -1.0 and float(jnp.max(images)) <= 1.0
  d_vars = discriminator.init(key, images, train=False)
  source, classes = discriminator.apply(d_vars, images, train=False)
  assert source.shape == (6,) and classes.shape == (6, config.num_classes)
  assert ('batch_stats' in d_vars) == (normalization != 'none')


@pytest.mark.parametrize('name', ['resnet_64', 'resnet_small_bn', 'resnet'])
def test_larger_official_models_output_shapes(name):
  config = official_config(name, z_dim=8, generator_width=2, discriminator_width=2)
  generator, discriminator = models.create_models(config)
  z, y = jnp.zeros((2, config.z_dim)), jnp.array([7, config.num_classes - 1])

  def forward():  # Traced only (jax.eval_shape): shapes without the compute.
    g_vars = generator.init(jax.random.PRNGKey(0), z, y, train=False)
    images, _ = generator.apply(g_vars, z, y, train=True, mutable=['batch_stats'])
    d_vars = discriminator.init(jax.random.PRNGKey(1), images, train=False)
    return images, discriminator.apply(d_vars, images, train=True, capture_intermediates=True,
                                       mutable=['batch_stats', 'intermediates'])

  images, ((source, classes), state) = jax.eval_shape(forward)
  size = config.image_size
  assert images.shape == (2, size, size, 3) and images.dtype == jnp.float32
  assert source.shape == (2,) and classes.shape == (2, config.num_classes)
  # Widths and downsampling of the last block, before the global sum pooling.
  blocks = config.discriminator_channel_multipliers
  features = state['intermediates'][f'block{len(blocks)}']['__call__'][0]
  bottom = size // 2**sum(config.discriminator_downsample)
  assert features.shape == (2, bottom, bottom, blocks[-1] * config.discriminator_width)


@pytest.fixture(scope='module')
def preact_resnet18():
  discriminator = models.create_models(official_config('preact_resnet18'))[1]
  x = jax.random.uniform(jax.random.PRNGKey(0), (2, 32, 32, 3), minval=-1.0, maxval=1.0)
  return discriminator, discriminator.init(jax.random.PRNGKey(1), x, train=False), x


def test_preact_resnet18_forward_pass(preact_resnet18):
  discriminator, variables, x = preact_resnet18
  assert isinstance(discriminator, models.PreActResNetDiscriminator)
  assert set(variables) == {'params'}  # No BatchNorm.
  (source, classes), state = discriminator.apply(variables, x, train=True,
                                                 capture_intermediates=True,
                                                 mutable=['intermediates'])
  assert source.shape == (2,) and classes.shape == (2, 10)
  assert source.dtype == classes.dtype == jnp.float32
  np.testing.assert_allclose(discriminator.apply(variables, x, train=False)[0], source, rtol=1e-5)
  # Official: avg_pool2d(out, 4) of the last block's 4x4 map, no activation, linear heads.
  features = state['intermediates']['block8']['__call__'][0]
  assert features.shape == (2, 4, 4, 512)
  params = variables['params']
  pooled = np.asarray(features, np.float64).mean((1, 2))
  np.testing.assert_allclose(
      classes, pooled @ params['class_head']['kernel'] + params['class_head']['bias'],
      rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(
      source, pooled @ params['source_head']['kernel'][:, 0] + params['source_head']['bias'][0],
      rtol=1e-4, atol=1e-5)


def test_preact_resnet18_initialisers_follow_official(preact_resnet18):
  params = preact_resnet18[1]['params']
  # Block convs: kaiming_normal_(mode='fan_out'), std sqrt(2 / (9 out)).
  kernel = np.asarray(params['block8']['conv2']['kernel'])
  assert np.std(kernel) == pytest.approx(np.sqrt(2.0 / (9 * 512)), rel=0.01)
  # First conv, 1x1 shortcut convs, heads: PyTorch's default U(+-1/sqrt(fan_in)).
  for kernel, fan_in in ((params['conv_in']['kernel'], 27),
                         (params['block3']['conv_shortcut']['kernel'], 64),
                         (params['class_head']['kernel'], 512)):
    bound = np.max(np.abs(kernel)) * np.sqrt(fan_in)
    assert 0.95 < bound <= 1.0


@pytest.mark.parametrize('downsample, features', [(True, 6), (False, 4)])
def test_preact_block_is_the_official_block(downsample, features):
  block = models.PreActBlock(features=features, downsample=downsample, normalization='none')
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 6, 6, 4))
  params = block.init(jax.random.PRNGKey(1), x, train=False)['params']
  stride = 2 if downsample else 1

  def conv(h, kernel, stride):  # PyTorch Conv2d(k, stride, padding=k // 2, bias=False).
    pad = kernel.shape[0] // 2
    return jax.lax.conv_general_dilated(h, kernel, (stride, stride), [(pad, pad)] * 2,
                                        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))

  lrelu = lambda h: jnp.where(h > 0, h, 0.2 * h)
  h = lrelu(x)
  assert ('conv_shortcut' in params) == downsample
  shortcut = conv(h, params['conv_shortcut']['kernel'], stride) if downsample else x
  expected = conv(lrelu(conv(h, params['conv1']['kernel'], stride)), params['conv2']['kernel'],
                  1) + shortcut
  out = block.apply({'params': params}, x, train=False)
  assert out.shape == (2, 6 // stride, 6 // stride, features)
  np.testing.assert_allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize('name', ['resnet_64', 'resnet', 'preact_resnet18'])
def test_spectral_norm_switch_on_the_larger_discriminators(name):
  key = jax.random.PRNGKey(0)
  size = official_config(name).image_size
  x = jax.random.uniform(key, (2, size, size, 3), minval=-1.0, maxval=1.0)
  scale_kernels = lambda params: jax.tree_util.tree_map_with_path(
      lambda path, p: 5.0 * p if path[-1].key == 'kernel' else p, params)
  outputs = {}
  for normalization in ('spectral_norm', 'none'):
    discriminator = models.create_models(official_config(
        name, discriminator_width=2, normalization=normalization))[1]
    variables = discriminator.init(key, x, train=False)
    source, classes = discriminator.apply(variables, x, train=False)
    scaled = discriminator.apply({**variables, 'params': scale_kernels(variables['params'])}, x,
                                 train=False)
    outputs[normalization] = (np.concatenate([source[:, None], classes], 1),
                              np.concatenate([scaled[0][:, None], scaled[1]], 1))
    num_kernels = sum(path[-1].key == 'kernel' for path, _ in
                      jax.tree_util.tree_leaves_with_path(variables['params']))
    if normalization == 'none':
      assert 'batch_stats' not in variables
      continue
    # One power-iteration vector per conv and linear kernel, moved by a training pass.
    _, updates = discriminator.apply(variables, x, train=True, mutable=['batch_stats'])
    moved = jax.tree.map(lambda old, new: not np.allclose(old, new), variables['batch_stats'],
                         updates['batch_stats'])
    u_moved = [m for path, m in jax.tree_util.tree_leaves_with_path(moved)
               if path[-1].key.endswith('/u')]
    assert len(u_moved) == num_kernels and all(u_moved)
  # Every conv and linear kernel is divided by its spectral norm: scaling them changes nothing.
  np.testing.assert_allclose(*outputs['spectral_norm'], rtol=1e-4, atol=1e-5)
  assert not np.allclose(*outputs['none'], rtol=1e-2)


def test_upsample_conv_equals_upsample_then_conv():
  module = models.UpsampleConv(5)
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 4, 6, 3))
  variables = module.init(jax.random.PRNGKey(2), x)
  reference = jax.lax.conv_general_dilated(
      models.upsample_nearest(x), variables['params']['kernel'], (1, 1), 'SAME',
      dimension_numbers=('NHWC', 'HWIO', 'NHWC')) + variables['params']['bias']
  np.testing.assert_allclose(module.apply(variables, x), reference, atol=1e-5)


def test_conditional_batch_norm_uses_label_embeddings():
  module = models.ConditionalBatchNorm(num_classes=3)
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 2, 2, 5))
  y = jnp.array([0, 1, 2, 1])
  variables = module.init(jax.random.PRNGKey(0), x, y, train=False)
  params = jax.tree.map(lambda p: p, variables['params'])
  params['gamma']['embedding'] = params['gamma']['embedding'].at[1].set(2.0)
  params['beta']['embedding'] = params['beta']['embedding'].at[2].set(-1.0)
  out, _ = module.apply({**variables, 'params': params}, x, y, train=True,
                        mutable=['batch_stats'])
  mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
  normed = (x - mean) / jnp.sqrt(var + 2e-5)
  expected = normed * jnp.array([1.0, 2.0, 1.0, 2.0])[:, None, None, None]
  expected = expected + jnp.array([0.0, 0.0, -1.0, 0.0])[:, None, None, None]
  np.testing.assert_allclose(out, expected, atol=1e-4)


@pytest.mark.parametrize('momentum', [0.1, 0.9])
def test_conditional_batch_norm_running_average(momentum):
  # Official layers/cat_cond_bn.py: running = 0.1 old + 0.9 batch (Flax momentum 0.1).
  module = models.ConditionalBatchNorm(num_classes=3, momentum=momentum)
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 2, 2, 5)) + 3.0
  y = jnp.array([0, 1, 2, 1])
  variables = module.init(jax.random.PRNGKey(0), x, y, train=False)
  old = {'BatchNorm_0': {'mean': jnp.full((5,), 0.5), 'var': jnp.full((5,), 2.0)}}
  _, updates = module.apply({**variables, 'batch_stats': old}, x, y, train=True,
                            mutable=['batch_stats'])
  new = updates['batch_stats']['BatchNorm_0']
  x64 = np.asarray(x, np.float64)
  np.testing.assert_allclose(new['mean'], momentum * 0.5 + (1 - momentum) * x64.mean((0, 1, 2)),
                             rtol=1e-5)
  np.testing.assert_allclose(new['var'], momentum * 2.0 + (1 - momentum) * x64.var((0, 1, 2)),
                             rtol=1e-4)


def test_create_models_passes_both_generator_momenta():
  config = tiny.get_config().model
  assert config.conditional_bn_momentum == 0.1 and config.bn_momentum == 0.9
  config.conditional_bn_momentum = 0.3
  generator, _ = models.create_models(config)
  assert generator.conditional_bn_momentum == 0.3 and generator.bn_momentum == 0.9


def test_sample_uses_batch_statistics_unless_asked_for_running_ones():
  config = tiny.get_config().model
  generator, _ = models.create_models(config, axis_name='batch')  # As in a train step.
  local = generator.clone(axis_name=None)
  labels = jnp.array([0, 3, 3, 7, 9])
  z = jax.random.normal(jax.random.PRNGKey(4), (5, config.z_dim))
  variables = local.init(jax.random.PRNGKey(0), z, labels, train=False)
  # Running statistics far from any batch's, so the two modes differ.
  variables = {**variables, 'batch_stats': jax.tree_util.tree_map_with_path(
      lambda path, v: jnp.full_like(v, 0.3 if path[-1].key == 'mean' else 4.0),
      variables['batch_stats'])}
  batch_stats = local.apply(variables, z, labels, train=True, mutable=['batch_stats'])[0]
  running_stats = local.apply(variables, z, labels, train=False)
  sampled = models.sample(generator, variables, labels, seed=4)
  np.testing.assert_allclose(sampled, batch_stats, atol=1e-5)
  np.testing.assert_allclose(models.sample(generator, variables, labels, seed=4,
                                           running_stats=True), running_stats, atol=1e-5)
  assert float(jnp.max(jnp.abs(batch_stats - running_stats))) > 0.1


def test_bad_model_configs_raise():
  config = tiny.get_config().model
  config.normalization = 'layer_norm'
  with pytest.raises(ValueError, match='normalization'):
    models.create_models(config)
  config = tiny.get_config().model
  config.image_size = 28
  with pytest.raises(ValueError, match='image_size'):
    models.create_models(config)
  config = tiny.get_config().model
  config.discriminator_architecture = 'vgg'
  with pytest.raises(ValueError, match='discriminator_architecture'):
    models.create_models(config)
  x = jnp.zeros((1, 32, 32, 3))
  for base, overrides, match in (
      (tiny, dict(discriminator_channel_multipliers=(2, 2, 2)), 'one channel multiplier per block'),
      (tiny, dict(discriminator_downsample=(False, True, False, False)),
       'first discriminator block'),
      (cifar10_preact, dict(normalization='batch_norm', discriminator_width=2), 'no BatchNorm')):
    config = base.get_config().model
    config.update(overrides)
    discriminator = models.create_models(config)[1]
    with pytest.raises(ValueError, match=match):
      discriminator.init(jax.random.PRNGKey(0), x, train=False)
