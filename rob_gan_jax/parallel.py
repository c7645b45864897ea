"""Data parallelism: the 1-D device mesh with axis 'batch', replication, and batched maps.

Train steps are per-device code with collectives over `AXIS` (`lax.pmean`, cross-replica
BatchNorm) wrapped in `jax.shard_map` over `make_mesh()`; evaluation maps over padded batches split
over the same axis with `map_batches`.
"""

from typing import Callable, Optional, Sequence

import jax
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np

AXIS = 'batch'


def make_mesh(devices: Optional[Sequence[jax.Device]] = None) -> jax.sharding.Mesh:
  """A 1-D mesh with axis 'batch' over `devices` (default: all devices)."""
  devices = jax.devices() if devices is None else devices
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


def replicate(tree, mesh: jax.sharding.Mesh):
  """`tree` with every array replicated on every device of `mesh`."""
  return jax.device_put(tree, NamedSharding(mesh, P()))


def map_batches(fn: Callable[..., jax.Array], images: np.ndarray, labels: np.ndarray,
                batch_size: int, mesh: Optional[jax.sharding.Mesh]) -> np.ndarray:
  """Concatenated per-example outputs of `fn(x, y, start)` over padded batches.

  Batches of `batch_size` (rounded up to a multiple of the mesh size) are padded at the end and
  split over the mesh's 'batch' axis when a mesh is given; padding rows are dropped.

  Args:
    fn: `fn(x (b, ...), y (b,), start: int) -> (b, ...)`, `start` the index of the batch's first
      example (for per-batch random keys).
    images: (N, ...) array.
    labels: (N,) array.
    batch_size: examples per call of `fn`.
    mesh: devices to split each batch over, or None for the default device.

  Returns:
    (N, ...) numpy array of `fn`'s outputs.
  """
  if mesh is not None:
    batch_size = -(-batch_size // mesh.size) * mesh.size
  sharding = NamedSharding(mesh, P(AXIS)) if mesh is not None else None
  outputs = []
  for start in range(0, len(labels), batch_size):
    x, y = images[start:start + batch_size], labels[start:start + batch_size]
    valid, pad = len(y), batch_size - len(y)
    x = np.pad(x, ((0, pad),) + ((0, 0),) * (x.ndim - 1))
    y = np.pad(y, (0, pad))
    if sharding is not None:
      x, y = jax.device_put((x, y), sharding)
    outputs.append(np.asarray(fn(x, y, start))[:valid])
  return np.concatenate(outputs)
