"""PSNR and SSIM under the named evaluation protocols of the SR literature.

Two protocols exist, and a number means nothing without its name (docs/reference.md section 3):

``"benchmark"`` (Set5, Set14, B100, Urban100, Manga109, user folders)
    quantise SR to 8 bit, convert to BT.601 luma ``Y = 16 + (65.481 R + 128.553 G + 24.966 B)/255``,
    crop ``scale`` pixels at every border, PSNR with peak 255.
``"div2k"`` (DIV2K validation 0801-0900)
    quantise, RGB, crop ``scale + 6`` pixels at every border, PSNR with peak 255.

SSIM is Wang et al. (2004) on the same region: 11x11 Gaussian window with sigma 1.5, K1 = 0.01,
K2 = 0.03, 'valid' filtering, no down-sampling, averaged over channels for RGB.

Y is kept in floating point (as BasicSR and the EDSR PyTorch code do); MATLAB's ``rgb2ycbcr`` on
uint8 images also rounds Y to 8 bit, which moves PSNR by about 0.01 dB.

>>> import numpy as np
>>> from srnas.metrics import psnr
>>> hr = np.full((32, 32, 1), 100.0)  # one channel: taken as Y already
>>> round(psnr(hr + 1, hr, scale=2), 2)  # an error of 1 grey level everywhere
48.13
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "PROTOCOLS", "border_crop", "evaluate_pair", "psnr", "quantize", "rgb_to_y", "ssim",
]

#: Evaluation protocols understood by `psnr`, `ssim` and `evaluate_pair`.
PROTOCOLS = ("benchmark", "div2k")

_Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0
_SSIM_K1, _SSIM_K2, _SSIM_SIGMA, _SSIM_SIZE = 0.01, 0.03, 1.5, 11
_PEAK = 255.0


def _is_torch(obj: object) -> bool:
    return type(obj).__module__.startswith("torch") and hasattr(obj, "detach")


def check_protocol(protocol: str) -> str:
    """Return ``protocol`` if it is one of `PROTOCOLS`, else raise ValueError naming them."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")
    return protocol


def border_crop(scale: int, protocol: str) -> int:
    """Pixels cropped at each border: ``scale`` ("benchmark") or ``scale + 6`` ("div2k")."""
    check_protocol(protocol)
    return int(scale) if protocol == "benchmark" else int(scale) + 6


def quantize(x: Any) -> Any:
    """Clip to 0..255 and round half away from zero; same kind (numpy/torch) and dtype back.

    Integer inputs (already 8-bit) are returned unchanged.
    """
    if _is_torch(x):
        import torch  # lazy: torch (start-up); only torch inputs need it

        if not x.is_floating_point():
            return x
        return torch.floor(x.clamp(0, 255) + 0.5)
    arr = np.asarray(x)
    if arr.dtype.kind != "f":
        return arr
    return np.floor(np.clip(arr, 0, 255) + 0.5)


def rgb_to_y(x: Any) -> Any:
    """BT.601 luma of 0..255 RGB: ``16 + (65.481 R + 128.553 G + 24.966 B) / 255`` (not rounded).

    numpy input is ``H x W x 3`` (-> ``H x W``, float64); torch input is ``(..., 3, H, W)``
    (-> ``(..., H, W)``, float).
    """
    if _is_torch(x):
        if x.ndim < 3 or x.shape[-3] != 3:
            raise ValueError(f"rgb_to_y expects a (..., 3, H, W) tensor, got shape {tuple(x.shape)}")
        w = x.new_tensor(_Y_WEIGHTS.tolist(), dtype=x.dtype if x.is_floating_point() else None)
        xf = x if x.is_floating_point() else x.float()
        return 16.0 + (xf * w.to(xf.dtype).view(3, 1, 1)).sum(dim=-3)
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"rgb_to_y expects an H x W x 3 array, got shape {arr.shape}")
    return 16.0 + arr @ _Y_WEIGHTS


def _to_hwc(x: Any, what: str) -> np.ndarray:
    if _is_torch(x):
        t = x.detach()
        if t.ndim == 4:
            if t.shape[0] != 1:
                raise ValueError(f"{what}: expected one image, got a batch of shape {tuple(t.shape)}")
            t = t[0]
        if t.ndim != 3:
            raise ValueError(f"{what}: expected a C x H x W tensor, got shape {tuple(t.shape)}")
        arr = t.to("cpu").double().permute(1, 2, 0).numpy()
    else:
        arr = np.asarray(x)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.ndim != 3:
            raise ValueError(f"{what}: expected an H x W x C array, got shape {arr.shape}")
    if arr.shape[2] not in (1, 3):
        raise ValueError(f"{what}: expected 1 or 3 channels, got shape {arr.shape}")
    return arr


