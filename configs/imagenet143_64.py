"""Rob-GAN on ImageNet-143 (the dogs and cats of ImageNet) at 64 px: the official README's run.

    python main.py --config=configs/imagenet143_64.py --workdir=/tmp/in143_64 \
        --config.dataset.image_folder=/data/imagenet                   # step 1
    python main.py ... --mode=finetune                                 # step 2
    python main.py ... --mode=eval                                     # paper Table 1

`dataset.image_folder` is an ImageNet-style folder, `train/<synset>/*.JPEG` and
`validation/<synset>/*.JPEG` (other split names: `--config.dataset.test_split`, `eval.split`);
`dataset.classes='imagenet143'` picks ImageNet classes 151-293 (SN-GAN projection's
`imagenet_dog_and_cat.py`) in synset order. Without a folder it reads TFDS `imagenet2012` with
the same label filter (prepared as array_record: TFDS cannot download ImageNet).

Values of the official README's step-1 command (`--model resnet_64 --nclass 143 --img_width 64
--batch_size 64 --iter_d 5 --max_epoch 200 --lr 0.0002 --adv_steps 5 --epsilon 0.03125
--our_loss`; Adam (0, 0.9), learning rate halved every 50 epochs) and of its fine-tuning command
(`--batch_size 128 --lr 1.0e-3 --steps 5 --epsilon 0.03125 --lam 0.3`, "typically 0.3~0.8").
Training data: `RandomResizedCrop(64, scale=(0.8, 0.9), ratio=(1, 1))`, flip and the
dequantization noise (official `train.py`, `make_dataset`). Evaluation as paper Table 1: eps 0,
0.01, 0.02, 0.03, PGD-20 with step eps / 5 (`acc_under_attack.sh`).
"""

from configs import default

# ImageNet-143 has about 143 x 1,300 = 186,000 training images: 200 epochs of D updates at
# batch 64 with n_dis 5 are ~116,000 G updates (the decay every 50 epochs counts real epochs).
NUM_TRAIN_IMAGES = 186_000


def get_config():
  config = default.get_config()
  # Official `resnet_64` (gen_models/ and dis_models/resnet_64.py; D without BatchNorm).
  m = config.model
  m.num_classes = 143
  m.image_size = 64
  m.num_upsample = 4
  m.generator_channel_multipliers = (16, 8, 4, 2, 1)
  m.discriminator_channel_multipliers = (1, 2, 4, 8, 16)
  m.discriminator_downsample = (True, True, True, True, True)
  m.normalization = 'none'

  d = config.dataset
  d.name = 'imagenet2012'
  d.test_split = 'validation'
  d.classes = 'imagenet143'
  d.augmentation = 'random_resized_crop'

  config.train.num_steps = 200 * NUM_TRAIN_IMAGES // (64 * 5)
  config.finetune.fake_weight = 0.3
  config.eval.epsilons = (0.0, 0.01, 0.02, 0.03)
  config.eval.split = 'validation'
  return config
