"""Keeps TensorFlow out of a Python process (benchmarks/accelerator_check.sh puts this folder on
PYTHONPATH): `import tensorflow` (or tensorflow_datasets, or a CLU module that needs them) raises
ImportError, as on an accelerator image without TensorFlow, so the check shows what runs there."""

import sys

_BLOCKED = ('tensorflow', 'tensorflow_datasets')


class _NoTensorFlow:

  def find_spec(self, name, path=None, target=None):
    del path, target
    if name.split('.')[0] in _BLOCKED:
      raise ImportError(f'{name} is kept out of this process (benchmarks/no_tensorflow)')
    return None


sys.meta_path.insert(0, _NoTensorFlow())
