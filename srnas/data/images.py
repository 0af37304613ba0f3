"""Image files <-> uint8 ``H x W x 3`` arrays (Pillow), and ``modcrop``.

Every image srnas reads becomes RGB uint8: grayscale is replicated to three channels, alpha and
palettes are dropped/expanded, 16-bit images are scaled to 8 bit. Failures raise `DataError`
with the path in the message.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from srnas.errors import DataError
from srnas.fileio import atomic_write

__all__ = ["IMAGE_SUFFIXES", "is_image_file", "load_image", "modcrop", "save_image"]

#: File suffixes (lower case) that srnas treats as images in a folder.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """True for a visible file whose suffix is one of `IMAGE_SUFFIXES`."""
    p = Path(path)
    return not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()


#: Largest image `load_image` decodes, in pixels: 200 megapixels (600 MB as uint8 RGB, far above
#: a 2K DIV2K image of about 3 MP). The environment variable ``SRNAS_MAX_IMAGE_PIXELS`` overrides it.
DEFAULT_MAX_IMAGE_PIXELS = 200_000_000


def max_image_pixels() -> int:
    """The decode cap: ``SRNAS_MAX_IMAGE_PIXELS`` (a positive integer) or `DEFAULT_MAX_IMAGE_PIXELS`."""
    text = os.environ.get("SRNAS_MAX_IMAGE_PIXELS", "").strip().replace("_", "")
    if not text:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        cap = int(text)
    except ValueError:
        cap = 0
    if cap < 1:
        raise DataError(f"SRNAS_MAX_IMAGE_PIXELS={text!r}: expected a positive integer number of pixels "
                        f"(default {DEFAULT_MAX_IMAGE_PIXELS})")
    return cap


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file into a C-contiguous uint8 ``H x W x 3`` RGB array.

    An image of more than `max_image_pixels` pixels (200 MP by default, env
    ``SRNAS_MAX_IMAGE_PIXELS``) is refused from its header, before anything is decoded (a
    decompression bomb: a few KB of PNG that would decode to GBs). Pillow's own limit
    (``PIL.Image.MAX_IMAGE_PIXELS``) is raised to the cap when lower, never lowered.

    Raises:
        DataError: the file is missing, is not a readable image (truncated, corrupt, unknown
            format) or is over the pixel cap; the message starts with the path.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such image file")
    cap = max_image_pixels()
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < cap:
        Image.MAX_IMAGE_PIXELS = cap  # so that Pillow does not refuse what the cap allows

    def too_big(size: str) -> DataError:
        return DataError(f"{p}: image of {size} is over the cap of {cap} pixels ({cap / 1e6:.4g} MP; "
                         "a decompression bomb?); raise it with SRNAS_MAX_IMAGE_PIXELS=N")

    try:
        with warnings.catch_warnings():
            # Pillow warns between its limit and twice it; the cap below decides instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                width, height = im.size
                if width * height > cap:
                    raise too_big(f"{width}x{height} pixels")
                im.load()
                return _to_rgb8(im)
    except Image.DecompressionBombError as exc:  # over twice Pillow's limit: refused inside open()
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise too_big(f"{found[1]} pixels" if found else "too many pixels") from None
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


def image_kind(path: str | os.PathLike[str]) -> tuple[bool, np.ndarray | None]:
    """(whether the file is a grayscale image, its alpha channel as ``H x W`` uint8 or None): what
    `load_image`'s RGB leaves out, for writers that keep the input's kind (``srnas upscale``)."""
    with Image.open(path) as im:
        bands = im.getbands()
        alpha = np.array(im.getchannel("A"), dtype=np.uint8) if "A" in bands else None
        if im.mode == "P" and "transparency" in im.info:
            alpha = np.array(im.convert("RGBA").getchannel("A"), dtype=np.uint8)
        grey = im.mode in ("L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F", "1")
    return grey, alpha


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


def save_image(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Write ``array`` (``H x W`` grey, ``H x W x 2`` grey and alpha, ``H x W x 3`` RGB or
    ``H x W x 4`` RGBA) to ``path`` atomically; return the path.

    The format follows the suffix (``.png`` is lossless; JPEG is written at quality 95). uint8
    arrays are written as they are; float arrays are taken as 0..255, clipped and rounded. The
    file is written with `srnas.fileio.atomic_write` (a reader never sees half a file; mode from
    the umask). Parent folders are created.

    Raises:
        ValueError: the array's shape or dtype cannot be an image.
        DataError: the suffix is not an image format.
        WriteError: the file cannot be written (`StorageFullError` when the disk is full).
    """
    p = Path(path)
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (2, 3, 4))):
        raise ValueError(f"{p}: cannot save an array of shape {arr.shape} as an image "
                         "(need HxW, HxWx2 grey+alpha, HxWx3 or HxWx4)")
    if arr.dtype != np.uint8:
        if arr.dtype.kind not in "fiu":
            raise ValueError(f"{p}: cannot save an array of dtype {arr.dtype} as an image")
        arr = np.floor(np.clip(arr.astype(np.float64), 0, 255) + 0.5).astype(np.uint8)
    fmt = Image.registered_extensions().get(p.suffix.lower())
    if fmt is None:
        raise DataError(f"{p}: unknown image format {p.suffix!r} (use .png for lossless output)")
    options: dict[str, Any] = {"quality": 95} if fmt == "JPEG" else {}
    image = Image.fromarray(np.ascontiguousarray(arr))
    return atomic_write(p, lambda handle: image.save(handle, format=fmt, **options))


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


def most_detailed_window(img: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the ``size`` x ``size`` window of ``img`` (H x W[ x C]) with the most
    detail: the largest sum of absolute luminance gradients (an integral image, so every window
    is scored). Where a flat crop would show no difference between upsamplers, this one does."""
    h, w = img.shape[:2]
    size = min(size, h, w)
    grey = img.astype(np.float64).mean(axis=2) if img.ndim == 3 else img.astype(np.float64)
    energy = np.zeros((h, w))
    energy[:, 1:] += np.abs(np.diff(grey, axis=1))
    energy[1:, :] += np.abs(np.diff(grey, axis=0))
    integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = integral[size:, size:] - integral[:-size, size:] - integral[size:, :-size] + integral[:-size, :-size]
    y, x = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(y), int(x)
