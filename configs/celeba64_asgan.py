"""AS-GAN on CelebA at 64 px (arXiv 1912.09670): the unconditional SN-GAN ResNet of `resnet_64`.

    python main.py --config=configs/celeba64_asgan.py --workdir=/tmp/celeba \
        --config.dataset.image_folder=/data/celeba     # train/img_align_celeba/*.jpg, test/...
    python main.py ... --config.attack.num_steps=0     # the vanilla GAN baseline

Without a folder it reads TFDS `celeb_a` (prepared as array_record; its images are 178 x 218).
Images are centre-cropped to a square and resized to 64 (`dataset.augmentation='centre_crop'`:
short side to 64, centre crop), with a random flip for training. The models are the official
`resnet_64` widths (configs/imagenet143_64.py) without class conditioning; the optimizer, loss,
n_dis and attack are those of configs/cifar10_asgan.py (official `train_cifar_nosup.py`).
"""

from configs import cifar10_asgan
from configs import imagenet143_64

NUM_TRAIN_IMAGES = 162_770  # CelebA's training split.


def get_config():
  config = cifar10_asgan.get_config()
  config.model = imagenet143_64.get_config().model
  config.model.num_classes = 0

  d = config.dataset
  d.name = 'celeb_a'
  d.test_split = 'test'
  d.augmentation = 'centre_crop'
  d.random_flip = True

  config.train.num_steps = 50 * NUM_TRAIN_IMAGES // config.train.batch_size
  return config
