"""Rob-GAN on the 1000-class ImageNet at 128 px (official `train.sh`, `--model resnet_imagenet`).

    python main.py --config=configs/imagenet_128.py --workdir=/tmp/in1000 \
        --config.dataset.image_folder=/data/imagenet

Models `gen_models/resnet.py` and `dis_models/resnet.py` with BatchNorm in D (as `train.py`
builds it; `finetune.py` builds it without). Step 1 as `train.sh`: batch 64, `n_dis` 5, 200
epochs, Adam 2e-4 (0, 0.9), PGD 5 steps at eps 0.0625, the split loss (`--our_loss`).
The data stream from files (about 60 GB as uint8 at 128 px would not fit in memory):
RandomResizedCrop(128, scale=(0.8, 0.9), ratio=(1, 1)), flip and the dequantization noise.
"""

from configs import imagenet143_128

NUM_TRAIN_IMAGES = 1_281_167  # ImageNet-1k training images.


def get_config():
  config = imagenet143_128.get_config()  # 128 px, 6 blocks each, the same downsampling.
  m = config.model
  m.num_classes = 1000
  m.generator_channel_multipliers = (16, 16, 8, 4, 2, 1)
  m.discriminator_channel_multipliers = (1, 2, 4, 8, 16, 16)
  m.normalization = 'batch_norm'
  config.dataset.classes = None
  config.attack.epsilon = 0.0625
  config.train.num_steps = 200 * NUM_TRAIN_IMAGES // (64 * 5)
  config.finetune.fake_weight = 0.5  # The README's range is 0.3-0.8; no official value here.
  config.eval.epsilons = (0.0, 0.01, 0.02, 0.03, 0.04, 0.06)
  return config
