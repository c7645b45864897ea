"""L-inf projected gradient descent (PGD) attack.

Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks" (ICLR 2018), as used
by Rob-GAN (Liu & Hsieh, CVPR 2019, Sec. 4): repeated sign-gradient ascent steps on a loss,
each followed by projection onto the L-inf ball of radius `epsilon` around the clean input and
clipping to the pixel range [-1, 1]. Official code: `miscs/pgd.py` (`attack_Linf_PGD`).

`pgd_head` attacks one head of D in inference mode: the classifier (PGD on the class
cross-entropy; official `attack_label_Linf_PGD`), which fine-tuning, the Madry baseline,
evaluation (official `acc_under_attack.py`) and the notebook API use, or the source head of an
unconditional D (PGD pushing real images towards "fake"; official `attack_Linf_PGD_bin`), whose
accuracy evaluation reports for AS-GAN.

`epsilon` and `step_size` are in the [-1, 1] pixel scale: 8/255 in [0, 1] units is 16/255 =
0.0627 here.
"""

from typing import Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from rob_gan_jax import parallel

PIXEL_MIN, PIXEL_MAX = -1.0, 1.0
HEADS = ('class', 'source')


def check_attack_args(*, epsilon, step_size, num_steps, prefix: str = '') -> None:
  """Raises ValueError for epsilon < 0, step_size <= 0 or num_steps < 0 (Python numbers only).

  `prefix` (e.g. 'attack.') is put before the argument's name in the message.
  """
  if isinstance(epsilon, (int, float)) and epsilon < 0:
    raise ValueError(f'{prefix}epsilon must be >= 0, got {epsilon}')
  if isinstance(step_size, (int, float)) and step_size <= 0:
    raise ValueError(f'{prefix}step_size must be > 0, got {step_size}')
  if isinstance(num_steps, int) and num_steps < 0:
    raise ValueError(f'{prefix}num_steps must be >= 0, got {num_steps}')


def check_attack_config(attack_config, field: str) -> None:
  """Checks an attack sub-config (`epsilon`, `step_size`, `num_steps`, `random_start`).

  Args:
    attack_config: e.g. `config.attack`, `config.finetune.attack` or `config.eval.attack`.
    field: its name in the config, used in the message.

  Raises:
    ValueError: epsilon < 0, step_size <= 0 or num_steps < 0.
  """
  check_attack_args(epsilon=attack_config.epsilon, step_size=attack_config.step_size,
                    num_steps=attack_config.num_steps, prefix=f'{field}.')


def pgd_linf(loss_fn: Callable[[jax.Array, jax.Array], jax.Array], x: jax.Array, y: jax.Array,
             *, epsilon, step_size, num_steps: int, random_start: bool = False,
             keys: Optional[jax.Array] = None, unroll: Optional[bool] = None) -> jax.Array:
  """Finds x_adv in the L-inf ball around x that increases `loss_fn`.

  Only the input is differentiated: `loss_fn` closes over its weights, so no weight gradients are
  computed. The model inside `loss_fn` should run in inference mode (BatchNorm with running
  statistics, no spectral-norm update), as the official code's `dis.eval()` does, so that the
  attack changes no state.

  Args:
    loss_fn: `loss_fn(x, y) -> scalar` to maximise; examples must not interact (no batch
      statistics), so the sign of its gradient is each example's own.
    x: (B, H, W, C) float32 clean images in [-1, 1].
    y: labels passed through to `loss_fn`.
    epsilon: L-inf radius in the [-1, 1] pixel scale; a Python float or a scalar array (an array
      lets one compiled attack serve several radii).
    step_size: ascent step in the same scale.
    num_steps: number of steps, unrolled with `lax.fori_loop`; 0 returns x (or the random start).
    random_start: start from a uniform point in the eps-ball (Madry et al.) instead of x.
    keys: (B,) PRNG keys (raw keys: (B, 2) uint32), one per example, required when
      `random_start`: example i starts from noise drawn with `keys[i]`, so its start does not
      depend on the rest of the batch or on how a batch is split over devices.
    unroll: unroll the `fori_loop` at compile time; None: on the CPU backend only
      (`parallel.unroll_loops`, `config.unroll`). XLA:CPU runs convolutions inside a `while`
      body about 3x slower than the same code unrolled (measured: 5 steps of the CIFAR-10 D at
      batch 64, 5.3 s vs 1.6 s); unrolling costs compile time that grows with num_steps.

  Returns:
    (B, H, W, C) float32 adversarial images under `stop_gradient`, with
    ||x_adv - x||_inf <= epsilon and values in [-1, 1].

  Raises:
    ValueError: epsilon < 0, step_size <= 0, num_steps < 0, or random_start without keys.
  """
  check_attack_args(epsilon=epsilon, step_size=step_size, num_steps=num_steps)
  x = jax.lax.stop_gradient(x)
  lower = jnp.maximum(x - epsilon, PIXEL_MIN)
  upper = jnp.minimum(x + epsilon, PIXEL_MAX)
  x_adv = x
  if random_start:
    if keys is None:
      raise ValueError('random_start=True needs PRNG keys, one per example')
    noise = jax.vmap(lambda k: jax.random.uniform(k, x.shape[1:], x.dtype, -1.0, 1.0))(keys)
    x_adv = jnp.clip(x + epsilon * noise, lower, upper)
  grad_fn = jax.grad(loss_fn)

  def step(_, x_adv):
    x_adv = x_adv + step_size * jnp.sign(grad_fn(x_adv, y))
    return jnp.clip(x_adv, lower, upper)

  unroll = parallel.unroll_loops(unroll) if num_steps else None
  x_adv = jax.lax.fori_loop(0, num_steps, step, x_adv, unroll=unroll)
  return jax.lax.stop_gradient(x_adv)