def _prepare(sr: Any, hr: Any, scale: int, protocol: str) -> tuple[np.ndarray, np.ndarray]:
    """Quantise, pick Y or RGB, crop: two float64 ``H x W x C`` arrays on the scored region."""
    check_protocol(protocol)
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    a = np.asarray(quantize(_to_hwc(sr, "sr")), dtype=np.float64)
    b = np.asarray(quantize(_to_hwc(hr, "hr")), dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"sr and hr differ in shape: {a.shape} vs {b.shape} (H x W x C)")
    if protocol == "benchmark" and a.shape[2] == 3:
        a, b = rgb_to_y(a)[:, :, None], rgb_to_y(b)[:, :, None]
    c = border_crop(scale, protocol)
    h, w = a.shape[:2]
    if h <= 2 * c or w <= 2 * c:
        raise ValueError(f"image of {h}x{w} is too small for a border crop of {c} px ({protocol} protocol, x{scale})")
    return a[c:h - c, c:w - c], b[c:h - c, c:w - c]


def psnr(sr: Any, hr: Any, *, scale: int, protocol: str = "benchmark") -> float:
    """PSNR in dB of a super-resolved image against its ground truth, under ``protocol``.

    Args:
        sr, hr: numpy ``H x W x 3`` arrays or torch ``3 x H x W`` / ``1 x 3 x H x W`` tensors
            in the 0..255 range (float or uint8), of the same size. Both are quantised to 8 bit.
            A single-channel image (``H x W``, ``H x W x 1``, ``1 x H x W``) is taken as Y
            already under "benchmark".
        scale: the SR scale (sets the border crop).
        protocol: ``"benchmark"`` (Y, crop scale) or ``"div2k"`` (RGB, crop scale + 6).

    Returns ``inf`` for identical images.
    """
    a, b = _prepare(sr, hr, scale, protocol)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(_PEAK * _PEAK / mse)


def _gaussian_window() -> np.ndarray:
    # MATLAB fspecial('gaussian', 11, 1.5), separable: the 2-D window is outer(g, g).
    r = np.arange(_SSIM_SIZE) - (_SSIM_SIZE - 1) / 2
    g = np.exp(-(r * r) / (2 * _SSIM_SIGMA ** 2))
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """2-D 'valid' correlation of ``x`` (H x W) with ``outer(g, g)``."""
    k = len(g)
    h, w = x.shape
    rows = sum(g[i] * x[i:h - k + 1 + i] for i in range(k))
    return sum(g[j] * rows[:, j:w - k + 1 + j] for j in range(k))


def _ssim_channel(a: np.ndarray, b: np.ndarray) -> float:
    g = _gaussian_window()
    c1, c2 = (_SSIM_K1 * _PEAK) ** 2, (_SSIM_K2 * _PEAK) ** 2
    mu_a, mu_b = _filter_valid(a, g), _filter_valid(b, g)
    var_a = _filter_valid(a * a, g) - mu_a ** 2
    var_b = _filter_valid(b * b, g) - mu_b ** 2
    cov = _filter_valid(a * b, g) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


def ssim(sr: Any, hr: Any, *, scale: int, protocol: str = "benchmark") -> float:
    """SSIM (Wang et al. 2004) on the region and channels that `psnr` scores.

    Same arguments as `psnr`. RGB ("div2k") is the mean of the per-channel SSIMs. The region
    left after the border crop must be at least 11x11.
    """
    a, b = _prepare(sr, hr, scale, protocol)
    if min(a.shape[:2]) < _SSIM_SIZE:
        raise ValueError(f"region of {a.shape[0]}x{a.shape[1]} after the border crop is smaller than the 11x11 SSIM window")
    return float(np.mean([_ssim_channel(a[:, :, c], b[:, :, c]) for c in range(a.shape[2])]))


def evaluate_pair(sr: Any, hr: Any, scale: int, protocol: str = "benchmark") -> dict[str, Any]:
    """``{"psnr": dB, "ssim": value, "protocol": name}`` for one image pair (see `psnr`)."""
    return {
        "psnr": psnr(sr, hr, scale=scale, protocol=protocol),
        "ssim": ssim(sr, hr, scale=scale, protocol=protocol),
        "protocol": protocol,
    }
