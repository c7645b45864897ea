"""Rob-GAN step 1 on CIFAR-10, small enough to learn something in 30 minutes on 2 CPU cores.

    python main.py --config=configs/cifar10_cpu.py --workdir=/tmp/robgan_cpu \
        --config.dataset.image_folder=../shared/data/cifar10-jpeg
    python main.py ... --mode=finetune    # step 2, about 12 minutes
    python main.py ... --mode=eval        # eps sweep on 500 test and 500 training examples

Official settings (attack, losses, optimizer, batch 64, n_dis 5) with a quarter of the generator's
width and half of the discriminator's (G 16 * (16, 8, 4, 2, 1) channels, D 64 channels).
"""

from configs import default


def get_config():
  config = default.get_config()
  config.model.generator_width = 16
  config.model.discriminator_width = 32
  config.train.num_steps = 350
  config.train.log_every_steps = 25
  config.train.checkpoint_every_steps = 50
  config.evals.pgd_accuracy.every_steps = config.evals.sample_grid.every_steps = 100
  # Step 2: 0.75 epoch (about 12 minutes), lr divided by 10 after 0.5 epoch.
  config.finetune.stage_epochs = (0.5, 0.25)
  config.finetune.log_every_steps = 25
  config.finetune.checkpoint_every_steps = 50
  config.evals.pgd_accuracy.finetune_num_examples = 1_000
  # --mode=eval on 500 test and 500 training examples.
  config.eval.num_examples = 500
  config.eval.train_num_examples = 500
  return config
