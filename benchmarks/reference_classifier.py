"""Trains (or loads from its cache) the reference classifier of a config and prints its identity,
clean test accuracy and training time (`rob_gan_jax/metrics/reference.py`).

    python benchmarks/reference_classifier.py --config=configs/cifar10_cpu.py \
        --config.dataset.image_folder=../shared/data/cifar10-jpeg --cache_dir=/tmp/reference

Evaluators train the classifier themselves when it is not cached; this script does it ahead of a
run (so no training job waits for it) and is how BENCHMARKS.md times it.
"""

import json
import time

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from rob_gan_jax.input_pipeline import host_tf
from rob_gan_jax.metrics import reference

config_flags.DEFINE_config_file('config', None, 'Configuration file.', lock_config=True)
flags.DEFINE_string('cache_dir', None, 'Where reference classifiers are cached.')
flags.mark_flags_as_required(['config', 'cache_dir'])
FLAGS = flags.FLAGS


def main(argv):
  del argv
  host_tf.tensorflow()
  logging.set_verbosity(logging.INFO)
  start = time.time()
  classifier = reference.load_or_train(FLAGS.config, FLAGS.cache_dir)
  print(json.dumps(dict(classifier.info, wall_seconds=round(time.time() - start, 1)), indent=1))


if __name__ == '__main__':
  app.run(main)
