"""Image files <-> uint8 ``H x W x 3`` arrays (Pillow), and ``modcrop``.

Every image srnas reads becomes RGB uint8: grayscale is replicated to three channels, alpha and
palettes are dropped/expanded, 16-bit images are scaled to 8 bit. Failures raise `DataError`
with the path in the message.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from srnas.errors import DataError

__all__ = ["IMAGE_SUFFIXES", "is_image_file", "load_image", "modcrop", "save_image"]

#: File suffixes (lower case) that srnas treats as images in a folder.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """True for a visible file whose suffix is one of `IMAGE_SUFFIXES`."""
    p = Path(path)
    return not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file into a C-contiguous uint8 ``H x W x 3`` RGB array.

    Raises:
        DataError: the file is missing or is not a readable image (truncated, corrupt, unknown
            format); the message starts with the path.
    """
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such image file")
    try:
        with Image.open(p) as im:
            im.load()
            return _to_rgb8(im)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, EOFError) as exc:
        raise DataError(f"{p}: not a readable image ({_one_line(exc)})") from None


def _to_rgb8(im: Any) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit grayscale: Pillow's convert("RGB") would clip, not scale.
        arr16 = np.asarray(im, dtype=np.float64)
        arr = np.floor(np.clip(arr16 / 257.0, 0, 255) + 0.5).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(arr[:, :, None], 3, axis=2))
    if mode == "F":
        arr = np.floor(np.clip(np.asarray(im, dtype=np.float64), 0, 255) + 0.5).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(arr[:, :, None], 3, axis=2))
    if mode != "RGB":
        # Palette images may carry transparency; go through RGBA so the colours are right.
        if mode == "P":
            im = im.convert("RGBA")
        im = im.convert("RGB")
    return np.array(im, dtype=np.uint8, copy=True)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


def save_image(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Write ``array`` (``H x W`` or ``H x W x 3``) to ``path`` atomically; return the path.

    The format follows the suffix (``.png`` is lossless; JPEG is written at quality 95). uint8
    arrays are written as they are; float arrays are taken as 0..255, clipped and rounded. The
    file is written to a temporary name in the same folder and moved into place with
    ``os.replace``, so a reader never sees half a file. Parent folders are created.

    Raises:
        ValueError: the array's shape or dtype cannot be an image.
        DataError: the suffix is not an image format, or the file cannot be written.
    """
    from PIL import Image

    p = Path(path)
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ValueError(f"{p}: cannot save an array of shape {arr.shape} as an image (need HxW or HxWx3)")
    if arr.dtype != np.uint8:
        if arr.dtype.kind not in "fiu":
            raise ValueError(f"{p}: cannot save an array of dtype {arr.dtype} as an image")
        arr = np.floor(np.clip(arr.astype(np.float64), 0, 255) + 0.5).astype(np.uint8)
    fmt = Image.registered_extensions().get(p.suffix.lower())
    if fmt is None:
        raise DataError(f"{p}: unknown image format {p.suffix!r} (use .png for lossless output)")
    options: dict[str, Any] = {"quality": 95} if fmt == "JPEG" else {}
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                Image.fromarray(np.ascontiguousarray(arr)).save(fh, format=fmt, **options)
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise DataError(f"{p}: cannot write image ({_one_line(exc)})") from None
    return p


def modcrop(img: Any, scale: int) -> Any:
    """Crop the bottom/right so that height and width are multiples of ``scale``.

    Works on numpy ``H x W[ x C]`` arrays (a view, no copy) and torch ``(..., H, W)`` tensors.
    This is MATLAB's ``modcrop``: HR images are modcropped before LR images are made from them.
    """
    if int(scale) != scale or scale < 1:
        raise ValueError(f"modcrop: scale must be a positive integer, got {scale}")
    s = int(scale)
    if isinstance(img, np.ndarray):
        if img.ndim not in (2, 3):
            raise ValueError(f"modcrop expects H x W or H x W x C, got shape {img.shape}")
        h, w = img.shape[:2]
        return img[: h - h % s, : w - w % s]
    h, w = img.shape[-2:]
    return img[..., : h - h % s, : w - w % s]
