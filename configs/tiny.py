"""Tiny widths and a few steps in every mode, for tests and smoke runs (seconds on a CPU).

    python main.py --config=configs/tiny.py --workdir=/tmp/tiny \
        --config.dataset.image_folder=../shared/data/cifar10-jpeg
    python main.py ... --mode=finetune   # 4 updates
    python main.py ... --mode=eval       # 2 radii, 16 test and 16 training examples
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
  config.train.inception_num_samples = 20
  config.finetune.batch_size = 8
  config.finetune.num_steps = 4
  config.finetune.attack.num_steps = 2
  config.finetune.log_every_steps = 2
  config.finetune.checkpoint_every_steps = 2
  config.finetune.eval_num_examples = 16
  config.eval.epsilons = (0.0, 0.03)
  config.eval.attack.num_steps = 2
  config.eval.num_examples = 16
  config.eval.train_num_examples = 16
  config.eval.batch_size = 16
  config.eval.inception_num_samples = 20
  config.eval.inception_batch_size = 10
  return config
