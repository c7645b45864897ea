"""What the input pipeline's errors say: the field, folder or file at fault, and how to fix it."""

from typing import Optional, Sequence, Tuple


def listed(items: Sequence[str], limit: int = 5) -> str:
  """The first `limit` items joined by '; ', with a count of the rest."""
  more = f'; ... and {len(items) - limit} more' if len(items) > limit else ''
  return '; '.join(items[:limit]) + more


def missing_data(dataset_config, reason: str) -> str:
  return (f'{reason}\nProvide the data in one of two ways:\n'
          f'  1. TFDS: on a machine with internet, `tfds.load({dataset_config.name!r})` downloads '
          'it (set --config.dataset.data_dir to use a TFDS data directory other than the '
          'default);\n'
          '  2. an image folder laid out as {train,test}/<class>/*.jpg (class folders sorted in '
          'label order; for an unconditional GAN, model.num_classes=0, any folders, e.g. '
          'train/all/*.jpg): --config.dataset.image_folder=/path/to/folder.')


def check_split(split: str, splits: Sequence[str], where: str) -> None:
  if split not in splits:
    raise ValueError(f'split {split!r} does not exist in {where!r}; it has {sorted(splits)}')


def image_problem(name: str, found: Optional[Tuple[int, ...]],
                  shape: Optional[Tuple[int, ...]]) -> Optional[str]:
  """'<name> <problem>' for an image decoded to shape `found` (None: not decodable), if any."""
  if found is None:
    return f'{name} cannot be decoded'
  if shape is not None and found != shape:
    return f'{name} has shape {found}, expected {shape}'
  return None


def shape_mismatch(what: str, found: Sequence[Optional[int]], shape: Tuple[int, ...]) -> str:
  """Why images of shape `found` (H, W, C; None: any) cannot feed a model of `shape`, and the
  model fields that would fit them."""
  height, width, channels = found
  fit = []
  if height == width and height not in (None, shape[0]):
    fit.append(f'--config.model.image_size={height} (and model.bottom_width * '
               f'2**model.num_upsample = {height})')
  if channels not in (None, shape[2]):
    fit.append(f'--config.model.image_channels={channels}')
  hint = (f' Set the model to the data: {" ".join(fit)}; configs/fashion_mnist.py does so for '
          '28x28 grayscale images.' if fit else '')
  return (f'{what} has images of shape {tuple(found)}, but the model takes {shape} '
          f'(model.image_size={shape[0]}, model.image_channels={shape[2]}), and '
          "dataset.augmentation='pad_crop' reads images of exactly that shape "
          f"('random_resized_crop' and 'centre_crop' resize them).{hint}")


def unusable_images(where: str, problems: Sequence[str]) -> ValueError:
  return ValueError(f'{len(problems)} image(s) of {where} cannot be read: '
                    f'{listed(sorted(problems))}')
