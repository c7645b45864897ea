"""Tiny widths and a few steps, for tests and smoke runs (seconds on a CPU).

    python main.py --config=configs/tiny.py --workdir=/tmp/tiny \
        --config.dataset.image_folder=../shared/data/cifar10-jpeg
"""

from configs import default


def get_config():
  config = default.get_config()
  config.model.z_dim = 8
  config.model.generator_width = 2
  config.model.discriminator_width = 4
  config.attack.num_steps = 2
  config.train.batch_size = 8
  config.train.n_dis = 2
  config.train.num_steps = 4
  config.train.log_every_steps = 2
  config.train.checkpoint_every_steps = 2
  config.train.eval_every_steps = 4
  config.train.eval_num_examples = 16
  config.train.sample_every_steps = 4
  config.train.samples_per_class = 2
  return config
