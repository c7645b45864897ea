"""Tests of rob_gan_jax.models."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from configs import tiny
from rob_gan_jax import models


def count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_default_parameter_counts_match_official_resnet_32():
  generator, discriminator = models.create_models(default.get_config().model)
  z, y = jnp.zeros((1, 128)), jnp.zeros((1,), jnp.int32)
  g = jax.eval_shape(lambda: generator.init(jax.random.PRNGKey(0), z, y, train=False))
  d = jax.eval_shape(lambda: discriminator.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)),
                                                train=False))
  assert count(g['params']) == 12_272_515
  assert count(d['params']) == 1_056_395


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
