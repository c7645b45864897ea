"""Times co-training (Rob-GAN step 1, AS-GAN) updates of a config's models on random inputs.

    python benchmarks/step_time.py --batch-sizes 64,16 [--repeats 5]
    python benchmarks/step_time.py --config configs/imagenet143_64.py --batch-sizes 16
    python benchmarks/step_time.py --config configs/cifar10_asgan.py:cpu --batch-sizes 64
    python benchmarks/step_time.py --batch-sizes 16 --dtype bfloat16   # mixed precision
    python benchmarks/step_time.py --batch-sizes 16 --no-cpu-eigen-convolutions  # XLA's defaults
    python benchmarks/step_time.py --batch-sizes 64 --unroll=false --train-seconds 120

Measures one D update (G forward, 5-step PGD on real images, D forward/backward on adversarial
real and fake batches, Adam), one G update, and one full iteration (n_dis D updates + 1 G update,
the jitted `train_step` of training, augmentation included), each compiled and warmed up first,
then the median of `--repeats` runs. `--config` names a config file (default: configs/default.py,
the CIFAR-10 models); images have its `model.image_size`; `--dtype` sets `model.dtype`;
`--no-cpu-eigen-convolutions` sets `cpu_eigen_convolutions=False` (XLA:CPU's default library
fusions, `parallel.compiler_options`); `--unroll` sets `config.unroll` (default: the backend's).
`--train-seconds S` then trains for S seconds on in-memory arrays (a new random batch of real
images each iteration, the full iteration with PGD) and reports the iterations done and whether
the losses and the state stayed finite.
Data-parallel over all local devices.
The last line printed is one JSON object: {"backend": ..., "devices": ..., "config": ...,
"dtype": ..., "results": [{"batch": 64, "d_step_s": ..., "g_step_s": ..., "iteration_s": ...},
...]}.
"""

import argparse
import functools
import importlib.util
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from rob_gan_jax import checkpoints  # pylint: disable=g-import-not-at-top
from rob_gan_jax import cotrain  # pylint: disable=g-import-not-at-top
from rob_gan_jax import models  # pylint: disable=g-import-not-at-top
from rob_gan_jax import parallel  # pylint: disable=g-import-not-at-top
from rob_gan_jax import state as state_lib  # pylint: disable=g-import-not-at-top
from rob_gan_jax import task as task_lib  # pylint: disable=g-import-not-at-top


def median_time(fn, state, args, repeats):
  """Median wall time of `state = fn(state, *args)[0]`, after one warm-up (compile) call."""
  state = jax.block_until_ready(fn(state, *args))[0]
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    state = jax.block_until_ready(fn(state, *args))[0]
    times.append(time.perf_counter() - start)
  return statistics.median(times), state


def load_config(path: str):
  """`get_config()` of a config file, or `get_config(arg)` of `file.py:arg` as main.py reads it."""
  path, _, arg = path.partition(':')
  spec = importlib.util.spec_from_file_location('benchmarked_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def benchmark(config_path: str, batch_size: int, repeats: int, dtype: str,
              cpu_eigen_convolutions: bool, unroll, train_seconds: float):
  config = load_config(config_path)
  config.train.batch_size = batch_size
  config.model.dtype = dtype
  config.cpu_eigen_convolutions = cpu_eigen_convolutions
  config.unroll = unroll
  mesh = parallel.make_mesh()
  parallel.check_batch_size(batch_size, mesh, '--batch-sizes')
  m = config.model
  generator, discriminator = models.create_models(m, axis_name=parallel.AXIS)
  state = parallel.replicate(
      state_lib.create_gan_state(config, generator, discriminator, 50_000), mesh)
  key = jax.random.PRNGKey(0)
  size = m.image_size
  x = jax.random.uniform(key, (batch_size, size, size, m.image_channels), minval=-1,
                         maxval=1)
  y = jnp.arange(batch_size, dtype=jnp.int32) % max(m.num_classes, 1)
  z = jax.random.normal(key, (batch_size, m.z_dim))

  def per_device(fn, n_batch_args):
    in_specs = (P(),) + (P(parallel.AXIS),) * n_batch_args
    return jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=(P(), P()),
                                 check_vma=False), donate_argnums=0,
                   compiler_options=parallel.compiler_options(config.cpu_eigen_convolutions))

  settings = cotrain.Settings.from_config(config, task_lib.Task.from_config(config), generator,
                                          discriminator)
  d_step = per_device(functools.partial(cotrain.discriminator_step, settings=settings), 5)
  g_step = per_device(functools.partial(cotrain.generator_step, settings=settings), 2)
  attack_keys = jax.random.split(key, batch_size)
  d_time, state = median_time(d_step, state, (x, y, z, y, attack_keys), repeats)
  g_time, state = median_time(g_step, state, (z, y), repeats)
  n_dis = config.train.n_dis
  images = np.random.default_rng(0).integers(
      0, 256, (n_dis, batch_size, size, size, m.image_channels), np.uint8)
  labels = np.arange(n_dis * batch_size, dtype=np.int32).reshape(n_dis, batch_size)
  labels %= max(m.num_classes, 1)
  batch = jax.device_put((images, labels), NamedSharding(mesh, P(None, parallel.AXIS)))
  train_step = cotrain.make_train_step(config, settings, mesh)
  iteration_time, state = median_time(train_step, state, batch, max(1, repeats // 2))
  result = {'batch': batch_size, 'd_step_s': round(d_time, 4), 'g_step_s': round(g_time, 4),
            'iteration_s': round(iteration_time, 4)}
  if train_seconds:
    rng = np.random.default_rng(1)
    start, iterations = time.perf_counter(), 0
    while time.perf_counter() - start < train_seconds:
      batch = jax.device_put((rng.integers(0, 256, images.shape, np.uint8), labels),
                             NamedSharding(mesh, P(None, parallel.AXIS)))
      state, metrics = train_step(state, *batch)
      iterations += 1
    finite = bool(np.isfinite([float(v) for v in jax.tree.leaves(metrics)]).all()
                  and not checkpoints.non_finite_arrays(state))
    result.update(train_iterations=iterations, train_s=round(time.perf_counter() - start, 1),
                  train_finite=finite)
  return result


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--batch-sizes', default='64,16')
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--dtype', default='float32', choices=models.DTYPES)
  parser.add_argument('--no-cpu-eigen-convolutions', dest='cpu_eigen_convolutions',
                      action='store_false')
  parser.add_argument('--unroll', choices=('auto', 'true', 'false'), default='auto')
  parser.add_argument('--train-seconds', type=float, default=0)
  parser.add_argument('--config', default=os.path.join(
      os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs', 'default.py'))
  args = parser.parse_args()
  results = []
  for batch_size in (int(b) for b in args.batch_sizes.split(',')):
    unroll = {'auto': None, 'true': True, 'false': False}[args.unroll]
    results.append(benchmark(args.config, batch_size, args.repeats, args.dtype,
                             args.cpu_eigen_convolutions, unroll, args.train_seconds))
    print(results[-1], flush=True)
  print(json.dumps({'backend': jax.default_backend(), 'devices': jax.device_count(),
                    'device_kind': jax.devices()[0].device_kind, 'config': args.config,
                    'dtype': args.dtype, 'cpu_eigen_convolutions': args.cpu_eigen_convolutions,
                    'unroll': args.unroll,
                    'results': results}))


if __name__ == '__main__':
  main()
