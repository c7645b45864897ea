"""Tests of rob_gan_jax.models."""

import functools
import importlib.util
import os
import re

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import cifar10
from configs import cifar10_asgan
from configs import cifar10_preact
from configs import default
from configs import imagenet143_64
from configs import imagenet143_128
from configs import imagenet_128
from configs import tiny
from rob_gan_jax import models
from rob_gan_jax.models import layers
from rob_gan_jax.models import preact
from rob_gan_jax.models import sampling
from tests import conftest


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
    # Unconditional (AS-GAN). cnn_32: gen_models/ and dis_models/cnn_32.py (bn=False).
    'cnn_32': (cifar10_asgan, {}, 3_828_739, 5_860_865),
    # gen_models/resnet_32_unsup.py, with the cnn_32 D.
    'resnet_32_unsup': (cifar10_asgan, dict(generator_architecture='resnet_unsup',
                                            generator_channel_multipliers=(4, 4, 4, 4)),
                        5_849_603, 5_860_865),
    # resnet_32 G and D (bn=True) built with n_classes=0. G: 12,272,515 - 18 x 2,880 = 12,220,675,
    # the blocks' class-conditional BatchNorms (gamma and beta, 10 x C each) becoming affine ones
    # (2 x C each) over C = 1024 + 512 + 512 + 256 + 256 + 128 + 128 + 64 = 2,880 channels.
    # D: 1,056,395 - 1,290 = 1,055,105, without the class head Linear(128, 10).
    'resnet_32_nosup': (default, dict(num_classes=0), 12_220_675, 1_055_105),
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
  assert isinstance(discriminator, preact.PreActResNetDiscriminator)
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
  block = preact.PreActBlock(features=features, downsample=downsample, normalization='none')
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


@pytest.mark.parametrize('name', [  # The same switch: one in the fast lane.
    pytest.param('resnet_64', marks=pytest.mark.slow), pytest.param('resnet', marks=pytest.mark.slow),
    pytest.param('preact_resnet18', marks=pytest.mark.slow), 'cnn_32'])
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
  module = layers.UpsampleConv(5)
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 4, 6, 3))
  variables = module.init(jax.random.PRNGKey(2), x)
  reference = jax.lax.conv_general_dilated(
      layers.upsample_nearest(x), variables['params']['kernel'], (1, 1), 'SAME',
      dimension_numbers=('NHWC', 'HWIO', 'NHWC')) + variables['params']['bias']
  np.testing.assert_allclose(module.apply(variables, x), reference, atol=1e-5)


def test_avg_pool2_averages_2x2_blocks_and_drops_an_odd_edge():
  x = jnp.arange(2 * 5 * 7 * 3, dtype=jnp.float32).reshape(2, 5, 7, 3)
  pooled = layers.avg_pool2(x)
  assert pooled.shape == (2, 2, 3, 3)  # PyTorch's avg_pool2d(x, 2) floors 5 x 7 to 2 x 3.
  # x[n, h, w, c] = 105 n + 21 h + 3 w + c: block (i, j) averages h = 2i, 2i+1, w = 2j, 2j+1.
  assert float(pooled[1, 1, 2, 0]) == 105 + 21 * 2.5 + 3 * 4.5
  assert float(pooled[0, 0, 0, 2]) == 21 * 0.5 + 3 * 0.5 + 2
  np.testing.assert_allclose(pooled, flax.linen.avg_pool(x, (2, 2), strides=(2, 2)), rtol=1e-6)


def test_conditional_batch_norm_uses_label_embeddings():
  module = layers.ConditionalBatchNorm(num_classes=3)
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
  module = layers.ConditionalBatchNorm(num_classes=3, momentum=momentum)
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


@pytest.mark.parametrize('name, changes', [
    ('resnet_32', {}), ('resnet_32', dict(normalization='spectral_norm')),
    ('cnn_32', dict(normalization='batch_norm')), ('resnet_32_unsup', {}),
    ('preact_resnet18', dict(normalization='spectral_norm'))])
