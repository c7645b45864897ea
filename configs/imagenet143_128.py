"""Rob-GAN on ImageNet-143 at 128 px (official `--model resnet_128`, `resnet_small.py`).

    python main.py --config=configs/imagenet143_128.py --workdir=/tmp/in143_128 \
        --config.dataset.image_folder=/data/imagenet

As configs/imagenet143_64.py (data, step-1 and fine-tuning settings), with the official 128-px
models: `gen_models/resnet_small.py` and `dis_models/resnet_small.py`. The official `train.py`
builds this D without BatchNorm and `finetune.py` with it (its comment: "because of improper
initialization"), so the two scripts' checkpoints do not load into each other; one workdir has
one architecture here, `train.py`'s. Fine-tuning uses the official `finetune.sh` values for this
model (`--epsilon 0.03125 --steps 5 --lr 1.0e-3 --batch_size 128`) with lambda 0.3 from the
README's range. Evaluation: PGD-20, eps as in `acc_under_attack.sh` for this model.
"""

from configs import imagenet143_64


def get_config():
  config = imagenet143_64.get_config()
  m = config.model
  m.image_size = 128
  m.num_upsample = 5
  m.generator_channel_multipliers = (8, 8, 4, 4, 2, 1)
  m.discriminator_channel_multipliers = (1, 2, 4, 4, 8, 8)
  m.discriminator_downsample = (True, True, True, True, True, False)
  m.normalization = 'none'
  config.eval.epsilons = (0.0, 0.004, 0.01, 0.016, 0.02, 0.024, 0.03, 0.04)
  return config
