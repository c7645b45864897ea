"""Madry adversarial training of the discriminator network as a classifier only (baseline).

    python main.py --config=configs/cifar10_madry.py --workdir=/tmp/madry
    python main.py --config=configs/cifar10_madry.py --workdir=/tmp/madry --mode=eval
    python main.py --config=configs/cifar10_madry.py:cpu --workdir=/tmp/madry_cpu   # CPU widths

The same D as Rob-GAN (configs/cifar10.py, or configs/cifar10_cpu.py with `:cpu`), no generator,
no source head in the loss, trained with the fine-tuning optimizer on CE(f(x_adv), y) where x_adv
comes from PGD with step 1's attack settings (5 steps of 0.0078, eps 0.03125). `--mode=eval`
then measures it exactly as it measures Rob-GAN, for paper Table 1's comparison.
"""

from configs import cifar10
from configs import cifar10_cpu


def get_config(variant: str = ''):
  if variant not in ('', 'cpu'):
    raise ValueError(f'unknown variant {variant!r}; use configs/cifar10_madry.py or :cpu')
  config = cifar10_cpu.get_config() if variant == 'cpu' else cifar10.get_config()
  if variant == 'cpu':
    # The CPU Rob-GAN run shows D 2.24 epochs of real images in co-training and 0.75 in
    # fine-tuning; the baseline gets the same 3 epochs.
    config.finetune.stage_epochs = (2.25, 0.75)
  config.method = 'madry'
  config.finetune.fake_weight = 0.0
  config.finetune.attack = config.attack  # Step 1's attack: 5 steps of 0.0078, eps 0.03125.
  # D starts from random init, so it trains with batch statistics (its running averages are
  # updated), whatever step 2's default.
  config.finetune.discriminator_train_mode = True
  return config