def test_bfloat16_models_convolve_in_bfloat16_with_float32_variables_and_outputs(name, changes):
  generator, discriminator = models.create_models(official_config(
      name, z_dim=8, generator_width=2, discriminator_width=2, dtype='bfloat16', **changes))
  assert generator.dtype == discriminator.dtype == jnp.bfloat16
  z, y = jnp.zeros((2, 8)), jnp.array([0, 1])
  images = jnp.zeros((2, 32, 32, 3))

  def forward(model, *inputs):  # Lowered only: dtypes and the StableHLO, without the compute.
    variables = model.init(jax.random.PRNGKey(0), *inputs, train=False)
    return variables, model.apply(variables, *inputs, train=True, mutable=['batch_stats'])

  for model, inputs in ((generator, (z, y)), (discriminator, (images,))):
    lowered = jax.jit(functools.partial(forward, model, *inputs)).lower()
    variables, (outputs, updates) = lowered.out_info
    # Parameters, BatchNorm statistics, spectral norm's u and sigma and the outputs (G's images,
    # D's logits) are float32.
    assert {leaf.dtype for leaf in jax.tree.leaves((variables, updates, outputs))} == {
        jnp.dtype(jnp.float32)}
    # Every convolution (G's sub-pixel and transposed ones included) is bfloat16.
    convolutions = re.findall(r'stablehlo\.convolution.*: \((.*)\) ->', lowered.as_text())
    assert convolutions and all(re.fullmatch(r'tensor<\S*xbf16>, tensor<\S*xbf16>', operands)
                                for operands in convolutions)


@pytest.mark.slow  # The dtype switch is checked in the fast lane by the test above.
def test_bfloat16_models_are_close_to_float32():
  config = tiny.get_config().model
  config.dtype = 'bfloat16'
  generator, discriminator = models.create_models(config)
  discriminator32 = models.create_models(tiny.get_config().model)[1]
  key = jax.random.PRNGKey(0)
  z, y = jax.random.normal(key, (8, config.z_dim)), jnp.arange(8) % config.num_classes
  # The variables and the outputs of a training pass (batch statistics, as in a D step), in one
  # compiled program a model.
  init = lambda model, *inputs: jax.jit(functools.partial(model.init_with_output, train=True))(
      key, *inputs)
  images, _ = init(generator, z, y)
  assert images.dtype == jnp.float32
  assert float(jnp.min(images)) >= -1.0 and float(jnp.max(images)) <= 1.0
  logits, d_vars = init(discriminator, images)
  logits32, _ = jax.jit(functools.partial(discriminator32.apply, train=True,
                                          mutable=['batch_stats']))(d_vars, images)
  assert logits[0].dtype == logits[1].dtype == jnp.float32
  logits, logits32 = (np.concatenate([source[:, None], classes], 1)
                      for source, classes in (logits, logits32))
  # The largest |logit| is 20-180 (an untrained D's sum pooling). Measured on seeds 0-39, the
  # largest bfloat16 error is at most 0.77% of it (0.46% here); 3% leaves a margin of 4x.
  np.testing.assert_allclose(logits, logits32, rtol=0, atol=0.03 * np.max(np.abs(logits32)))


