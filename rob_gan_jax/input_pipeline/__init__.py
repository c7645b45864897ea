"""Input pipeline: fixed evaluation splits and subsets, and the training batches of step s.

Modules, by concept (callers import them, not names of this package): `folder` (the one listing
of an image folder's split), `tfds_data` and `sources` (TFDS and folder data as examples read by
index, or a whole split in memory), `classes` (class selection, ImageNet-143), `transforms` (host
crops and flips, the device `augment`), `batches` (the batches of step s), `splits` (where
'pad_crop' versus streaming is decided, and the public entry points).
"""
