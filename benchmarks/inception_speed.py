"""Images per second of FID Inception-v3 feature extraction (resize to 299 + network).

    python benchmarks/inception_speed.py [--batch-size 100] [--num-images 400] [--weights W.npz]

Random weights of the right shapes unless --weights is given (speed does not depend on them).
Runs `rob_gan_jax.metrics.fid.extract` (jitted, data-parallel over all local devices) on random
32x32 uint8 images after a warm-up call. The last line printed is one JSON object:
{"backend": ..., "devices": ..., "batch_size": ..., "images_per_s": ...}.
"""

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from rob_gan_jax import parallel  # pylint: disable=g-import-not-at-top
from rob_gan_jax.metrics import fid  # pylint: disable=g-import-not-at-top
from rob_gan_jax.metrics import inception  # pylint: disable=g-import-not-at-top


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--batch-size', type=int, default=100)
  parser.add_argument('--num-images', type=int, default=400)
  parser.add_argument('--weights', default=None)
  args = parser.parse_args()
  if args.weights:
    variables = inception.load_variables(args.weights)
  else:
    variables = jax.jit(inception.InceptionV3().init)(jax.random.PRNGKey(0),
                                                      jnp.zeros((1, 75, 75, 3)))
  mesh = parallel.make_mesh()
  images = np.random.default_rng(0).integers(0, 256, (args.num_images, 32, 32, 3), np.uint8)
  fid.extract(variables, images[:args.batch_size], batch_size=args.batch_size, mesh=mesh)
  start = time.perf_counter()
  fid.extract(variables, images, batch_size=args.batch_size, mesh=mesh)
  seconds = time.perf_counter() - start
  print(json.dumps({'backend': jax.default_backend(), 'devices': jax.device_count(),
                    'batch_size': args.batch_size, 'num_images': args.num_images,
                    'images_per_s': round(args.num_images / seconds, 2)}))


if __name__ == '__main__':
  main()
