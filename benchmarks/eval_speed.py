"""Seconds of PGD-20 on real test images, with XLA's default CPU kernels and with the CPU compile
options of the training steps (`parallel.jit`, `parallel.CPU_COMPILER_OPTIONS`).

    python benchmarks/eval_speed.py --data=../shared/data/cifar10-jpeg [--num_examples=1000]

D of `configs/cifar10_cpu.py` (random weights: speed does not depend on them), `--mode=eval`'s
attack (`robustness.correct_under_attack`: PGD-20, step eps / 5, eps 8/255, batches of
`eval.batch_size`), run in a fresh process per setting, alternating, `--repeats` times each. A
setting's time is the second of two passes (the first compiles). Prints one JSON line per run.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import jax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from configs import cifar10_cpu  # pylint: disable=g-import-not-at-top
from rob_gan_jax import models
from rob_gan_jax import parallel
from rob_gan_jax import robustness
from rob_gan_jax import state as state_lib
from rob_gan_jax.input_pipeline import splits
from rob_gan_jax.input_pipeline import transforms


def measure(args) -> dict:
  if args.setting == 'xla_defaults':
    parallel.compiler_options = lambda cpu_eigen_convolutions: None
  config = cifar10_cpu.get_config()
  config.dataset.image_folder = args.data
  images, labels = splits.load_subset(config, 'test', args.num_examples)
  _, discriminator = models.create_models(config.model)
  variables = state_lib.init_variables(discriminator, jax.random.PRNGKey(0),
                                       transforms.to_float(images[:1]))
  target = robustness.Target(discriminator, variables, head='class',
                             batch_size=config.eval.batch_size, mesh=None,
                             unroll=parallel.unroll_loops(config.unroll))
  seconds = []
  for _ in range(2):
    start = time.time()
    robustness.correct_under_attack(target, images, labels, epsilon=8 / 255 * 2,
                                    step_size=8 / 255 * 2 / 5, num_steps=20,
                                    key=jax.random.PRNGKey(0))
    seconds.append(time.time() - start)
  return {'setting': args.setting, 'examples': len(labels), 'first_pass_s': seconds[0],
          'seconds': seconds[1], 'backend': jax.default_backend()}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data', required=True)
  parser.add_argument('--num_examples', type=int, default=1000)
  parser.add_argument('--repeats', type=int, default=2)
  parser.add_argument('--setting', choices=('xla_defaults', 'cpu_options'))
  args = parser.parse_args()
  if args.setting:
    print(json.dumps(measure(args)), flush=True)
    return
  for _ in range(args.repeats):
    for setting in ('xla_defaults', 'cpu_options'):
      subprocess.run([sys.executable, __file__, f'--data={args.data}', f'--setting={setting}',
                      f'--num_examples={args.num_examples}'], check=True)


if __name__ == '__main__':
  main()
