"""Every setting of rob_gan_jax, with the official Rob-GAN CIFAR-10 values as defaults.

    python main.py --config=configs/default.py --workdir=/tmp/robgan

Other configs import this one and override fields; the returned config is locked, so a misspelt
key (in a config file or as `--config.x=...`) is an error rather than a silently new setting.
Pixel values and attack radii are in the [-1, 1] scale (8/255 in [0, 1] units = 0.0627 here).
Every attack sub-config (`attack`, `finetune.attack`, `eval.attack`) has the shape of
`attack_config`.
"""

import ml_collections
from ml_collections import config_dict

from rob_gan_jax import attacks
from rob_gan_jax import evaluators
from rob_gan_jax.metrics import reference


def attack_config(*, epsilon: float, step_size: float, num_steps: int,
                  random_start: bool = False) -> ml_collections.ConfigDict:
  """An L-inf PGD attack: radius, step size (both in the [-1, 1] scale), steps, random start."""
  return ml_collections.ConfigDict(dict(epsilon=epsilon, step_size=step_size,
                                        num_steps=num_steps, random_start=random_start))


def collapse_guard_config() -> ml_collections.ConfigDict:
  """When a stage stops because D's classifier has come to ignore its input
  (`loop.CollapseGuard`): the largest share of one predicted class above `max_class_share`, or
  the information of its predictions (`robustness.prediction_statistics`, 0 to 1) below
  `min_information`, at `patience` consecutive log points of one kind (training batches, the
  test-accuracy evaluator) or at the last step, after it was once within the bound. patience=0
  turns the guard off."""
  return ml_collections.ConfigDict(dict(max_class_share=0.9, min_information=0.02, patience=3))


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  # 'robgan': --mode=train is step 1 (co-training), --mode=finetune step 2.
  # 'madry': --mode=train is Madry adversarial training of D as a classifier only (no G).
  # 'asgan': --mode=train trains an unconditional GAN (model.num_classes=0) whose D is
  # adversarially trained on real images (AS-GAN, arXiv 1912.09670); attack.num_steps=0 is the
  # vanilla GAN. It has no classifier, so no --mode=finetune.
  config.method = 'robgan'
  # Settings that may differ from the workdir's config.json when a run is resumed, besides run
  # length, logging and evaluation (workdir.RESUMABLE_CHANGES): field names or sections,
  # e.g. --config.allow_changes="('optim.learning_rate',)". Changes go to config_history.json.
  config.allow_changes = ()
  # Whether the PGD steps and the n_dis D updates of a step are unrolled at compile time.
  # None: unrolled on CPU (XLA:CPU runs convolutions in a loop body ~3x slower), rolled on GPU and
  # TPU (where unrolling 20 attack steps compiles 20 copies of D). It does not change results.
  config.unroll = config_dict.placeholder(bool)
  # On the CPU backend, leave only reductions to XLA's YNNPACK library fusions, so convolutions run
  # on XLA's Eigen kernels (`parallel.compiler_options`; 1.2-1.6x faster iterations, BENCHMARKS.md).
  # No effect on GPU and TPU. The same arithmetic either way, up to float rounding.
  config.cpu_eigen_convolutions = True

  # Official `resnet_32` (nz=128, ngf=ndf=64, start_width=4, bn=True).
  config.model = ml_collections.ConfigDict(dict(
      # 0: unconditional, G(z) with plain BatchNorm and D with the source head only (AS-GAN).
      num_classes=10,
      image_size=32,
      # Channels of the images, of G's output and of D's input: 3 (RGB), or 1 for a grayscale
      # data set (Fashion-MNIST), read as it is stored.
      image_channels=3,
      z_dim=128,
      generator_width=64,
      generator_channel_multipliers=(16, 8, 4, 2, 1),
      bottom_width=4,
      num_upsample=3,
      # 'resnet': SN-GAN ResNet G (official gen_models/resnet*.py; class-conditional BatchNorm,
      # plain BatchNorm when num_classes=0); 'resnet_unsup': official gen_models/resnet_32_unsup.py
      # (unconditional, 3x3 shortcut convs); 'cnn': DCGAN-style official gen_models/cnn_32.py
      # (unconditional, transposed convs). The last two need num_classes=0.
      generator_architecture='resnet',
      # 'resnet': SN-GAN ResNet D (official dis_models/resnet*.py: optimized first block, ReLU,
      # avg-pool downsampling, global sum pooling); 'preact_resnet': pre-activation ResNet D
      # (official dis_models/preact_resnet.py: leaky ReLU 0.2, strided convs, global average
      # pooling, no BatchNorm, so normalization must be 'none' or 'spectral_norm'); 'cnn':
      # DCGAN-style official dis_models/cnn_32.py (leaky ReLU 0.2, 4x4 strided convs, linear
      # source head on the flattened map).
      discriminator_architecture='resnet',
      discriminator_width=64,  # ndf.
      # Output channels of each D block, in units of discriminator_width (one entry per block).
      discriminator_channel_multipliers=(2, 2, 2, 2),
      # Per D block, whether it halves the resolution ('resnet': the first must).
      discriminator_downsample=(True, True, False, False),
      normalization='batch_norm',  # 'batch_norm' | 'spectral_norm' | 'none'
      # D's BatchNorms and G's last one (Flax convention: running = m * old + (1 - m) * batch;
      # PyTorch momentum 0.1).
      bn_momentum=0.9,
      # G's class-conditional BatchNorms. 0.1 reproduces a quirk of the official code
      # (`layers/cat_cond_bn.py` passes its decay=0.9 as `F.batch_norm`'s momentum, so running =
      # 0.1 old + 0.9 batch); 0.9 is the conventional value.
      conditional_bn_momentum=0.1,
      # Dtype of activations and convolutions: 'float32' or 'bfloat16' (mixed precision).
      # Parameters, optimizer states, BatchNorm statistics, losses and the attack's projection
      # and clipping stay float32 either way, so it may change when a run is resumed.
      dtype='float32',
  ))

  # Step-1 attack on real images (official defaults: --adv_steps 5 --epsilon 0.03125, lr 0.0078).
  # num_steps=0: AC-GAN without attack.
  config.attack = attack_config(epsilon=0.03125, step_size=0.0078, num_steps=5)

  # Adam for both nets; lr multiplied by `decay_factor` every `decay_every_epochs`.
  config.optim = ml_collections.ConfigDict(dict(
      learning_rate=2e-4,
      b1=0.0,
      b2=0.9,
      decay_every_epochs=50,
      decay_factor=0.5,
      # True (official train.py, which rebuilds both Adams at each decay): Adam's moments and
      # bias-correction count restart at each decay; False: they carry on.
      restart_adam_at_decay=True,
  ))

  config.dataset = ml_collections.ConfigDict(dict(
      name='cifar10',  # TFDS name, used when image_folder is unset.
      image_folder=config_dict.placeholder(str),  # {train,test}/<class>/*.jpg, read by ImageFolder.
      data_dir=config_dict.placeholder(str),  # TFDS data_dir.
      train_split='train',
      test_split='test',
      # None: every class folder (TFDS: every label); 'imagenet143': ImageNet classes 151-293,
      # the dogs and cats of SN-GAN projection (synset folders n02085620 ... n02130308 of an
      # ImageNet-style folder, or TFDS imagenet2012); or a tuple of class folder / label names.
      # The selected classes are labelled 0, 1, ... in this order.
      classes=config_dict.placeholder(object),
      # 'pad_crop' (official CIFAR-10): images of exactly model.image_size, held in memory;
      # random crop after crop_padding zero padding and flip on device.
      # 'random_resized_crop' (official ImageNet): images of any size streamed from files;
      # RandomResizedCrop(image_size, scale=crop_scale, ratio=(1, 1)) and flip on host workers;
      # evaluation resizes the short side to image_size and centre-crops.
      # 'centre_crop' (CelebA, LSUN): streamed like random_resized_crop, but training images are
      # transformed as evaluation ones (short side resized, centre crop), then flipped on host.
      augmentation='pad_crop',
      crop_scale=(0.8, 0.9),  # random_resized_crop: range of the fraction of the area kept.
      crop_padding=4,  # pad_crop only.
      random_flip=True,
      dequantization_noise=1.0 / 128,  # Uniform [0, noise) added to inputs (SN-GAN trick).
  ))

  config.train = ml_collections.ConfigDict(dict(
      loss='split',  # 'split' (paper eq. 9) | 'acgan' (eq. 8).
      # Source loss: 'non_saturating' (official) | 'hinge' (SN-GAN, BigGAN) | 'minimax'.
      gan_loss='non_saturating',
      # Weight of the class term in G's loss (official 0.5, beside 0.5 x the source term).
      generator_class_weight=0.5,
      batch_size=64,  # Global batch of every D and G update.
      n_dis=5,  # D updates per G update.
      num_steps=31_250,  # G updates (200 epochs of D updates at batch 64, n_dis 5).
      log_every_steps=50,
      checkpoint_every_steps=500,
      max_to_keep=3,
      # True (official train.py): every training-mode pass updates the BatchNorm running
      # statistics (and spectral-norm vectors) of the net it runs, so the D step's pass through G
      # updates G's and the G step's pass through D updates D's. False: a step keeps only the
      # updates of the net it trains.
      keep_all_bn_updates=True,
      collapse_guard=collapse_guard_config(),
  ))
  # Step 2, fine-tuning of D's classifier (paper eq. 10), and the Madry baseline's training.
  # Official defaults: Adam lr 1e-3, batch 128, stages of 20, 20, 10, 10 epochs with the learning
  # rate divided by 10 after each; PGD on the class cross-entropy, 5 steps of eps / 5; D in
  # inference mode, where ours trains it in training mode, by measurement (README, "Where we
  # differ").
  config.finetune = ml_collections.ConfigDict(dict(
      init_workdir=config_dict.placeholder(str),  # Co-training workdir; default: --workdir.
      fake_weight=0.5,  # lambda of eq. 10 (official README: 0.3-0.8); 0 = no fake data.
      batch_size=128,
      learning_rate=1e-3,
      b1=0.9,
      b2=0.999,
      stage_epochs=(20.0, 20.0, 10.0, 10.0),
      stage_factor=0.1,
      # True (official finetune.py, which builds a new Adam after each stage): Adam's moments and
      # bias-correction count restart at each stage; False: they carry on.
      restart_adam_at_stage=True,
      # True: D trains in training mode (batch statistics, updated running averages). False
      # (official finetune.py: `dis.eval()` in the first attack is never undone): inference mode,
      # BatchNorm normalising with the co-trained running statistics, frozen; with the official
      # learning rate it collapses the classifier (BENCHMARKS.md, "Step 2's BatchNorm").
      discriminator_train_mode=True,
      # Re-estimate D's BatchNorm running statistics on `recalibration_examples` real training
      # images before step 2 starts (rob_gan_jax/recalibration.py): 'none' (official), 'clean',
      # or 'attacked' (as finetune.attack attacks them).
      recalibrate_batch_norm='none',
      recalibration_examples=5_000,
      num_steps=config_dict.placeholder(int),  # Stop after this many updates; None = all stages.
      attack=attack_config(epsilon=0.03125, step_size=0.00625, num_steps=5),
      log_every_steps=50,
      checkpoint_every_steps=500,
      max_to_keep=3,
      collapse_guard=collapse_guard_config(),
  ))

  # The reference classifier of G's metrics without downloaded weights
  # (rob_gan_jax/metrics/reference.py; evaluators/reference_metrics.py measures G with it).
  config.reference = reference.default_config()

  # Each evaluator's settings (rob_gan_jax/evaluators/<name>.py, its DEFAULTS): `every_steps`, how
  # often co-training runs it (G steps), `every_epochs`, how often fine-tuning and the Madry
  # baseline do (epochs); 0 = never; then its own fields. By default co-training logs
  # pgd_accuracy (clean and PGD accuracy on cotrain_num_examples test examples) and the
  # sample_grid every 2,500 steps, classifier training pgd_accuracy every epoch (on all test
  # examples). e.g. --config.evals.reference_metrics.every_steps=2500 (fd_ref, KID, precision,
  # recall, GAN-test of G), --config.evals.inception.weights=PATH.npz (IS and FID).
  config.evals = evaluators.default_config()

  # Robustness evaluation of D's classifier, --mode=eval (official `acc_under_attack.py`: PGD on
  # the class cross-entropy, step size eps / 5). The official script attacks the training split
  # for CIFAR-10; we report the test split, and a sample of the training split for the gap.
  config.eval = ml_collections.ConfigDict(dict(
      # What --mode=eval measures (rob_gan_jax/evaluators/<name>.py, settings in config.evals);
      # their metrics make eval/robustness.json, their images and plots eval/<name>.png, their
      # table lines the log's Markdown table. 'reference_metrics' (G in a reference classifier's
      # features, README) is not run by default: its first use trains the data set's reference
      # classifier (30 minutes on CPU).
      evaluators=('accuracy_curve', 'strong_attacks', 'local_lipschitz', 'sample_grid',
                  'inception'),
      # 'latest' (fine-tuned if there is a step-2 checkpoint), 'cotrain', 'finetune', 'madry'.
      stage='latest',
      split='test',
      train_split='train',
      epsilons=tuple(round(0.01 * i, 2) for i in range(10)),  # 0, 0.01, ..., 0.09.
      # The attack at one radius: the test accuracy logged while training uses it as is; the
      # sweep over `epsilons` keeps step_size / epsilon (eps / 5) at every radius.
      attack=attack_config(epsilon=0.03125, step_size=0.00625, num_steps=20),
      num_restarts=1,  # > 1: add attacks from random starts; robust only if all of them fail.
      # Attacks of the test-split sweep besides PGD (which always runs): strong attacks of
      # `attacks.available()` ('apgd-ce', 'apgd-t', 'fab-t': Croce & Hein 2020; 'square':
      # Andriushchenko et al. 2020), or 'autoattack' for those of `autoattack`. Each is reported
      # per radius, and so is the worst case per example over all attacks run.
      attacks=('pgd',),
      # AutoAttack's standard set, as RobustBench runs it.
      autoattack=('apgd-ce', 'apgd-t', 'fab-t', 'square'),
      # Each strong attack's budget, {module name: its fields} (`--config.eval.attack_budgets.
      # apgd_t.num_target_classes=3`); the defaults are AutoAttack's standard ones.
      attack_budgets=ml_collections.ConfigDict(attacks.default_budgets()),
      num_examples=config_dict.placeholder(int),  # Test examples attacked; None = whole split.
      train_num_examples=1_000,  # Training examples for the train/test gap.
      batch_size=500,
      # How G makes images for sample grids, IS/FID, G's reference metrics and api.Model.sample,
      # in batches of `sample_batch_size`. False (official code, which never calls gen.eval()):
      # BatchNorm uses the statistics of the batch being generated, so an image depends on the
      # batch it is generated in. True: running statistics.
      sample_with_running_stats=False,
      sample_batch_size=200,
  ))
  config.lock()
  return config
