"""Data parallelism over one or many processes: the 1-D device mesh, batches, writers, loops.

Train steps are per-device code with collectives over `AXIS` (`lax.pmean`, cross-replica
BatchNorm) wrapped in `jax.shard_map` over `make_mesh()`; evaluation maps over padded batches split
over the same axis with `map_batches`.

The same code runs in one process or in many (`jax.distributed`, one process per host of a TPU
pod slice or GPU cluster). The mesh spans the devices of all processes, each process's devices a
contiguous part of it, so a global batch of B examples is fed by the processes in order: process
p gives rows `process_rows(B, mesh)` of it (`global_batch`), and nothing but its own part is
read or augmented on that host. Replicated values (the state, the metrics) are the same in every
process. Files are written by process 0 only (`is_main_process`); Orbax checkpoints are saved and
restored by all processes together.
"""

from typing import Callable, Optional, Sequence

import jax
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np

AXIS = 'batch'


def is_main_process() -> bool:
  """Whether this process writes files (config.json, summaries, images, evaluation results)."""
  return jax.process_index() == 0


def unroll_loops(unroll: Optional[bool]) -> bool:
  """`config.unroll` resolved: None is True on the CPU backend, False on GPU and TPU.

  XLA:CPU runs convolutions inside a loop body about 3x slower than unrolled (see
  `attacks.pgd_linf`); accelerators run loop bodies at full speed, and unrolling a PGD-20
  evaluation would compile 20 copies of D there.
  """
  return jax.default_backend() == 'cpu' if unroll is None else unroll


# XLA:CPU (jax 0.10) hands convolutions, dots, elementwise fusions and reductions to YNNPACK by
# default, where the weight gradients of this project's 3x3 convolutions ran about 3x slower than
# on XLA's Eigen kernels. With only reductions (BatchNorm statistics) left to YNNPACK, a CIFAR-10
# iteration is 1.6x faster at batch 64 and 1.2x at batch 16 (BENCHMARKS.md, issue 13). The same
# arithmetic runs either way; the kernels' float rounding differs.
CPU_COMPILER_OPTIONS = {'xla_cpu_experimental_ynn_fusion_type': 'LIBRARY_FUSION_TYPE_REDUCE'}


def compiler_options(cpu_eigen_convolutions: bool) -> Optional[dict]:
  """`jax.jit(compiler_options=...)` of the train steps (`config.cpu_eigen_convolutions`).

  Returns `CPU_COMPILER_OPTIONS` on the CPU backend when `cpu_eigen_convolutions`, else None
  (XLA's defaults; GPU and TPU always get None).
  """
  if cpu_eigen_convolutions and jax.default_backend() == 'cpu':
    return dict(CPU_COMPILER_OPTIONS)
  return None


def make_mesh(devices: Optional[Sequence[jax.Device]] = None) -> jax.sharding.Mesh:
  """A 1-D mesh with axis 'batch' over `devices` (default: all devices of all processes).

  Devices are ordered by process, so that each process feeds one contiguous block of every
  batch (`process_rows`).
  """
  devices = jax.devices() if devices is None else devices
  devices = sorted(devices, key=lambda d: (d.process_index, d.id))
  return jax.sharding.Mesh(np.asarray(devices), (AXIS,),
                           axis_types=(jax.sharding.AxisType.Auto,))


def check_batch_size(batch_size: int, mesh: jax.sharding.Mesh, field: str) -> None:
  """Raises ValueError if the global batch `batch_size` does not split evenly over the mesh.

  Args:
    batch_size: a global batch size.
    mesh: the mesh the batch is split over.
    field: the config field that set it, named in the error.
  """
  if batch_size % mesh.size:
    raise ValueError(f'the global batch size {batch_size} must divide by the number of devices '
                     f'({mesh.size}); change {field}')


def process_rows(batch_size: int, mesh: jax.sharding.Mesh) -> slice:
  """The rows of a global batch of `batch_size` that this process feeds to `mesh`.

  All rows in a single process; in process p of n (with equal device counts) the p-th of n
  equal blocks. `batch_size` must divide by the mesh size (`check_batch_size`).
  """
  mine = [i for i, d in enumerate(mesh.devices.flat) if d.process_index == jax.process_index()]
  per_device = batch_size // mesh.size
  return slice(mine[0] * per_device, (mine[-1] + 1) * per_device)


def global_batch(local: Sequence[np.ndarray], sharding: NamedSharding, batch_axis: int,
                 batch_size: int):
  """Global arrays of which this process holds the rows `process_rows(batch_size, mesh)`.

  Args:
    local: arrays holding this process's rows of the global batch along `batch_axis`.
    sharding: the global arrays' sharding (split along `batch_axis` over the mesh's 'batch').
    batch_axis: the axis of the batch.
    batch_size: the global batch size.

  Returns:
    A tuple of jax.Arrays, shape of each `local` array with `batch_size` at `batch_axis`.
  """
  def one(x):
    shape = x.shape[:batch_axis] + (batch_size,) + x.shape[batch_axis + 1:]
    return jax.make_array_from_process_local_data(sharding, x, shape)
  return tuple(one(np.asarray(x)) for x in local)


def replicate(tree, mesh: jax.sharding.Mesh):
  """`tree` with every array replicated on every device of `mesh` (the same in every process)."""
  return jax.device_put(tree, NamedSharding(mesh, P()))


def map_batches(fn: Callable[..., jax.Array], images: np.ndarray, labels: np.ndarray,
                batch_size: int, mesh: Optional[jax.sharding.Mesh]) -> np.ndarray:
  """Concatenated per-example outputs of `fn(x, y, start)` over padded batches.

  Batches of `batch_size` (at most N, rounded up to a multiple of the mesh size) are padded at
  the end and split over the mesh's 'batch' axis when a mesh is given; each process feeds only
  its rows of each batch (`process_rows`) and gets every row's output back. Padding rows are
  dropped.

  Args:
    fn: `fn(x (b, ...), y (b,), start: int) -> (b, ...)`, `start` the index of the batch's first
      example (for per-batch random keys).
    images: (N, ...) array, the same in every process.
    labels: (N,) array.
    batch_size: examples per call of `fn`.
    mesh: devices to split each batch over, or None for the default device.

  Returns:
    (N, ...) numpy array of `fn`'s outputs, in every process.
  """
  batch_size = max(1, min(batch_size, len(labels)))  # No batch wider than the data.
  if mesh is not None:
    batch_size = -(-batch_size // mesh.size) * mesh.size
    rows = process_rows(batch_size, mesh)
    sharding = NamedSharding(mesh, P(AXIS))
  outputs = []
  for start in range(0, len(labels), batch_size):
    x, y = images[start:start + batch_size], labels[start:start + batch_size]
    valid, pad = len(y), batch_size - len(y)
    x = np.pad(x, ((0, pad),) + ((0, 0),) * (x.ndim - 1))
    y = np.pad(y, (0, pad))
    if mesh is None:
      outputs.append(np.asarray(fn(x, y, start))[:valid])
    else:
      out = fn(*global_batch((x[rows], y[rows]), sharding, 0, batch_size), start)
      outputs.append(multihost_utils.process_allgather(out, tiled=True)[:valid])
  return np.concatenate(outputs)
