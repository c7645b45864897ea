"""Data parallelism over one or many processes: the 1-D device mesh, batches, writers, loops.

Train steps use collectives over `AXIS` (`lax.pmean`, cross-replica BatchNorm) in `jax.shard_map`
over `make_mesh()`. With many processes (`jax.distributed`, one per host) process p feeds, reads
and augments only rows `process_rows(B, mesh)` of a global batch of B (`global_batch`); replicated
values (state, metrics) are the same in every process; only process 0 writes files
(`is_main_process`), while all save and restore Orbax checkpoints together.
"""

import functools
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
  """`config.unroll` resolved: None is True on CPU, whose loop bodies run convolutions ~3x slower
  (`attacks.pgd_linf`), False on GPU/TPU (unrolled PGD-20 would compile 20 copies of D)."""
  return jax.default_backend() == 'cpu' if unroll is None else unroll


# XLA:CPU (jax 0.10) hands convolutions, dots, elementwise fusions and reductions to YNNPACK by
# default, where the weight gradients of this project's 3x3 convolutions ran about 3x slower than
# on XLA's Eigen kernels. With only reductions (BatchNorm statistics) left to YNNPACK, a CIFAR-10
# iteration is 1.6x faster at batch 64 and 1.2x at batch 16 (BENCHMARKS.md, issue 13). The same
# arithmetic runs either way; the kernels' float rounding differs.
CPU_COMPILER_OPTIONS = {'xla_cpu_experimental_ynn_fusion_type': 'LIBRARY_FUSION_TYPE_REDUCE'}


def compiler_options(cpu_eigen_convolutions: bool) -> Optional[dict]:
  """Train-step jit options: `CPU_COMPILER_OPTIONS` on CPU if `cpu_eigen_convolutions`; or None."""
  if cpu_eigen_convolutions and jax.default_backend() == 'cpu':
    return dict(CPU_COMPILER_OPTIONS)
  return None


def jit(fn: Optional[Callable] = None, **jit_kwargs):
  """`jax.jit(fn, **jit_kwargs)` compiled with `CPU_COMPILER_OPTIONS` on the CPU backend, for the
  evaluation and attack functions defined at import (usable as `@jit` or `@jit(...)`).

  The backend is asked at the first call, not at import, which may come before
  `jax.distributed.initialize` (that must precede any backend use). Called inside another jit
  (traced arguments; e.g. fine-tuning's frozen G) it is a plain nested `jax.jit`: JAX takes
  compiler options at the top level only. Evaluation has no `cpu_eigen_convolutions` flag:
  training's default holds (the same arithmetic up to rounding).
  """
  if fn is None:
    return functools.partial(jit, **jit_kwargs)
  nested = jax.jit(fn, **jit_kwargs)
  top_level = None

  @functools.wraps(fn)
  def call(*args, **kwargs):
    nonlocal top_level
    if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((args, kwargs))):
      return nested(*args, **kwargs)
    if top_level is None:
      top_level = jax.jit(fn, compiler_options=compiler_options(True), **jit_kwargs)
    return top_level(*args, **kwargs)
  return call


def train_step(per_device: Callable, prepare: Callable, mesh: jax.sharding.Mesh, *,
               batch_axis: int, cpu_eigen_convolutions: bool) -> Callable:
  """The jitted `step(state, images, labels) -> (state, metrics)` of a training stage, state
  donated: `prepare(state, images, labels)` makes the global batch (a pytree of arrays whose
  axis `batch_axis` is the example axis: augmented images, latents, keys; all random numbers are
  drawn here, for the global batch, so a step is the same on any number of devices), then
  `per_device(state, batch) -> (state, metrics)` runs under `jax.shard_map` over `mesh`, each
  device on its part of the batch, with collectives over `AXIS` (gradients and metrics averaged
  by `lax.pmean`). The state and the metrics are replicated.
  """
  # check_vma=False: gradients are averaged explicitly with lax.pmean (the style of flax's
  # examples); with VMA checking JAX would psum gradients of replicated params implicitly.
  sharded = jax.shard_map(per_device, mesh=mesh,
                          in_specs=(P(), P(*([None] * batch_axis), AXIS)),
                          out_specs=(P(), P()), check_vma=False)

  @functools.partial(jax.jit, donate_argnums=0,
                     compiler_options=compiler_options(cpu_eigen_convolutions))
  def step(state, images, labels):
    return sharded(state, prepare(state, images, labels))

  return step


def make_mesh(devices: Optional[Sequence[jax.Device]] = None) -> jax.sharding.Mesh:
  """A 1-D mesh over `AXIS` of `devices` (default: all processes'), ordered by process."""
  devices = jax.devices() if devices is None else devices
  devices = sorted(devices, key=lambda d: (d.process_index, d.id))
  return jax.sharding.Mesh(np.asarray(devices), (AXIS,),
                           axis_types=(jax.sharding.AxisType.Auto,))


def check_batch_size(batch_size: int, mesh: jax.sharding.Mesh, field: str) -> None:
  """Raises ValueError, naming config `field`, unless the mesh size divides `batch_size`."""
  if batch_size % mesh.size:
    raise ValueError(f'the global batch size {batch_size} must divide by the number of devices '
                     f'({mesh.size}); change {field}')


def process_rows(batch_size: int, mesh: jax.sharding.Mesh) -> slice:
  """This process's rows of a global batch: block p of n equal ones in process p of n (or all)."""
  mine = [i for i, d in enumerate(mesh.devices.flat) if d.process_index == jax.process_index()]
  per_device = batch_size // mesh.size
  return slice(mine[0] * per_device, (mine[-1] + 1) * per_device)


def global_batch(local: Sequence[np.ndarray], sharding: NamedSharding, batch_axis: int,
                 batch_size: int):
  """Global arrays (`batch_size` along `batch_axis`) from `local`, this process's rows of each."""
  def one(x):
    shape = x.shape[:batch_axis] + (batch_size,) + x.shape[batch_axis + 1:]
    return jax.make_array_from_process_local_data(sharding, x, shape)
  return tuple(one(np.asarray(x)) for x in local)


def replicate(tree, mesh: jax.sharding.Mesh):
  """`tree` with every array replicated on every device of `mesh` (the same in every process)."""
  return jax.device_put(tree, NamedSharding(mesh, P()))


def map_batches(fn: Callable[..., jax.Array], images: np.ndarray, labels: np.ndarray,
                batch_size: int, mesh: Optional[jax.sharding.Mesh]) -> np.ndarray:
  """(N, ...) numpy outputs of `fn(x (b, ...), y (b,), start) -> (b, ...)` over `images` (N, ...)
  and `labels` (N,), inputs and result the same in every process; `start` (first index) is for
  per-batch keys. Batches (<= N, a multiple of the mesh size) are zero-padded at the end."""
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
