"""Time to trace and compile the co-training step of configs/tiny.py on fake CPU devices.

    python benchmarks/compile_time.py                 # XLA's default compilation
    python benchmarks/compile_time.py --cheap         # the fast test lane's (tests/conftest.py)
    python benchmarks/compile_time.py --devices=1 --unroll=false

Compiling such steps is most of the fast test lane's time (BENCHMARKS.md, "Test suite time").
"""

import argparse
import os
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument('--devices', type=int, default=4)
parser.add_argument('--cheap', action='store_true',
                    help='--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes')
parser.add_argument('--unroll', choices=('default', 'true', 'false'), default='default')
args = parser.parse_args()
os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           f' --xla_force_host_platform_device_count={args.devices}' +
                           (' --xla_backend_optimization_level=0'
                            ' --xla_llvm_disable_expensive_passes=true' if args.cheap else ''))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # pylint: disable=g-import-not-at-top

from configs import tiny  # pylint: disable=g-import-not-at-top
from rob_gan_jax import cotrain, models, parallel  # pylint: disable=g-import-not-at-top
from rob_gan_jax import state as state_lib  # pylint: disable=g-import-not-at-top
from rob_gan_jax import task as task_lib  # pylint: disable=g-import-not-at-top

config = tiny.get_config()
config.unroll = {'default': None, 'true': True, 'false': False}[args.unroll]
generator, discriminator = models.create_models(config.model, axis_name=parallel.AXIS)
mesh = parallel.make_mesh()
state = parallel.replicate(state_lib.create_gan_state(config, generator, discriminator, 40), mesh)
step = cotrain.make_train_step(config, cotrain.Settings.from_config(
    config, task_lib.Task.from_config(config), generator, discriminator), mesh)
n_dis, batch = config.train.n_dis, config.train.batch_size
images = np.zeros((n_dis, batch, 32, 32, 3), np.uint8)
labels = np.zeros((n_dis, batch), np.int32)
start = time.perf_counter()
lowered = step.lower(state, images, labels)
traced = time.perf_counter()
lowered.compile()
print(f'devices {args.devices}, cheap {args.cheap}, unroll {args.unroll}: trace and lower '
      f'{traced - start:.1f} s, compile {time.perf_counter() - traced:.1f} s')
