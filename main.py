"""Entry point of rob_gan_jax.

    python main.py --config=configs/cifar10.py --workdir=/tmp/robgan            # step 1
    python main.py --config=configs/cifar10.py --workdir=/tmp/robgan \
        --config.dataset.image_folder=/data/cifar10-jpeg                        # offline data
    python main.py --config=configs/cifar10.py --workdir=/tmp/robgan --mode=finetune   # step 2
    python main.py --config=configs/cifar10.py --workdir=/tmp/robgan --mode=eval       # Table 1

Any config field can be overridden as --config.<group>.<field>=value; unknown fields are an error.

Multi-process runs (one process per host of a TPU pod slice or GPU cluster, see README): the same
command in every process with --distributed (Cloud TPU, SLURM and Open MPI give
`jax.distributed.initialize` its settings), or with --coordinator_address, --num_processes and
--process_id on a plain cluster.
"""

import os
import sys

# TensorFlow's and XLA's C++ INFO notices (oneDNN, CPU features, device counts), read when they
# load: off unless set (TF_CPP_MIN_LOG_LEVEL=0 shows them).
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from rob_gan_jax import console
from rob_gan_jax import cotrain
from rob_gan_jax import evaluate
from rob_gan_jax import finetune
from rob_gan_jax import loop
from rob_gan_jax import task
from rob_gan_jax.input_pipeline import host_tf

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Training configuration file.',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, summaries and samples.')
flags.DEFINE_enum('mode', 'train', ['train', 'finetune', 'eval'],
                  'train: step-1 co-training (method robgan), Madry training (method madry) or '
                  'GAN training (method asgan); finetune: step 2 of Rob-GAN; eval: robustness '
                  'of D (its classifier, or its source head for an unconditional GAN) and IS/FID.')
flags.DEFINE_bool('distributed', False,
                  'Multi-process run: call jax.distributed.initialize(), which detects the '
                  'processes of a Cloud TPU pod slice, a SLURM job or an Open MPI launch.')
flags.DEFINE_string('coordinator_address', None,
                    'host:port of process 0 (implies --distributed), for clusters JAX does not '
                    'detect; with --num_processes and --process_id.')
flags.DEFINE_integer('num_processes', None, 'Number of processes (implies --distributed).')
flags.DEFINE_integer('process_id', None, 'This process, 0 ... num_processes - 1 (implies '
                     '--distributed).')
flags.DEFINE_bool('library_info', False,
                  'Also print the INFO messages of the libraries (Orbax, CLU, TensorFlow, JAX; '
                  'their C++ ones with TF_CPP_MIN_LOG_LEVEL=0); by default the console shows '
                  'this project\'s messages and everyone\'s warnings and errors.')
flags.mark_flags_as_required(['config', 'workdir'])


def run(config, workdir: str, mode: str):
  """Runs `mode`: 'eval' (evaluation), or the stage 'train' or 'finetune' trains for the config's
  method (`task.Task.training_stage`: co-training, fine-tuning or Madry training).

  Raises:
    ValueError: an invalid config, or a mode the method does not have.
  """
  run_task = task.Task.from_config(config)  # The one Task of the run.
  if mode == 'eval':
    return evaluate.evaluate(config, run_task, workdir)
  if run_task.training_stage(mode) == 'cotrain':
    return cotrain.train_and_evaluate(config, run_task, workdir)
  return finetune.train_classifier(config, run_task, workdir)


def initialize_distributed() -> None:
  """Starts `jax.distributed` if the flags ask for a multi-process run (before any JAX call)."""
  explicit = dict(coordinator_address=FLAGS.coordinator_address,
                  num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)
  if not FLAGS.distributed and all(v is None for v in explicit.values()):
    return
  # CPU devices of several processes need a collectives library (GPUs and TPUs have their own).
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  # Orbax's barriers (creating the checkpoint folder, each save) through the coordination
  # service, which waits up to 5 minutes for a late process, instead of a gloo collective, whose
  # rendezvous gives a process 30 seconds: the processes start training together.
  FLAGS.experimental_orbax_use_distributed_barrier = True
  jax.distributed.initialize(**explicit)
  if jax.default_backend() == 'cpu':
    # A persistent compilation cache is written by process 0 only, so it would start training
    # from cached programs while the others still compile: past gloo's 30 s, the step fails.
    jax.config.update('jax_enable_compilation_cache', False)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  console.configure(library_info=FLAGS.library_info)
  initialize_distributed()
  console.quiet_other_processes()
  host_tf.tensorflow()  # Before anything reads data; a missing TensorFlow is named at once.
  logging.info('Process %d of %d; JAX devices: %s', jax.process_index(), jax.process_count(),
               jax.devices())
  try:
    run(FLAGS.config, FLAGS.workdir, FLAGS.mode)
  except loop.Preempted as e:
    logging.warning('%s (exit status %d).', e, loop.PREEMPTED_EXIT_STATUS)
    sys.exit(loop.PREEMPTED_EXIT_STATUS)


if __name__ == '__main__':
  app.run(main)
