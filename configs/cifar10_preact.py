"""CIFAR-10 with the discriminator the official fine-tuning and evaluation scripts load.

    python main.py --config=configs/cifar10_preact.py --workdir=/tmp/preact \
        --config.dataset.image_folder=/data/cifar10-jpeg

The official `finetune.py` and `acc_under_attack.py` build, for `--model resnet_32`, the
`resnet_32` G with a `PreActResNet18` D (`dis_models/preact_resnet.py`: two heads, leaky ReLU
0.2, no BatchNorm). The CIFAR-10 training script that made those checkpoints was removed from the
official repository; its last version (`removed-in-0b2b664/train_cifar.py` and
`train_cifar.sh`) trains with `--iter_d 1 --max_epoch 100 --adv_steps 5 --epsilon 0.07
--batch_size 64 --lr 0.0002` and without `--our_loss`, i.e. the original AC-GAN loss (paper
eq. 8); Adam (0, 0.9), learning rate halved every 50 epochs. Those are the values here; the PGD
step is the official attacker's fixed 0.0078.
"""

from configs import default


def get_config():
  config = default.get_config()
  m = config.model
  m.discriminator_architecture = 'preact_resnet'
  m.discriminator_channel_multipliers = (1, 1, 2, 2, 4, 4, 8, 8)
  m.discriminator_downsample = (False, False, True, False, True, False, True, False)
  m.normalization = 'none'
  config.attack.epsilon = 0.07
  config.train.loss = 'acgan'
  config.train.n_dis = 1
  config.train.num_steps = 100 * 50_000 // 64  # 100 epochs, one D and one G update a batch.
  return config
