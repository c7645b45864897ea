"""AS-GAN on unconditional CIFAR-10: a DCGAN-style GAN whose D is adversarially trained on real
images (arXiv 1912.09670); `--config.attack.num_steps=0` is its vanilla GAN baseline.

    python main.py --config=configs/cifar10_asgan.py --workdir=/tmp/asgan \
        --config.dataset.image_folder=/data/cifar10-jpeg
    python main.py --config=configs/cifar10_asgan.py --workdir=/tmp/vanilla \
        --config.dataset.image_folder=/data/cifar10-jpeg --config.attack.num_steps=0
    python main.py ... --mode=eval    # D's source accuracy under PGD, samples, IS/FID
    python main.py --config=configs/cifar10_asgan.py:cpu ...   # half widths, a CPU budget

Values of the official Rob-GAN repository's removed `train_cifar_nosup.py` and its notes
(`removed-in-0b2b664/note.txt`): `cnn_32` G and D (ngf = ndf = 64, nz = 128, D without
BatchNorm), the binary cross-entropy loss, Adam lr 2e-4 with (0.5, 0.999) and no decay, n_dis 1,
no augmentation and no dequantization noise, and the attack on real images of
`attack_Linf_PGD_bin`: one step of 0.0078 in an eps-ball of 0.01 ("one adv step"; its notes
also try three). The script takes its batch size and epoch count as required flags without
recording them: we take batch 64 (its `train_cifar.sh` sibling's) and 100 epochs. The official
loop updates G before D in each iteration; here D is updated first (n_dis D updates, then G).
"""

from configs import default

NUM_TRAIN_IMAGES = 50_000


def get_config(variant: str = ''):
  """variant '' is the official setting; 'cpu' halves G's and D's widths (ngf = ndf = 32) and
  logs every step, for the side-by-side CPU runs of benchmarks/asgan_vs_vanilla.sh."""
  if variant not in ('', 'cpu'):
    raise ValueError(f"configs/cifar10_asgan.py:<variant> must be '' or 'cpu', got {variant!r}")
  config = default.get_config()
  config.method = 'asgan'

  m = config.model
  m.num_classes = 0
  m.generator_architecture = 'cnn'
  m.generator_channel_multipliers = (8, 4, 2, 1)
  m.discriminator_architecture = 'cnn'
  m.discriminator_channel_multipliers = (1, 2, 4, 8)
  m.discriminator_downsample = (True, True, True, False)
  m.normalization = 'none'

  # attack_Linf_PGD_bin: its step is Linf_SGD's lr, 0.0078; num_steps=0 is the vanilla GAN.
  config.attack = default.attack_config(epsilon=0.01, step_size=0.0078, num_steps=1)

  o = config.optim
  o.b1, o.b2 = 0.5, 0.999
  o.decay_factor = 1.0  # No decay (the official decay is commented out).
  o.restart_adam_at_decay = False

  d = config.dataset
  d.crop_padding = 0
  d.random_flip = False
  d.dequantization_noise = 0.0

  t = config.train
  t.n_dis = 1
  t.num_steps = 100 * NUM_TRAIN_IMAGES // t.batch_size
  config.evals.pgd_accuracy.every_steps = config.evals.sample_grid.every_steps = 5_000
  t.checkpoint_every_steps = 2_500

  # G's metrics in the features of the reference classifier of CIFAR-10's 10 classes, the one
  # the class-conditional configs share.
  config.reference.num_classes = 10

  # D's source-head robustness on real test images, around the training radius.
  e = config.eval
  e.epsilons = (0.0, 0.0025, 0.005, 0.01, 0.02, 0.04)
  e.attack = default.attack_config(epsilon=0.01, step_size=0.002, num_steps=20)
  e.num_examples = 2_000

  if variant == 'cpu':
    m.generator_width = m.discriminator_width = 32
    t.log_every_steps = 1  # D's loss at every step, for its spread.
    t.checkpoint_every_steps = 25
    config.evals.pgd_accuracy.every_steps = config.evals.sample_grid.every_steps = 250
    config.evals.pgd_accuracy.cotrain_num_examples = 500
    e.num_examples = e.train_num_examples = 1_000
  return config
