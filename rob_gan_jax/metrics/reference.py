"""A reference classifier per data set: the feature network of the generator metrics that need no
downloaded weights (`metrics.sample_quality`, `evaluators/reference_metrics.py`).

The network is airbench's (Keller Jordan, "94% on CIFAR-10 in 3.29 seconds on a single GPU",
arXiv 2404.00498), written here from the paper's description: a frozen 2x2 patch-whitening
convolution (eigenvectors of the training patches' covariance, +/-), GELU, three conv groups
(3x3 conv, 2x2 max pool, BatchNorm with frozen scale, GELU, 3x3 conv, BatchNorm, GELU) of widths
`reference.widths`, a 3x3 max pool, and a linear head scaled by 1/9. Training is airbench's too:
Nesterov SGD with decoupled weight decay and learning rates expressed per 1,024 examples, 64 x the
learning rate for BatchNorm biases, label smoothing, random flips and 2-pixel reflect-padded
translations, a triangular learning-rate schedule. Left out: lookahead, the whitening bias's
progressive freezing, test-time translations (flip-averaged logits are kept).

The penultimate features (the pooled last group, `widths[-1]`-d) are what Frechet distance, KID,
precision and recall are computed in. Figures in them compare only between runs that share a
reference classifier (same data set, split, image size, classes, seed and `VERSION`), which
`identity()` names; they are not FID.

Images enter as uint8 (N, H, W, C) (C: 3, or 1 for grayscale data), or float in [-1, 1]
quantised to uint8 first (generated ones too, as if saved as PNG), and are scaled to [-1, 1].
"""

import dataclasses
import hashlib
import json
import os
import re
import time
from typing import Any, Dict, Optional, Sequence, Tuple

from absl import logging
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_dict
import numpy as np
import optax

from rob_gan_jax import parallel
from rob_gan_jax.input_pipeline import splits

# Bumped when the network, its training or its preprocessing change: cached classifiers of another
# version are not reused, so metrics never mix feature spaces.
VERSION = 1
_WHITENING_EPS = 5e-4
_HEAD_SCALE = 1 / 9


def default_config() -> ml_collections.ConfigDict:
  """`config.reference`: the reference classifier and the sample counts of `reference_metrics`."""
  return ml_collections.ConfigDict(dict(
      split='train',  # Trained on this split (in memory)...
      num_examples=config_dict.placeholder(int),  # ...this many examples of it; None = all.
      # The data set's classes; None = model.num_classes (set it for an unconditional GAN).
      num_classes=config_dict.placeholder(int),
      seed=0,
      # 5 epochs at widths (64, 256, 256): 88 % on CIFAR-10 in about 30 minutes on 2 CPU cores
      # (BENCHMARKS.md). airbench's own schedule is num_epochs=10, batch_size=1024 (a GPU).
      widths=(64, 256, 256),
      num_epochs=5.0,
      batch_size=512,
      learning_rate=11.5,  # Per 1,024 examples of the summed loss (airbench).
      momentum=0.85,
      weight_decay=0.0153,  # Per 1,024 examples, decoupled from the learning rate.
      bias_scaler=64.0,  # Learning-rate factor of BatchNorm and whitening biases.
      label_smoothing=0.2,
      translate=2,  # Random translations of up to this many pixels (reflect padding).
      warmup_fraction=0.23,  # Learning rate x0.2 -> x1 over this share of steps, then -> x0.07.
      cache_dir=config_dict.placeholder(str),  # None: <workdir>/../reference_classifiers.
  ))


class ConvGroup(nn.Module):
  """conv, 2x2 max pool, BN, GELU, conv, BN, GELU (airbench's `ConvGroup`)."""
  features: int

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    def bn(h, name):
      # Frozen scale (only the bias learns); torch momentum 0.6 is flax momentum 0.4.
      return nn.BatchNorm(use_running_average=not train, momentum=0.4, epsilon=1e-12,
                          use_scale=False, name=name)(h)
    conv = lambda h, name: nn.Conv(self.features, (3, 3), padding='SAME', use_bias=False,
                                   kernel_init=_dirac_init, name=name)(h)
    h = nn.max_pool(conv(x, 'conv1'), (2, 2), (2, 2))
    h = nn.gelu(bn(h, 'norm1'), approximate=False)
    return nn.gelu(bn(conv(h, 'conv2'), 'norm2'), approximate=False)


