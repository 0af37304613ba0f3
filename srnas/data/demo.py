"""Demo data that works offline: photographs shipped inside installed packages.

The split is fixed (docs/reference.md sections 4 and 6 fix the training part):

- training: scikit-image's astronaut (512x512), rocket (427x640), chelsea (300x451) and the
  left view of stereo_motorcycle (500x741);
- validation: scikit-image's coffee (400x600) and scikit-learn's two sample photographs, china
  and flower (427x640 each, ``sklearn/datasets/images``; read with Pillow, sklearn itself is
  not imported).

The right motorcycle view is left out on purpose: it is the same scene as the left one, so it
would add almost nothing to training and would leak into validation if it were put there (a
stereo pair is never split). ``cat`` is the chelsea photograph again; hubble_deep_field, retina
and immunohistochemistry are not everyday photographs. Three validation photographs instead of
one, so that reference scores (full trainings, the fidelity study's references) do not rank
architectures by one image's content; coffee stays first, so ``val_images: 1`` scores on coffee
alone, as the ``tiny`` proxy does (the fidelity study found it ranks the tiny space as well as
all three: benchmarks/README.md, "Proxy fidelity"). LR images are made with the MATLAB-compatible `imresize` from the
modcropped HR image, so the demo behaves like the benchmark protocol; scores on it use the
"benchmark" protocol (Y, crop = scale). Bicubic x2 scores 30.59 dB on coffee, 24.35 dB on
china and 35.18 dB on flower (mean 30.04 dB).

>>> from srnas.data import demo_split
>>> train, val = demo_split()
>>> train.names, val.names
(['astronaut', 'rocket', 'chelsea', 'motorcycle'], ['coffee', 'china', 'flower'])
"""

from __future__ import annotations

import functools
import importlib.util
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

from srnas.data.images import modcrop
from srnas.data.imageset import SRImageSet, check_scales
from srnas.data.imresize import imresize
from srnas.errors import DataError

__all__ = ["DEMO_TRAIN", "DEMO_VAL", "demo_split"]

#: Image names of the demo training set, in order.
DEMO_TRAIN = ("astronaut", "rocket", "chelsea", "motorcycle")
#: Image names of the demo validation set (coffee first: ``val_images: 1`` scores on it alone).
DEMO_VAL = ("coffee", "china", "flower")
#: Validation photographs shipped with scikit-learn (file names in ``sklearn/datasets/images``).
SKLEARN_PHOTOS = {"china": "china.jpg", "flower": "flower.jpg"}


def _sklearn_photo(file: str) -> np.ndarray:
    """A sample photograph of the installed scikit-learn, read with Pillow (sklearn not imported)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("scikit-learn is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "images" / file
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def _loaders() -> dict[str, tuple[str, Callable[[], np.ndarray]]]:
    """Name -> (where it comes from, loader)."""
    out: dict[str, tuple[str, Callable[[], np.ndarray]]] = {
        "astronaut": ("skimage.data.astronaut", data.astronaut),
        "rocket": ("skimage.data.rocket", data.rocket),
        "chelsea": ("skimage.data.chelsea", data.chelsea),
        "motorcycle": ("skimage.data.stereo_motorcycle", lambda: data.stereo_motorcycle()[0]),
        "coffee": ("skimage.data.coffee", data.coffee),
    }
    for name, file in SKLEARN_PHOTOS.items():
        out[name] = (f"sklearn/datasets/images/{file}", functools.partial(_sklearn_photo, file))
    return out


@functools.cache
def _photo(name: str) -> np.ndarray:
    where, load = _loaders()[name]
    package = "scikit-learn" if name in SKLEARN_PHOTOS else "scikit-image"
    try:
        arr = np.ascontiguousarray(load(), dtype=np.uint8)
    except Exception as exc:  # the packages raise several types when their data files are missing
        raise DataError(f"{where}: demo photograph not available ({exc}); install or reinstall {package}") from None
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise DataError(f"{where}: expected an RGB photograph, got shape {arr.shape}")
    arr.setflags(write=False)
    return arr


@functools.cache
def _lr(name: str, scale: int) -> np.ndarray:
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
