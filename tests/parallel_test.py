"""Tests of rob_gan_jax.parallel on the 4 fake CPU devices of conftest."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from rob_gan_jax import parallel


def test_mesh_spans_every_device_on_the_batch_axis():
  mesh = parallel.make_mesh()
  assert mesh.axis_names == (parallel.AXIS,) and mesh.size == jax.device_count() == 4
  parallel.check_batch_size(8, mesh, 'train.batch_size')
  with pytest.raises(ValueError, match='6 must divide by the number of devices \\(4\\); change '
                     'finetune.batch_size'):
    parallel.check_batch_size(6, mesh, 'finetune.batch_size')


def test_one_process_reads_every_row_and_assembles_the_global_batch():
  mesh = parallel.make_mesh()
  assert parallel.process_rows(8, mesh) == slice(0, 8)
  local = np.arange(2 * 8 * 3).reshape(2, 8, 3)
  (batch,) = parallel.global_batch([local], NamedSharding(mesh, P(None, parallel.AXIS)), 1, 8)
  assert batch.shape == (2, 8, 3)
  np.testing.assert_array_equal(batch, local)
  assert len(batch.addressable_shards) == 4  # Two rows of each of the 8 on each device.
  assert {s.data.shape for s in batch.addressable_shards} == {(2, 2, 3)}


@pytest.mark.parametrize('use_mesh', [False, True])
def test_map_batches_pads_the_last_batch_and_returns_only_real_rows(use_mesh):
  mesh = parallel.make_mesh() if use_mesh else None
  images = np.arange(10 * 2, dtype=np.float32).reshape(10, 2)
  labels = np.arange(10, dtype=np.int32)
  starts = []

  def fn(x, y, start):
    starts.append(start)
    return jnp.sum(x, axis=1) + 100 * y

  out = parallel.map_batches(fn, images, labels, batch_size=3, mesh=mesh)
  np.testing.assert_array_equal(out, images.sum(1) + 100 * labels)
  # Batches of 3 (4 with the mesh: a multiple of its size), starting at these examples.
  assert starts == ([0, 4, 8] if use_mesh else [0, 3, 6, 9])
  one = parallel.map_batches(fn, images[:1], labels[:1], batch_size=500, mesh=None)
  assert one.shape == (1,)  # No batch wider than the data.


def test_replicate_puts_the_whole_tree_on_every_device():
  tree = {'a': np.ones((2, 3)), 'b': np.zeros(4)}
  out = parallel.replicate(tree, parallel.make_mesh())
  for leaf in jax.tree.leaves(out):
    assert leaf.sharding.is_fully_replicated and len(leaf.addressable_shards) == 4


def test_cpu_options_unroll_and_jit():
  assert parallel.unroll_loops(None) is True  # The CPU backend unrolls.
  assert parallel.unroll_loops(False) is False
  assert parallel.compiler_options(True) == parallel.CPU_COMPILER_OPTIONS
  assert parallel.compiler_options(False) is None
  square = parallel.jit(lambda x: x * x)
  assert float(square(jnp.float32(3))) == 9.0
  # Inside another jit it is a plain nested jit (compiler options are top-level only).
  assert float(jax.jit(lambda x: square(x) + 1)(jnp.float32(3))) == 10.0
  static = parallel.jit(lambda x, n: x * n, static_argnums=1)
  assert float(static(jnp.float32(2), 5)) == 10.0
