"""Demo data that works offline: photographs shipped inside the scikit-image wheel.

The split is fixed (docs/reference.md sections 4 and 6):

- training: astronaut (512x512), rocket (427x640), chelsea (300x451) and the left view of
  stereo_motorcycle (500x741);
- validation: coffee (400x600).

The right motorcycle view is left out on purpose: it is the same scene as the left one, so it
would add almost nothing to training and would leak into validation if it were put there.
``cat`` is the chelsea photograph again; hubble_deep_field, retina and immunohistochemistry are
not everyday photographs. LR images are made with the MATLAB-compatible `imresize` from the
modcropped HR image, so the demo behaves like the benchmark protocol; scores on it use the
"benchmark" protocol (Y, crop = scale). Bicubic x2 on the validation image scores 30.60 dB.

>>> from srnas.data import demo_split
>>> train, val = demo_split()
>>> train.names, val.names
(['astronaut', 'rocket', 'chelsea', 'motorcycle'], ['coffee'])
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np

from srnas.data.images import modcrop
from srnas.data.imageset import SRImageSet, check_scales
from srnas.errors import DataError

__all__ = ["DEMO_TRAIN", "DEMO_VAL", "demo_split"]

#: Image names of the demo training set, in order.
DEMO_TRAIN = ("astronaut", "rocket", "chelsea", "motorcycle")
#: Image names of the demo validation set.
DEMO_VAL = ("coffee",)


def _loaders() -> dict[str, Callable[[], np.ndarray]]:
    from skimage import data

    return {
        "astronaut": data.astronaut,
        "rocket": data.rocket,
        "chelsea": data.chelsea,
        "motorcycle": lambda: data.stereo_motorcycle()[0],
        "coffee": data.coffee,
    }


@functools.cache
def _photo(name: str) -> np.ndarray:
    try:
        arr = np.ascontiguousarray(_loaders()[name](), dtype=np.uint8)
    except Exception as exc:  # skimage raises several types when its data files are missing
        raise DataError(f"skimage.data.{name}: demo photograph not available ({exc}); reinstall scikit-image") from None
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise DataError(f"skimage.data.{name}: expected an RGB photograph, got shape {arr.shape}")
    arr.setflags(write=False)
    return arr


@functools.cache
def _lr(name: str, scale: int) -> np.ndarray:
    from srnas.data.imresize import imresize

    lr = imresize(np.ascontiguousarray(modcrop(_photo(name), scale)), 1.0 / scale)
    lr.setflags(write=False)
    return lr


def _build(set_name: str, names: Sequence[str], scales: tuple[int, ...]) -> SRImageSet:
    m = math.lcm(*scales)
    hr = [modcrop(_photo(n), m) for n in names]
    lr = {s: [_lr(n, s)[: h.shape[0] // s, : h.shape[1] // s] for n, h in zip(names, hr, strict=True)] for s in scales}
    return SRImageSet(name=set_name, names=list(names), hr=hr, lr=lr, protocol="benchmark")


def demo_split(scales: Sequence[int] | int = (2, 3, 4)) -> tuple[SRImageSet, SRImageSet]:
    """``(train, val)``: the fixed demo split, with LR images for ``scales``.

    HR images are cropped to a multiple of every scale (their least common multiple), so for
    the exact per-scale protocol evaluate on ``demo_split(scale)[1]`` (or
    ``load_eval_set("demo", scale)``). Arrays are read-only and shared between calls.
    """
    sc = check_scales(scales)
    return _build("demo-train", DEMO_TRAIN, sc), _build("demo-val", DEMO_VAL, sc)
