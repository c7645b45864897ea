"""AS-GAN on unconditional CIFAR-100 (arXiv 1912.09670): configs/cifar10_asgan.py on CIFAR-100.

    python main.py --config=configs/cifar100_asgan.py --workdir=/tmp/asgan100      # TFDS cifar100
    python main.py --config=configs/cifar100_asgan.py --workdir=/tmp/asgan100 \
        --config.dataset.image_folder=/data/cifar100-jpeg   # {train,test}/<class or any>/*.jpg
    python main.py ... --config.attack.num_steps=0            # the vanilla GAN baseline

The labels are not used (the GAN is unconditional).
"""

from configs import cifar10_asgan


def get_config():
  config = cifar10_asgan.get_config()
  config.dataset.name = 'cifar100'
  return config
