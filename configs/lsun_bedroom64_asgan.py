"""AS-GAN on LSUN bedroom at 64 px (arXiv 1912.09670): configs/celeba64_asgan.py on LSUN.

    python main.py --config=configs/lsun_bedroom64_asgan.py --workdir=/tmp/lsun \
        --config.dataset.image_folder=/data/lsun_bedroom    # train/<any>/*.jpg, validation/...
    python main.py ... --config.attack.num_steps=0          # the vanilla GAN baseline

Without a folder it reads TFDS `lsun/bedroom` (3,033,042 training and 300 validation images,
prepared as array_record). Short side resized to 64, centre crop, random flip.
"""

from configs import celeba64_asgan

NUM_TRAIN_IMAGES = 3_033_042


def get_config():
  config = celeba64_asgan.get_config()
  d = config.dataset
  d.name = 'lsun/bedroom'
  d.test_split = 'validation'
  config.train.num_steps = 5 * NUM_TRAIN_IMAGES // config.train.batch_size
  config.eval.split = 'validation'
  config.eval.num_examples = 300
  return config