def _dirac_init(key, shape, dtype=jnp.float32):
  """PyTorch's default conv init, with the first `in` output channels the identity (airbench)."""
  kh, kw, cin, cout = shape
  bound = 1 / np.sqrt(kh * kw * cin)
  kernel = jax.random.uniform(key, shape, dtype, -bound, bound)
  n = min(cin, cout)
  identity = jnp.zeros((kh, kw, n, n), dtype).at[kh // 2, kw // 2].set(jnp.eye(n, dtype=dtype))
  return kernel.at[:, :, :n, :n].set(identity)


class ReferenceNet(nn.Module):
  """(N, H, W, C) float in [-1, 1] -> ((N, num_classes) logits, (N, widths[-1]) features)."""
  num_classes: int
  widths: Sequence[int] = (64, 256, 256)

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> Tuple[jax.Array, jax.Array]:
    # The whitening kernel is set from the data by `whitening_kernel` and never trained.
    patch = 4 * x.shape[-1]  # A 2x2 patch's values; +/- each eigenvector makes 2 * patch filters.
    whiten = self.param('whiten_kernel', nn.initializers.zeros, (2, 2, x.shape[-1], 2 * patch))
    h = jax.lax.conv_general_dilated(x, jax.lax.stop_gradient(whiten), (1, 1), 'VALID',
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    h = nn.gelu(h + self.param('whiten_bias', nn.initializers.zeros, (2 * patch,)),
                approximate=False)
    for i, width in enumerate(self.widths):
      h = ConvGroup(width, name=f'group{i + 1}')(h, train=train)
    features = jnp.max(h, axis=(1, 2))  # The 3x3 max pool of a 32 (or 28) px image's 3x3 map.
    logits = nn.Dense(self.num_classes, use_bias=False, name='head')(features) * _HEAD_SCALE
    return logits, features


def whitening_kernel(images: np.ndarray) -> np.ndarray:
  """(2, 2, C, 8C) kernel whitening the 2x2 patches of (N, H, W, C) images in [-1, 1]: the
  covariance's eigenvectors scaled by 1 / sqrt(eigenvalue + 5e-4), and their negatives."""
  x = np.asarray(images, np.float64)
  c = x.shape[-1]
  patches = np.stack([x[:, i:x.shape[1] - 1 + i, j:x.shape[2] - 1 + j]
                      for i in range(2) for j in range(2)], 3)  # (N, H-1, W-1, 4, C)
  patches = patches.reshape(-1, 4 * c)
  eigenvalues, eigenvectors = np.linalg.eigh(np.cov(patches, rowvar=False))
  filters = eigenvectors.T / np.sqrt(eigenvalues + _WHITENING_EPS)[:, None]  # (4C, 4C)
  filters = filters.reshape(4 * c, 2, 2, c).transpose(1, 2, 3, 0)
  return np.concatenate([filters, -filters], -1).astype(np.float32)


def _network_input(images: jax.Array) -> jax.Array:
  if images.dtype != jnp.uint8:
    images = jnp.round((jnp.clip(images, -1, 1) + 1) * 127.5).astype(jnp.uint8)
  return images.astype(jnp.float32) / 127.5 - 1


@dataclasses.dataclass(frozen=True)
class Classifier:
  """A trained reference classifier: the module, its variables and what identifies it (`info`:
  data set, split, image size, classes, seed, version, settings, clean test accuracy, time)."""
  net: ReferenceNet
  variables: Any
  info: Dict[str, Any]

  def outputs(self, images: np.ndarray, *, batch_size: int = 500,
              mesh: Optional[jax.sharding.Mesh] = None) -> Tuple[np.ndarray, np.ndarray]:
    """((N, classes) flip-averaged logits, (N, D) features of the unflipped image), float32."""
    variables = self.variables if mesh is None else parallel.replicate(self.variables, mesh)
    out = parallel.map_batches(lambda x, y, start: _outputs(self.net, variables, x),
                               np.asarray(images), np.zeros(len(images), np.int32), batch_size,
                               mesh)
    return out[:, :self.net.num_classes], out[:, self.net.num_classes:]

  def accuracy(self, images: np.ndarray, labels: np.ndarray, **kwargs) -> float:
    """Clean accuracy (flip-averaged logits) on (N, H, W, C) images and (N,) labels."""
    return float(np.mean(self.outputs(images, **kwargs)[0].argmax(1) == np.asarray(labels)))


@parallel.jit(static_argnums=0)
def _outputs(net: ReferenceNet, variables, images: jax.Array) -> jax.Array:
  x = _network_input(images)
  logits, features = net.apply(variables, x, train=False)
  flipped_logits, _ = net.apply(variables, x[:, :, ::-1], train=False)
  return jnp.concatenate([(logits + flipped_logits) / 2, features], -1)


def _optimizer(settings, *, batch_size: int, num_steps: int) -> optax.GradientTransformation:
  """airbench's SGD on the summed loss: learning rates and weight decay per 1,024 examples,
  divided by Nesterov momentum's step gain 1 + 1 / (1 - momentum) ("kilostep scale"); decay
  applied before momentum, as PyTorch's SGD does; the whitening kernel frozen."""
  kilostep = 1024 * (1 + 1 / (1 - settings.momentum))
  lr = settings.learning_rate / kilostep
  decay = settings.weight_decay * batch_size / kilostep  # Per step, at the schedule's peak.
  warmup = max(1, int(settings.warmup_fraction * num_steps))
  schedule = optax.join_schedules([
      optax.linear_schedule(0.2, 1.0, warmup),
      optax.linear_schedule(1.0, 0.07, max(1, num_steps - warmup))], [warmup])

  def sgd(group_lr):
    return optax.chain(optax.add_decayed_weights(decay / group_lr),
                       optax.sgd(lambda step: group_lr * schedule(step),
                                 momentum=settings.momentum, nesterov=True))

  def label(params):
    def one(path, _):
      name = '/'.join(str(getattr(k, 'key', k)) for k in path)
      if name == 'whiten_kernel':
        return 'frozen'
      return 'bias' if name.endswith('bias') else 'other'
    return jax.tree_util.tree_map_with_path(one, params)

  return optax.multi_transform({'frozen': optax.set_to_zero(), 'other': sgd(lr),
                                'bias': sgd(lr * settings.bias_scaler)}, label)


def _train_step(net: ReferenceNet, settings: Tuple, state, padded: jax.Array, labels: jax.Array,
                key: jax.Array):
  """One update on (B, H + 2t, W + 2t, C) uint8 reflect-padded images: a random translation
  (crop) and flip per image, summed label-smoothed cross-entropy."""
  tx, translate, label_smoothing = settings
  params, batch_stats, opt_state = state
  size = padded.shape[1] - 2 * translate
  shift_key, flip_key = jax.random.split(key)
  shifts = jax.random.randint(shift_key, (len(labels), 2), 0, 2 * translate + 1)
  crop = lambda image, s: jax.lax.dynamic_slice(image, (s[0], s[1], 0),
                                                (size, size, padded.shape[-1]))
  x = _network_input(jax.vmap(crop)(padded, shifts))
  flip = jax.random.bernoulli(flip_key, 0.5, (len(labels), 1, 1, 1))
  x = jnp.where(flip, x[:, :, ::-1], x)
  targets = optax.smooth_labels(jax.nn.one_hot(labels, net.num_classes), label_smoothing)

  def loss_fn(params):
    (logits, _), updates = net.apply({'params': params, 'batch_stats': batch_stats}, x,
                                     train=True, mutable=['batch_stats'])
    loss = optax.softmax_cross_entropy(logits, targets).sum()
    return loss, (updates['batch_stats'], jnp.mean(logits.argmax(-1) == labels))

  (loss, (batch_stats, accuracy)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
  updates, opt_state = tx.update(grads, opt_state, params)
  params = optax.apply_updates(params, updates)
  return (params, batch_stats, opt_state), {'loss': loss / len(labels), 'accuracy': accuracy}


def train(images: np.ndarray, labels: np.ndarray, settings, *, num_classes: int, seed: int,
          log_every_steps: int = 50) -> Tuple[ReferenceNet, Any]:
  """Trains a `ReferenceNet` on (N, H, W, C) uint8 images and (N,) int labels.

  Args:
    settings: `config.reference` (widths, num_epochs, batch_size, learning_rate, momentum,
      weight_decay, bias_scaler, label_smoothing, translate, warmup_fraction).
    seed: initialisation, example order and augmentation.

  Returns:
    The module and its {'params', 'batch_stats'}.

  Raises:
    ValueError: fewer examples than one batch, or labels outside [0, num_classes).
  """
  images, labels = np.asarray(images), np.asarray(labels, np.int32)
  n, batch_size = len(labels), min(settings.batch_size, len(labels))
  if n < 2 or labels.min() < 0 or labels.max() >= num_classes:
    raise ValueError(f'a reference classifier needs >= 2 examples with labels in '
                     f'[0, {num_classes}); got {n} examples, labels {labels.min()}..'
                     f'{labels.max()}')
  num_steps = max(1, int(np.ceil(settings.num_epochs * n / batch_size)))
  net = ReferenceNet(num_classes=num_classes, widths=tuple(settings.widths))
  key = jax.random.PRNGKey(seed)
  variables = net.init(key, jnp.zeros((1,) + images.shape[1:]), train=False)
  params = flax.core.unfreeze(variables['params'])
  whitening_images = images[np.random.default_rng(seed).permutation(n)[:5000]]
  params['whiten_kernel'] = jnp.asarray(whitening_kernel(
      np.asarray(whitening_images, np.float32) / 127.5 - 1))
  tx = _optimizer(settings, batch_size=batch_size, num_steps=num_steps)
  train_step = parallel.jit(_train_step, static_argnums=(0, 1), donate_argnums=2)
  state = (params, variables['batch_stats'], tx.init(params))
  t = settings.translate
  padded = np.pad(images, ((0, 0), (t, t), (t, t), (0, 0)), mode='reflect')
  step_settings = (tx, t, settings.label_smoothing)
  order = np.concatenate([np.random.default_rng([seed, epoch]).permutation(n)
                          for epoch in range(int(np.ceil(num_steps * batch_size / n)))])
  start = time.time()
  for step in range(num_steps):
    batch = order[step * batch_size:(step + 1) * batch_size]
    state, metrics = train_step(net, step_settings, state, padded[batch], labels[batch],
                                 jax.random.fold_in(key, step))
    if (step + 1) % log_every_steps == 0 or step + 1 == num_steps:
      logging.info('reference classifier: step %d/%d, loss %.3f, batch accuracy %.3f, %.0f s',
                   step + 1, num_steps, metrics['loss'], metrics['accuracy'], time.time() - start)
  params, batch_stats, _ = state
  return net, {'params': params, 'batch_stats': batch_stats}


def _num_classes(config) -> int:
  r = config.reference
  num_classes = config.model.num_classes if r.num_classes is None else r.num_classes
  if not num_classes:
    raise ValueError('the reference classifier learns the data set\'s classes, and '
                     'reference.num_classes (default: model.num_classes) is 0: set it to the '
                     'number of class folders of an unconditional GAN\'s labelled data set '
                     '(configs/cifar10_asgan.py does). Class-less data sets have no reference '
                     'classifier yet')
  return num_classes


def labelled(config):
  """`config` whose data loading yields the data set's class labels (`reference.num_classes`)
  and whose subsets are drawn with `reference.seed`, not the run's seed: runs of any seed and of
  conditional and unconditional GANs share one reference classifier."""
  fixed = config.copy_and_resolve_references()
  fixed.seed = config.reference.seed
  fixed.model.num_classes = _num_classes(config)
  return fixed


def test_split(config) -> Tuple[np.ndarray, np.ndarray]:
  """The whole `eval.split` with class labels: (N, H, W, C) uint8, (N,) int32."""
  return splits.load_subset(labelled(config), config.eval.split, None)


def identity(config) -> Dict[str, Any]:
  """What a reference classifier of `config` is trained on and how: two runs whose identities
  are equal measure G in the same feature space."""
  d, r = config.dataset, config.reference
  source = os.path.abspath(d.image_folder) if d.image_folder else d.name
  return json.loads(json.dumps({  # As the cache's .json reads back (lists, not tuples).
          'dataset': source, 'split': r.split, 'num_examples': r.num_examples,
          'num_classes': _num_classes(config),
          'image_size': config.model.image_size,
          'image_channels': config.model.image_channels,
          'classes': d.classes if d.classes is None or isinstance(d.classes, str)
                     else list(d.classes),
          'seed': r.seed, 'version': VERSION,
          'settings': {k: r[k] for k in _TRAINING_FIELDS}}))


_TRAINING_FIELDS = ('widths', 'num_epochs', 'batch_size', 'learning_rate', 'momentum',
                    'weight_decay', 'bias_scaler', 'label_smoothing', 'translate',
                    'warmup_fraction')


def cache_path(config, cache_dir: str) -> str:
  """`<cache_dir>/<data set>-<split>-<hash of identity()>` (+ '.msgpack' / '.json')."""
  ident = identity(config)
  name = re.sub(r'[^A-Za-z0-9_.-]+', '_', ident['dataset']).strip('_')
  digest = hashlib.sha256(json.dumps(ident, sort_keys=True, default=list).encode()).hexdigest()
  return os.path.join(cache_dir, f'{name}-{ident["split"]}-{digest[:12]}')


def load_or_train(config, cache_dir: str, *, mesh: Optional[jax.sharding.Mesh] = None
                  ) -> Classifier:
  """The reference classifier of `config` (`config.reference`), from `cache_dir`, or trained on
  `reference.split` (in memory: `reference.num_examples` of it, None = all) and its clean accuracy
  measured on the whole `eval.split`, then cached (process 0, atomically; every process trains
  the same classifier when none is cached).

  Raises:
    ValueError: no classes (`reference.num_classes`, default `model.num_classes`, is 0), or a
      cached file does not match its recorded checksum (the
      message names it; delete it to retrain).
  """
  num_classes = _num_classes(config)
  path = cache_path(config, cache_dir)
  net = ReferenceNet(num_classes=num_classes, widths=tuple(config.reference.widths))
  if os.path.exists(path + '.json'):
    with open(path + '.json') as f:
      info = json.load(f)
    with open(path + '.msgpack', 'rb') as f:
      data = f.read()
    if hashlib.sha256(data).hexdigest() != info['sha256']:
      raise ValueError(f'{path}.msgpack does not match the checksum in {path}.json (damaged or '
                       'partly written); delete both files to train the classifier again')
    return Classifier(net, flax.serialization.msgpack_restore(data), info)
  r = config.reference
  images, labels = splits.load_subset(labelled(config), r.split, r.num_examples)
  logging.info('Training the reference classifier on %d images of %s (cache: %s)', len(labels),
               r.split, path)
  start = time.time()
  net, variables = train(images, labels, r, num_classes=num_classes, seed=r.seed)
  seconds = time.time() - start
  classifier = Classifier(net, variables, {})
  accuracy = classifier.accuracy(*test_split(config), mesh=mesh)
  data = flax.serialization.msgpack_serialize(jax.device_get(variables))
  info = dict(identity(config), test_accuracy=accuracy, test_split=config.eval.split,
              training_seconds=round(seconds, 1), backend=jax.default_backend(),
              sha256=hashlib.sha256(data).hexdigest())
  logging.info('Reference classifier: clean %s accuracy %.4f after %.0f s of training',
               config.eval.split, accuracy, seconds)
  if parallel.is_main_process():
    os.makedirs(cache_dir, exist_ok=True)
    with open(path + '.msgpack.tmp', 'wb') as f:
      f.write(data)
    os.replace(path + '.msgpack.tmp', path + '.msgpack')
    with open(path + '.json.tmp', 'w') as f:
      json.dump(info, f, indent=1)
    os.replace(path + '.json.tmp', path + '.json')  # Last: a .json means the pair is whole.
  return Classifier(net, variables, info)


def real_features(config, classifier: Classifier, cache_dir: str, *,
                  mesh: Optional[jax.sharding.Mesh] = None) -> np.ndarray:
  """(N, D) float32 features of the whole `eval.split`, the real side of every metric, cached
  beside the classifier (keyed by its checksum) so that evaluations and runs share them."""
  path = f'{cache_path(config, cache_dir)}-{config.eval.split}-{classifier.info["sha256"][:12]}.npy'
  if os.path.exists(path):
    return np.load(path)
  features = classifier.outputs(test_split(config)[0], mesh=mesh)[1]
  if parallel.is_main_process():
    os.makedirs(cache_dir, exist_ok=True)
    with open(path + '.tmp', 'wb') as f:
      np.save(f, features)
    os.replace(path + '.tmp', path)
  return features


def trained_accuracy(images: np.ndarray, labels: np.ndarray, config,
                     test: Tuple[np.ndarray, np.ndarray], *,
                     mesh: Optional[jax.sharding.Mesh] = None) -> float:
  """Clean accuracy on `test` of a fresh classifier like the reference one (`config.reference`)
  trained on (N, H, W, C) uint8 `images` and (N,) `labels` only: CAS when they are G's samples
  (Ravuri & Vinyals, NeurIPS 2019; GAN-train in Shmelkov et al., ECCV 2018)."""
  net, variables = train(images, labels, config.reference, num_classes=_num_classes(config),
                         seed=config.reference.seed)
  return Classifier(net, variables, {}).accuracy(*test, mesh=mesh)


def real_data_accuracy(config, cache_dir: str, num_examples: int,
                       test: Tuple[np.ndarray, np.ndarray], *,
                       mesh: Optional[jax.sharding.Mesh] = None) -> float:
  """CAS's ceiling: `trained_accuracy` of `num_examples` real images of `reference.split` (a
  fixed random subset), cached beside the reference classifier."""
  path = f'{cache_path(config, cache_dir)}-real-{num_examples}.json'
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)['accuracy']
  images, labels = splits.load_subset(labelled(config), config.reference.split,
                                              num_examples)
  accuracy = trained_accuracy(images, labels, config, test, mesh=mesh)
  if parallel.is_main_process():
    os.makedirs(cache_dir, exist_ok=True)
    with open(path + '.tmp', 'w') as f:
      json.dump({'accuracy': accuracy, 'num_examples': num_examples}, f)
    os.replace(path + '.tmp', path)
  return accuracy
