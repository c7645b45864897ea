"""Entry point of rob_gan_jax.

    python main.py --config=configs/cifar10.py --workdir=/tmp/robgan            # step 1
    python main.py --config=configs/cifar10.py --workdir=/tmp/robgan \
        --config.dataset.image_folder=/data/cifar10-jpeg                        # offline data

Any config field can be overridden as --config.<group>.<field>=value; unknown fields are an error.
"""

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from rob_gan_jax import train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Training configuration file.',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, summaries and samples.')
flags.DEFINE_enum('mode', 'train', ['train'], 'train: step-1 co-training.')
flags.mark_flags_as_required(['config', 'workdir'])

MODES = {'train': train.train_and_evaluate}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  # TensorFlow only reads data here; keep it off the accelerators JAX uses.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], 'GPU')
  logging.info('JAX devices: %s', jax.devices())
  MODES[FLAGS.mode](FLAGS.config, FLAGS.workdir)


if __name__ == '__main__':
  app.run(main)
