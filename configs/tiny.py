"""Tiny widths and a few steps in every mode, for tests and smoke runs (seconds on a CPU).

    python main.py --config=configs/tiny.py --workdir=/tmp/tiny \
        --config.dataset.image_folder=../shared/data/cifar10-jpeg
    python main.py ... --mode=finetune   # 4 updates
    python main.py ... --mode=eval       # 2 radii, 16 test and 16 training examples
    python main.py --config=configs/tiny.py:asgan ...   # configs/cifar10_asgan.py, tiny

The argument after the colon names the config made tiny: none for configs/default.py (Rob-GAN),
'asgan' for configs/cifar10_asgan.py (AS-GAN, unconditional).
"""

from configs import cifar10_asgan
from configs import default

BASES = {'': default, 'asgan': cifar10_asgan}


def get_config(base: str = ''):
  if base not in BASES:
    raise ValueError(f'configs/tiny.py:<base> must be one of {tuple(BASES)}, got {base!r}')
  config = BASES[base].get_config()
  config.model.z_dim = 8
  config.model.generator_width = 2
  config.model.discriminator_width = 4
  config.attack.num_steps = 2
  config.train.batch_size = 8
  config.train.n_dis = 2
  config.train.num_steps = 4
  config.train.log_every_steps = 2
  config.train.checkpoint_every_steps = 2
  ev = config.evals
  ev.pgd_accuracy.every_steps = ev.sample_grid.every_steps = 4
  ev.pgd_accuracy.cotrain_num_examples = ev.pgd_accuracy.finetune_num_examples = 16
  ev.sample_grid.samples_per_class = 2
  ev.inception.num_samples = ev.inception.eval_num_samples = 20
  ev.inception.batch_size = 10
  config.finetune.batch_size = 8
  config.finetune.num_steps = 4
  config.finetune.attack.num_steps = 2
  config.finetune.log_every_steps = 2
  config.finetune.checkpoint_every_steps = 2
  # A D of 4 channels after 4 updates may well predict one class: no collapse guard in
  # co-training. Fine-tuning keeps it: a classifier that ends predicting one class is an error.
  config.train.collapse_guard.patience = 0
  config.eval.epsilons = (0.0, 0.03)
  config.eval.attack.num_steps = 2
  config.eval.num_examples = 16
  config.eval.train_num_examples = 16
  config.eval.batch_size = 16
  config.eval.sample_batch_size = 10
  # A reference classifier of seconds: 1 epoch of 512 images at widths (8, 16, 16).
  r = config.reference
  r.widths, r.num_examples, r.num_epochs, r.batch_size = (8, 16, 16), 512, 1.0, 128
  rm = ev.reference_metrics
  rm.num_samples = rm.eval_num_samples = rm.eval_cas_num_samples = 40
  return config
