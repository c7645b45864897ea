"""Rob-GAN step 1 on CIFAR-10, the paper's run: 200 epochs at batch 64, official settings.

    python main.py --config=configs/cifar10.py --workdir=/tmp/robgan
    python main.py --config=configs/cifar10.py --workdir=/tmp/robgan \
        --config.dataset.image_folder=/data/cifar10-jpeg

Every value is `configs/default.py`'s; this file exists so that the paper's run has a name.
"""

from configs import default


def get_config():
  return default.get_config()
