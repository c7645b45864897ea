"""Entry point of rob_gan_jax.

    python main.py --config=configs/cifar10.py --workdir=/tmp/robgan            # step 1
    python main.py --config=configs/cifar10.py --workdir=/tmp/robgan \
        --config.dataset.image_folder=/data/cifar10-jpeg                        # offline data
    python main.py --config=configs/cifar10.py --workdir=/tmp/robgan --mode=finetune   # step 2
    python main.py --config=configs/cifar10.py --workdir=/tmp/robgan --mode=eval       # Table 1

Any config field can be overridden as --config.<group>.<field>=value; unknown fields are an error.
"""

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from rob_gan_jax import cotrain
from rob_gan_jax import evaluate
from rob_gan_jax import finetune

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Training configuration file.',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, summaries and samples.')
flags.DEFINE_enum('mode', 'train', ['train', 'finetune', 'eval'],
                  'train: step-1 co-training (method robgan), Madry training (method madry) or '
                  'GAN training (method asgan); finetune: step 2 of Rob-GAN; eval: robustness '
                  'of D (its classifier, or its source head for an unconditional GAN) and IS/FID.')
flags.mark_flags_as_required(['config', 'workdir'])


def run(config, workdir: str, mode: str):
  """Dispatches a mode; raises ValueError for a mode the config's method does not have."""
  if mode == 'train':
    if config.method == 'madry':
      return finetune.train_classifier(config, workdir)
    return cotrain.train_and_evaluate(config, workdir)
  if mode == 'finetune':
    if config.method == 'madry':
      raise ValueError("--mode=finetune is step 2 of Rob-GAN; method 'madry' trains its "
                       'classifier with --mode=train')
    return finetune.train_classifier(config, workdir)  # Refuses an unconditional GAN.
  return evaluate.evaluate(config, workdir)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  # TensorFlow only reads data here; keep it off the accelerators JAX uses.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], 'GPU')
  logging.info('JAX devices: %s', jax.devices())
  run(FLAGS.config, FLAGS.workdir, FLAGS.mode)


if __name__ == '__main__':
  app.run(main)
