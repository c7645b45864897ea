"""Converts the standard FID Inception weights (.pth) to the .npz that rob_gan_jax reads.

    python -m rob_gan_jax.metrics.convert_inception pt_inception-2015-12-05-6726825d.pth \
        inception_fid.npz

Accepts pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` or torch-fidelity's
`weights-inception-2015-12-05-6726825d.pth` (the same weights). Only this command needs torch
(`torch.load(..., weights_only=True)`). The sha256 must start with a hash ending the file name
(`-6726825d.pth`), as torch.hub checks; names and shapes are checked before the atomic write.
"""

import os
import re
import sys
from typing import Dict

import numpy as np

from rob_gan_jax.metrics import inception

_BN = {'weight': ('params', 'scale'), 'bias': ('params', 'bias'),
       'running_mean': ('batch_stats', 'mean'), 'running_var': ('batch_stats', 'var')}


def check_hash(path: str) -> None:
  """Raises ValueError if the file name carries a hash prefix that its sha256 does not match."""
  match = re.search(r'-([0-9a-f]{8,})\.pth$', os.path.basename(path))
  if not match:
    return
  digest = inception.sha256(path)
  if not digest.startswith(match.group(1)):
    raise ValueError(f'{path}: sha256 {digest[:16]}... does not start with the '
                     f'{match.group(1)} in its name: the file is truncated or not the original')


def convert_state_dict(state_dict: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
  """PyTorch FID Inception state dict -> flat {'params/.../kernel': array} of InceptionV3;
  raises ValueError for names or shapes that are not those of the FID Inception-v3."""
  out = {}
  for name, value in state_dict.items():
    value = np.asarray(value, np.float32)
    *path, module, leaf = name.split('.')
    prefix = '/'.join(path + [module])
    if module == 'conv' and leaf == 'weight' and value.ndim == 4:
      out[f'params/{prefix}/kernel'] = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    elif module == 'bn' and leaf in _BN:
      collection, flax_name = _BN[leaf]
      out[f'{collection}/{prefix}/{flax_name}'] = value
    elif module == 'bn' and leaf == 'num_batches_tracked':
      continue
    elif name == 'fc.weight' and value.ndim == 2:
      out['params/fc/kernel'] = value.T
    elif name == 'fc.bias':
      out['params/fc/bias'] = value
    else:
      out[name] = value  # Reported as unexpected below.
  inception.check_arrays({k: v.shape for k, v in out.items()}, inception.flat_shapes(),
                         'the state dict')
  return out


def convert(pth_path: str, npz_path: str) -> None:
  """Reads `pth_path` with torch (weights only), checks it, writes `npz_path` atomically.

  Raises:
    FileNotFoundError: no such .pth.
    ValueError: hash mismatch, unreadable or truncated file, or wrong tensors.
  """
  import torch  # pylint: disable=g-import-not-at-top
  if not os.path.exists(pth_path):
    raise FileNotFoundError(pth_path)
  check_hash(pth_path)
  try:
    state_dict = torch.load(pth_path, map_location='cpu', weights_only=True)
  except Exception as e:  # Truncated zip, not a torch file, pickled code, ...
    raise ValueError(f'{pth_path} could not be read as a PyTorch state dict '
                     f'({type(e).__name__}: {e})') from e
  if not isinstance(state_dict, dict):
    raise ValueError(f'{pth_path} holds a {type(state_dict).__name__}, not a state dict')
  arrays = convert_state_dict({k: v.detach().cpu().numpy() for k, v in state_dict.items()})
  tmp = npz_path + '.tmp.npz'
  np.savez(tmp, **arrays)
  os.replace(tmp, npz_path)


def main(argv) -> int:
  if len(argv) != 3:
    print(__doc__, file=sys.stderr)
    return 2
  convert(argv[1], argv[2])
  print(f'wrote {argv[2]}')
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