def test_model_dtype_is_checked():
  config = tiny.get_config().model
  config.dtype = 'float16'
  with pytest.raises(ValueError, match=r"model.dtype must be one of \('float32', 'bfloat16'\)"):
    models.create_models(config)
  config.dtype = 'float32'
  generator, discriminator = models.create_models(config)
  assert generator.dtype == discriminator.dtype == jnp.float32


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
  sampled = sampling.sample(generator, variables, labels, seed=4)
  np.testing.assert_allclose(sampled, batch_stats, atol=1e-5)
  np.testing.assert_allclose(sampling.sample(generator, variables, labels, seed=4,
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


@functools.lru_cache(maxsize=None)
def tiny_unconditional(name):
  """(G, D, G's variables, D's variables) of OFFICIAL_MODELS[name] at widths 2 and z_dim 8."""
  generator, discriminator = models.create_models(official_config(
      name, z_dim=8, generator_width=2, discriminator_width=2))
  init = lambda model, x: jax.jit(functools.partial(model.init, train=False))(
      jax.random.PRNGKey(0), x)
  return (generator, discriminator, init(generator, jnp.zeros((1, 8))),
          init(discriminator, jnp.zeros((1, 32, 32, 3))))


@pytest.mark.parametrize('name', ['cnn_32', 'resnet_32_unsup', 'resnet_32_nosup'])
def test_unconditional_output_shapes_and_ranges(name):
  generator, discriminator, g_vars, d_vars = tiny_unconditional(name)
  # The labels are ignored: `sample` takes them for the batch size only.
  images = sampling.sample(generator, g_vars, np.zeros(4), seed=0)
  np.testing.assert_array_equal(sampling.sample(generator, g_vars, np.arange(4), seed=0), images)
  assert images.shape == (4, 32, 32, 3) and images.dtype == jnp.float32
  assert float(jnp.min(images)) >= -1.0 and float(jnp.max(images)) <= 1.0
  source, classes = discriminator.apply(d_vars, images, train=False)
  assert source.shape == (4,) and classes.shape == (4, 0)
  assert source.dtype == classes.dtype == jnp.float32


@pytest.mark.parametrize('architecture', models.DISCRIMINATORS)
def test_unconditional_discriminators_have_no_class_head(architecture):
  discriminator = models.create_models(official_config(
      'resnet_32_nosup', discriminator_architecture=architecture, discriminator_width=2,
      normalization='spectral_norm'))[1]
  x = jnp.zeros((2, 32, 32, 3))

  def forward():  # Traced only (jax.eval_shape).
    variables = discriminator.init(jax.random.PRNGKey(0), x, train=False)
    return variables, discriminator.apply(variables, x, train=False)

  variables, (source, classes) = jax.eval_shape(forward)
  assert 'class_head' not in variables['params'] and 'source_head' in variables['params']
  assert source.shape == (2,) and classes.shape == (2, 0) and classes.dtype == jnp.float32


def test_unconditional_resnet_generator_uses_plain_batch_norm():
  generator = models.create_models(official_config('resnet_32_nosup', generator_width=2))[0]
  variables = jax.eval_shape(lambda: generator.init(
      jax.random.PRNGKey(0), jnp.zeros((1, 128)), train=False))
  block = variables['params']['block1']
  assert jax.tree.map(jnp.shape, {k: block[k] for k in ('bn1', 'bn2')}) == {
      'bn1': {'scale': (32,), 'bias': (32,)}, 'bn2': {'scale': (16,), 'bias': (16,)}}
  assert set(variables['batch_stats']['block1']) == {'bn1', 'bn2'}


def test_unconditional_initialisers():
  def conv_kernels(params):
    return np.concatenate([np.ravel(v) for path, v in flax.traverse_util.flatten_dict(
        params).items() if path[-1] == 'kernel' and 'conv' in path[-2]])

  _, _, g_vars, d_vars = tiny_unconditional('cnn_32')
  g, d = g_vars['params'], d_vars['params']
  u = tiny_unconditional('resnet_32_unsup')[2]['params']
  # Convolutions: the official weights_init, N(0, 0.02) (for resnet_32_unsup its evident intent).
  for kernels in (conv_kernels(g), conv_kernels(d), conv_kernels(u)):
    assert np.std(kernels) == pytest.approx(0.02, rel=0.1) and abs(np.mean(kernels)) < 2e-3
  # resnet_32_unsup's linear: N(0, sqrt(1 / z_dim)), z_dim = 8.
  assert np.std(u['linear']['kernel']) == pytest.approx(8**-0.5, rel=0.1)
  # cnn_32's linears: PyTorch's default U(+-1/sqrt(fan_in)).
  for kernel, fan_in in ((g['linear']['kernel'], 8), (d['source_head']['kernel'], 4 * 4 * 16)):
    assert 0.95 < np.max(np.abs(kernel)) * np.sqrt(fan_in) <= 1.0
  assert not np.any(g['deconv1']['bias']) and np.all(g['bn1']['scale'] == 1.0)


def test_cnn_models_at_64_pixels():
  config = official_config('cnn_32', z_dim=8, generator_width=2, discriminator_width=2,
                           image_size=64, num_upsample=4,
                           generator_channel_multipliers=(16, 8, 4, 2, 1),
                           discriminator_channel_multipliers=(1, 2, 4, 8, 16),
                           discriminator_downsample=(True, True, True, True, False))
  generator, discriminator = models.create_models(config)

  def forward():  # Traced only (jax.eval_shape).
    z = jnp.zeros((2, config.z_dim))
    g_vars = generator.init(jax.random.PRNGKey(0), z, train=False)
    images = generator.apply(g_vars, z, train=False)
    d_vars = discriminator.init(jax.random.PRNGKey(1), images, train=False)
    return g_vars, images, d_vars, discriminator.apply(d_vars, images, train=False)

  g_vars, images, d_vars, (source, classes) = jax.eval_shape(forward)
  assert images.shape == (2, 64, 64, 3) and images.dtype == jnp.float32
  assert g_vars['params']['deconv4']['kernel'].shape == (4, 4, 2, 4)
  assert source.shape == (2,) and classes.shape == (2, 0)
  # The last (4 x 4 x 16 width) map is flattened into the source head.
  assert d_vars['params']['source_head']['kernel'].shape == (4 * 4 * 32, 1)


def test_bad_unconditional_configs_raise():
  for changes, match in ((dict(generator_architecture='dcgan'), 'generator_architecture'),
                         (dict(num_classes=-1), 'num_classes'),
                         (dict(num_classes=10), 'unconditional')):
    with pytest.raises(ValueError, match=match):
      models.create_models(official_config('cnn_32', **changes))
  key, z = jax.random.PRNGKey(0), jnp.zeros((1, 8))
  for name, changes in (('cnn_32', dict(num_upsample=2, image_size=16)),
                        ('resnet_32_unsup', dict(generator_channel_multipliers=(4, 4, 4)))):
    generator = models.create_models(official_config(name, z_dim=8, **changes))[0]
    with pytest.raises(ValueError, match='num_upsample'):
      generator.init(key, z, train=False)
  with pytest.raises(ValueError, match='needs labels'):  # Class-conditional.
    models.create_models(tiny.get_config().model)[0].init(key, z, train=False)
  discriminator = models.create_models(official_config(
      'cnn_32', discriminator_downsample=(True, True, True, True)))[1]
  with pytest.raises(ValueError, match='last CNN discriminator block'):
    discriminator.init(key, jnp.zeros((1, 32, 32, 3)), train=False)


REFERENCE = os.environ.get('ROBGAN_REFERENCE', os.path.join(
    os.path.dirname(__file__), '..', '..', 'shared', 'reference', 'robgan-official'))


def official_module(path):
  """Imports the official PyTorch file `path` of the reference code, or skips."""
  conftest.require('torch')
  file = os.path.join(REFERENCE, path)
  if not os.path.exists(file):
    pytest.skip(f'no official code at {file} (set ROBGAN_REFERENCE)')
  spec = importlib.util.spec_from_file_location('official_' + re.sub(r'\W', '_', path), file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def params_from_torch(torch_model, rename):
  """Flax params from the torch model's layers; `rename` maps a torch layer name to a Flax path.

  Linear (out, in) -> kernel (in, out); Conv2d (out, in, h, w) and ConvTranspose2d
  (in, out, h, w) -> kernel (h, w, in, out) resp. (h, w, out, in) by the same transposition
  (the Flax ConvTranspose stores the forward-conv kernel); BatchNorm weight -> scale.
  """
  import torch  # pylint: disable=g-import-not-at-top
  flat = {}
  for name, layer in torch_model.named_modules():
    if isinstance(layer, torch.nn.Linear):
      weights = {'kernel': layer.weight.detach().numpy().T}
    elif isinstance(layer, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
      weights = {'kernel': layer.weight.detach().numpy().transpose(2, 3, 1, 0)}
    elif isinstance(layer, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
      weights = {'scale': layer.weight.detach().numpy()}
    else:
      continue
    weights['bias'] = layer.bias.detach().numpy()
    flat.update({rename(name) + (key,): jnp.asarray(w) for key, w in weights.items()})
  return flax.traverse_util.unflatten_dict(flat)


def rename_cnn_generator(name):
  return ({'l0': 'linear', 'dc4': 'deconv_out'}.get(name) or name.replace('dc', 'deconv'),)


def rename_cnn_discriminator(name):
  if name == 'l4':
    return ('source_head',)
  return (re.sub(r'^c(\d_\d)$', r'conv\1', re.sub(r'^bn(\d_\d)$', r'conv\1_bn', name)),)


def rename_unsup_generator(name):
  top = {'l0': 'linear', 'bn2': 'bn_out', 'c3': 'conv_out'}
  if name in top:
    return (top[name],)
  block, layer = name.split('.')  # r0.c0 -> block1/conv0.
  return (f'block{int(block[1:]) + 1}',
          {'c0': 'conv0', 'c1': 'conv1', 'cs': 'conv_shortcut'}.get(layer, layer))


def load_cnn_generator(module):
  return module.Generator(ch=4, dim_z=8)


def load_unsup_generator(module):
  module.upsample = module.UpResBlock.upsample  # Undefined in the official file.
  return module.ResNetGenerator(ch=4, dim_z=8)


# name: (official file, its model at ch=4 and nz=8, Flax names, our config, changes to it).
OFFICIAL_FORWARD = {
    'cnn_32_G': ('gen_models/cnn_32.py', load_cnn_generator, rename_cnn_generator, 'cnn_32',
                 {}),
    'resnet_32_unsup_G': ('gen_models/resnet_32_unsup.py', load_unsup_generator,
                          rename_unsup_generator, 'resnet_32_unsup', {}),
    'cnn_32_D': ('dis_models/cnn_32.py', lambda m: m.Discriminator(ch=4),
                 rename_cnn_discriminator, 'cnn_32', {}),
    'cnn_32_D_bn': ('dis_models/cnn_32.py', lambda m: m.Discriminator(ch=4, bn=True),
                    rename_cnn_discriminator, 'cnn_32', {'normalization': 'batch_norm'}),
}


@pytest.mark.filterwarnings('ignore:.*upsample.* is deprecated:UserWarning')  # Official code.
@pytest.mark.parametrize('name', OFFICIAL_FORWARD)
def test_forward_pass_equals_the_official_model(name):
  path, load, rename, config_name, changes = OFFICIAL_FORWARD[name]
  torch_model = load(official_module(path))
  import torch  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  for layer in torch_model.modules():  # Random weights keeping the activations O(1).
    if isinstance(layer, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
      torch.nn.init.uniform_(layer.weight, 0.5, 1.5)
      torch.nn.init.uniform_(layer.bias, -0.5, 0.5)
    elif isinstance(layer, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
      torch.nn.init.kaiming_normal_(layer.weight)
      torch.nn.init.uniform_(layer.bias, -0.1, 0.1)
  params = params_from_torch(torch_model, rename)
  # The reference runs in float64 (same weights): PyTorch's float32 CPU results vary from run
  # to run (threading) by up to 1e-4 here, BatchNorm over a batch of 4 amplifying the rounding.
  torch_model.double().train()  # Batch statistics in both.
  generator, discriminator = models.create_models(official_config(
      config_name, z_dim=8, generator_width=4, discriminator_width=4, **changes))
  is_generator = name.endswith('_G')
  model = generator if is_generator else discriminator
  if is_generator:
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 8))
    torch_x = np.asarray(x, np.float64)
  else:
    x = jax.random.uniform(jax.random.PRNGKey(0), (4, 32, 32, 3), minval=-1.0, maxval=1.0)
    torch_x = np.asarray(x, np.float64).transpose(0, 3, 1, 2)
  variables = model.init(jax.random.PRNGKey(1), x, train=False)
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, variables['params'])
  out, _ = model.apply({**variables, 'params': params}, x, train=True, mutable=['batch_stats'])
  with torch.no_grad():
    expected = torch_model(torch.from_numpy(np.ascontiguousarray(torch_x))).numpy()
  if is_generator:
    expected = expected.transpose(0, 2, 3, 1)
  else:
    out, classes = out
    assert classes.shape == (4, 0)
  assert out.shape == expected.shape
  assert np.std(expected) > 0.1  # Neither saturated nor constant.
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('name', ['resnet_32', 'cnn_32'])
def test_grayscale_28px_models(name):
  """model.image_channels=1 and a 7 x 2**2 layout (configs/fashion_mnist.py): G makes
  (B, 28, 28, 1) images, D reads them."""
  config = official_config(name, image_size=28, image_channels=1, bottom_width=7,
                           num_upsample=2, z_dim=8, generator_width=2, discriminator_width=2)
  config.generator_channel_multipliers = config.generator_channel_multipliers[-3:]
  generator, discriminator = models.create_models(config)
  z, y = jnp.zeros((3, 8)), jnp.arange(3) % max(config.num_classes, 1)
  images = jax.eval_shape(lambda: generator.apply(
      generator.init(jax.random.PRNGKey(0), z, y, train=False), z, y, train=False))
  assert images.shape == (3, 28, 28, 1)
  x = jnp.zeros(images.shape)
  source, _ = jax.eval_shape(lambda: discriminator.apply(
      discriminator.init(jax.random.PRNGKey(0), x, train=False), x, train=False))
  assert source.shape == (3,)
  config.image_channels = 2
  with pytest.raises(ValueError, match='model.image_channels must be 1 .* or 3 .*, got 2'):
    models.create_models(config)