def class_logits(discriminator: nn.Module, variables, x: jax.Array) -> jax.Array:
  """D's class head in inference mode (changes no state): (B, H, W, 3) -> (B, C) float32."""
  return discriminator.apply(variables, x, train=False)[1]


def _check_head(head: str) -> None:
  if head not in HEADS:
    raise ValueError(f'head must be one of {HEADS}, got {head!r}')


def head_loss(discriminator: nn.Module, variables, x: jax.Array, y: jax.Array, *,
              head: str) -> jax.Array:
  """Per-example loss of one head of D in inference mode, the quantity its attack maximises.

  'class': softmax cross-entropy of the class logits against y. 'source': binary cross-entropy
  of the source logit against "real" (D's loss for calling a real image real; y is unused), whose
  sign gradient is that of -logit, so an attack on it pushes the image towards "fake".

  Args:
    discriminator, variables: D and its {'params', 'batch_stats'}.
    x: (B, H, W, 3) float32 images in [-1, 1].
    y: (B,) int32 labels ('class' only).
    head: 'class' or 'source'.

  Returns:
    (B,) float32.

  Raises:
    ValueError: unknown head.
  """
  _check_head(head)
  source, classes = discriminator.apply(variables, x, train=False)
  if head == 'class':
    return optax.softmax_cross_entropy_with_integer_labels(classes, y)
  return optax.sigmoid_binary_cross_entropy(source, jnp.ones_like(source))


def head_correct(discriminator: nn.Module, variables, x: jax.Array, y: jax.Array, *,
                 head: str) -> jax.Array:
  """(B,) bool: 'class': D's classifier predicts y; 'source': D calls the (real) image real
  (source logit > 0). D in inference mode; x (B, H, W, 3) float32 in [-1, 1].

  Raises:
    ValueError: unknown head.
  """
  _check_head(head)
  source, classes = discriminator.apply(variables, x, train=False)
  if head == 'class':
    return jnp.argmax(classes, axis=-1) == y
  return source > 0


def pgd_head(discriminator: nn.Module, variables, x: jax.Array, y: jax.Array, *, head: str,
             epsilon, step_size, num_steps: int, random_start: bool = False,
             keys: Optional[jax.Array] = None, unroll: Optional[bool] = None) -> jax.Array:
  """`pgd_linf` on `head_loss` of one head of D, D in inference mode.

  Official code: `miscs/pgd.py`, `attack_label_Linf_PGD` ('class', used by `finetune.py` and
  `acc_under_attack.py`) and `attack_Linf_PGD_bin` ('source', of the removed
  `train_cifar_nosup.py`).

  Args:
    discriminator: the D module.
    variables: D's {'params', 'batch_stats'}.
    x: (B, H, W, 3) float32 clean images in [-1, 1].
    y: (B,) int32 true labels ('class' only; any int32 array for 'source').
    head: 'class' or 'source'.
    epsilon, step_size, num_steps, random_start, keys, unroll: as in `pgd_linf`.

  Returns:
    (B, H, W, 3) float32 adversarial images in [-1, 1], ||x_adv - x||_inf <= epsilon.

  Raises:
    ValueError: as `pgd_linf`, or an unknown head.
  """
  _check_head(head)
  loss_fn = lambda x, y: jnp.mean(head_loss(discriminator, variables, x, y, head=head))
  return pgd_linf(loss_fn, x, y, epsilon=epsilon, step_size=step_size, num_steps=num_steps,
                  random_start=random_start, keys=keys, unroll=unroll)
