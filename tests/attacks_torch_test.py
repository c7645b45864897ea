"""Cross-check of the strong attacks (APGD-CE, APGD-T, Square) against torchattacks 3.5.1.

The same small CNN in Flax and in PyTorch (weights copied), 200 smooth random 16x16 images
labelled by the network's own predictions, one radius at which the robust accuracy is
intermediate; ours and torchattacks' robust accuracies must agree within a few examples under
matching budgets. The attacks draw different random numbers, so only the counts are compared.

Needs torch and torchattacks (test-only; `pip install --no-deps torchattacks==3.5.1`, which
needs only torch, numpy, scipy and tqdm). The module is skipped without them, unless
ROBGAN_REQUIRE_TORCH=1 (.ci/run), where a missing package is an error.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rob_gan_jax import attacks
from tests import conftest

pytestmark = pytest.mark.slow  # Second lane: the torchattacks cross-checks.


torch = conftest.require('torch')
torchattacks = conftest.require('torchattacks')

NUM_IMAGES, SIZE = 200, 16
# 0.012 in the [-1, 1] scale (0.006 ~ 1.5/255 in torchattacks' [0, 1] scale): robust accuracy
# 46% under APGD-CE, 35% under APGD-T and 46-50% under Square (of 100% clean).
EPSILON = 0.012
NUM_STEPS = 100  # At 100 steps our (the paper's) APGD checkpoints equal the official code's.
NUM_TARGET_CLASSES = 3  # torchattacks' APGDT(n_classes=4) attacks the top 3 other classes.
NUM_QUERIES = 1000


class Net(nn.Module):
  """conv(16, 3x3, stride 2)-relu-conv(32, 3x3, stride 2)-relu-flatten-dense(10)."""

  @nn.compact
  def __call__(self, x):
    pad = ((1, 1), (1, 1))  # PyTorch's padding=1 ('SAME' would pad (0, 1) at stride 2).
    x = nn.relu(nn.Conv(16, (3, 3), strides=2, padding=pad)(x))
    x = nn.relu(nn.Conv(32, (3, 3), strides=2, padding=pad)(x))
    return nn.Dense(10)(x.reshape(x.shape[0], -1))


class TorchNet(torch.nn.Module):
  """`Net` in PyTorch on NCHW images in [0, 1] (torchattacks' range), mapped to [-1, 1]."""

  def __init__(self, params):
    super().__init__()
    self.conv0 = torch.nn.Conv2d(3, 16, 3, stride=2, padding=1)
    self.conv1 = torch.nn.Conv2d(16, 32, 3, stride=2, padding=1)
    self.dense = torch.nn.Linear(32 * (SIZE // 4) ** 2, 10)
    tensor = lambda a: torch.from_numpy(np.array(a))
    with torch.no_grad():
      for conv, name in ((self.conv0, 'Conv_0'), (self.conv1, 'Conv_1')):
        conv.weight.copy_(tensor(params[name]['kernel']).permute(3, 2, 0, 1))  # HWIO -> OIHW.
        conv.bias.copy_(tensor(params[name]['bias']))
      self.dense.weight.copy_(tensor(params['Dense_0']['kernel']).T)
      self.dense.bias.copy_(tensor(params['Dense_0']['bias']))

  def forward(self, x):
    x = torch.relu(self.conv1(torch.relu(self.conv0(2 * x - 1))))
    return self.dense(x.permute(0, 2, 3, 1).flatten(1))  # Flattened in Flax's NHWC order.


@pytest.fixture(scope='module')
def setup():
  """(logits_fn, torch model, x (N, H, W, 3) in [-1, 1], y, x in NCHW [0, 1], y in torch)."""
  # Smooth random images: uniform noise at 4x4, bilinearly upsampled.
  low = np.random.default_rng(0).uniform(-1, 1, (NUM_IMAGES, SIZE // 4, SIZE // 4, 3))
  x = jnp.clip(jax.image.resize(jnp.asarray(low, jnp.float32), (NUM_IMAGES, SIZE, SIZE, 3),
                                'linear'), -1, 1)
  net = Net()
  variables = net.init(jax.random.PRNGKey(0), x[:1])
  logits_fn = lambda x: net.apply(variables, x)
  y = jnp.argmax(logits_fn(x), axis=-1)
  torch_net = TorchNet(variables['params']).eval()
  x_torch = torch.from_numpy(np.array((x + 1) / 2)).permute(0, 3, 1, 2).contiguous()
  # On 2 shared cores, torch's 2 threads ran these small batches 20x slower than 1 thread.
  threads = torch.get_num_threads()
  torch.set_num_threads(1)
  yield logits_fn, torch_net, x, y, x_torch, torch.from_numpy(np.array(y)).long()
  torch.set_num_threads(threads)


def test_flax_and_torch_networks_agree(setup):
  logits_fn, torch_net, x, y, x_torch, _ = setup
  with torch.no_grad():
    torch_logits = torch_net(x_torch).numpy()
  np.testing.assert_allclose(torch_logits, logits_fn(x), atol=1e-5)
  np.testing.assert_array_equal(torch_logits.argmax(1), y)
  assert len(np.unique(y)) >= 3


def ours(name, logits_fn, x, y):
  budget = {'apgd-ce': dict(num_steps=NUM_STEPS, num_restarts=1),
            'apgd-t': dict(num_steps=NUM_STEPS, num_restarts=1,
                           num_target_classes=NUM_TARGET_CLASSES),
            'square': dict(num_queries=NUM_QUERIES)}[name]
  attack = jax.jit(lambda x, y, key: attacks.run(name, logits_fn, x, y, epsilon=EPSILON,
                                                 key=key, budget=budget))
  x_adv, robust = attack(x, y, jax.random.PRNGKey(0))
  assert float(jnp.max(jnp.abs(x_adv - x))) <= EPSILON + 1e-6
  np.testing.assert_array_equal(robust, jnp.argmax(logits_fn(x_adv), axis=-1) == y)
  return int(robust.sum())


def theirs(name, torch_net, x_torch, y_torch):
  eps = EPSILON / 2  # torchattacks' [0, 1] scale.
  if name == 'apgd-ce':
    attack = torchattacks.APGD(torch_net, norm='Linf', eps=eps, steps=NUM_STEPS, n_restarts=1,
                               loss='ce', rho=0.75, seed=0)
  elif name == 'apgd-t':
    attack = torchattacks.APGDT(torch_net, norm='Linf', eps=eps, steps=NUM_STEPS, n_restarts=1,
                                rho=0.75, n_classes=NUM_TARGET_CLASSES + 1, seed=0)
  else:
    attack = torchattacks.Square(torch_net, norm='Linf', eps=eps, n_queries=NUM_QUERIES,
                                 n_restarts=1, p_init=0.8, loss='margin', resc_schedule=True,
                                 seed=0)
  x_adv = attack(x_torch, y_torch)
  assert float((x_adv.detach() - x_torch).abs().max()) <= eps + 1e-6
  with torch.no_grad():
    return int((torch_net(x_adv).argmax(1) == y_torch).sum())


# Robust examples of 200, ours (keys 0, 1, 2) vs torchattacks (seeds 0, 1, 2), measured:
#   APGD-CE 91, 92, 91 vs 92, 92, 92; APGD-T 69, 69, 69 vs 69, 69, 69;
#   Square 93, 93, 92 vs 96, 99, 96 (the test uses key 0 and seed 0: 91 vs 92, 69 vs 69, 93 vs 96).
# APGD agrees within an example: our condition 1 is strict (the paper's) where the official code
# halves at equality too, and differs in details of the first checkpoint, which rarely matter.
# Our Square is 3-6 examples stronger: it places squares at every position where they fit (the
# paper's Algorithm 1), torchattacks and the official code never against the bottom or right edge
# (randint(0, h - s)); with their positions ours found 96-100. Hence the one-sided tolerance:
# ours at most 3 examples weaker, at most 10 stronger.
TOLERANCE = {'apgd-ce': (3, 3), 'apgd-t': (3, 3), 'square': (3, 10)}  # (weaker, stronger).


@pytest.mark.parametrize('name', ['apgd-ce', 'apgd-t', 'square'])  # FAB-T: attacks_fab_test.
def test_robust_accuracy_matches_torchattacks(setup, name):
  logits_fn, torch_net, x, y, x_torch, y_torch = setup
  robust, reference = ours(name, logits_fn, x, y), theirs(name, torch_net, x_torch, y_torch)
  weaker, stronger = TOLERANCE[name]
  assert reference - stronger <= robust <= reference + weaker, (robust, reference)
  assert 0.2 * NUM_IMAGES <= reference <= 0.8 * NUM_IMAGES  # An intermediate radius.
