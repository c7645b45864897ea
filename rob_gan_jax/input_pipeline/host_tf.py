"""TensorFlow for reading data on the host, kept off the accelerators that JAX uses.

TensorFlow only decodes and augments images here. A GPU build of it (Colab's, or `tensorflow`
beside a CUDA install) would otherwise take most of every GPU's memory when it runs its first op,
and leave JAX little; so the first use hides every GPU from it, before any TensorFlow op.
"""

import functools


@functools.lru_cache(maxsize=None)
def tensorflow():
  """The `tensorflow` module, imported on first use with no GPU visible to it.

  Raises:
    ModuleNotFoundError: TensorFlow is not installed, with the install that provides it.
  """
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
  except ModuleNotFoundError as e:
    raise ModuleNotFoundError(
        'rob_gan_jax reads data with TensorFlow, which is not installed: pip install '
        '"rob_gan_jax[cpu]" (or [cuda], [tpu]), or tensorflow-cpu') from e
  try:
    tf.config.set_visible_devices([], 'GPU')
  except RuntimeError:  # TensorFlow ran an op before this: its devices are fixed already.
    pass
  return tf
