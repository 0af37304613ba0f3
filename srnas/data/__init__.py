"""Data for SR training and evaluation: image I/O, MATLAB-compatible bicubic, data sets, patches.

- `imresize`: MATLAB ``imresize(..., 'bicubic')`` for numpy arrays and torch tensors.
- `load_image`, `save_image`, `modcrop`: files <-> uint8 ``H x W x 3`` arrays.
- `SRImageSet` (`srnas.data.imageset`): decoded HR images and their LR images per scale.
- `load_train_set`, `load_eval_set`, `load_benchmark_sets`, `load_image_folder`
  (`srnas.data.sources`): one ``--data`` spec -> a source (the offline demo data, DIV2K, the
  authors' benchmark folders, plain folders) -> an `SRImageSet`.
- `describe_data_root` (`srnas.data.layout`): folder layouts and the `srnas data check` inventory.
- `ImageCache`, `default_cache_dir` (`srnas.data.cache`): the decoded-image cache.
- `demo_split`: the offline demo split (scikit-image photographs).
- `PatchSampler`: random aligned LR/HR crops with the 8 dihedral augmentations, on any device.
- `srnas.data.download`: DIV2K and benchmark downloads with checksums.

Names are imported lazily so that ``import srnas.data`` does not import torch. (`imresize` is
imported eagerly: the function must shadow its module of the same name.)

>>> from srnas.data import load_eval_set
>>> val = load_eval_set("demo", 2)
>>> val.name, val.protocol, val.hr[0].shape, val.lr[2][0].shape
('demo-val', 'benchmark', (400, 600, 3), (200, 300, 3))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from srnas._lazy import lazy_exports
from srnas.data.imresize import imresize

if TYPE_CHECKING:
    from srnas.data.demo import demo_split
    from srnas.data.images import load_image, modcrop, save_image
    from srnas.data.patches import PatchSampler
    from srnas.data.cache import ImageCache, default_cache_dir
    from srnas.data.imageset import SRImageSet
    from srnas.data.layout import describe_data_root
    from srnas.data.sources import load_benchmark_sets, load_eval_set, load_image_folder, load_train_set

_EXPORTS = {
    "load_image": "srnas.data.images",
    "save_image": "srnas.data.images",
    "modcrop": "srnas.data.images",
    "SRImageSet": "srnas.data.imageset",
    "ImageCache": "srnas.data.cache",
    "default_cache_dir": "srnas.data.cache",
    "describe_data_root": "srnas.data.layout",
    "load_train_set": "srnas.data.sources",
    "load_eval_set": "srnas.data.sources",
    "load_benchmark_sets": "srnas.data.sources",
    "load_image_folder": "srnas.data.sources",
    "demo_split": "srnas.data.demo",
    "PatchSampler": "srnas.data.patches",
}

__all__ = [
    "ImageCache", "PatchSampler", "SRImageSet", "default_cache_dir", "demo_split", "describe_data_root",
    "imresize", "load_benchmark_sets", "load_eval_set", "load_image", "load_image_folder", "load_train_set", "modcrop",
    "save_image",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
