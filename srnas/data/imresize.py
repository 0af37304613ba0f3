"""MATLAB-compatible bicubic ``imresize`` for numpy arrays and torch tensors.

The SR literature makes its low-resolution images, and scores its bicubic baselines, with
MATLAB's ``imresize(img, scale, 'bicubic')``. PIL, OpenCV and ``torch.nn.functional.interpolate``
differ from it (no antialiasing, other border handling) by whole dBs on Set5 x4, so srnas
re-implements MATLAB's algorithm (``imresize.m``, ``contributions``) exactly:

- Keys' cubic kernel with a = -0.5, support 4;
- when downscaling (scale < 1) the kernel is stretched by 1/scale (antialiasing);
- input coordinate of output pixel x (1-based) is ``u = x/scale + (1 - 1/scale)/2``;
- borders are handled by symmetric padding (the edge pixel is repeated: ``x1 x0 | x0 x1 ...``);
- the output size is ``ceil(in * scale)``;
- the two dimensions are resized one after the other, the one with the smaller scale first;
- integer images are rounded (half away from zero) and clipped after *each* dimension, as
  MATLAB's class-preserving ``imresizemex`` does.

>>> import numpy as np
>>> from srnas.data import imresize
>>> imresize(np.zeros((7, 5, 3), np.uint8), 1 / 2).shape
(4, 3, 3)
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from srnas.cubic import matlab_cubic

if TYPE_CHECKING:
    import torch

__all__ = ["contributions", "imresize", "output_size", "weight_matrix"]

_KERNEL_WIDTH = 4.0
# 50 * 1.1 is 55.00000000000001 in floating point, and ceil() would add a whole pixel: products
# this close to an integer are float noise, not a request for one more pixel.
_SIZE_EPS = 1e-9

def output_size(in_len: int, scale: float) -> int:
    """MATLAB's output length ``ceil(in_len * scale)``.

    A product within 1e-9 of an integer is taken as that integer (``50 * 1.1`` gives 55, where a
    bare ``ceil`` of the float product would give 56).
    """
    product = in_len * scale
    nearest = round(product)
    if abs(product - nearest) < _SIZE_EPS:
        return max(nearest, 1)
    return max(math.ceil(product), 1)


def contributions(in_len: int, out_len: int, scale: float, *, antialias: bool = True
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-pixel weights and 0-based input indices, as MATLAB's ``contributions``.

    Returns ``(weights, indices)``, both of shape ``(out_len, taps)``: output pixel ``i`` is
    ``sum_t weights[i, t] * input[indices[i, t]]``. Each row of weights sums to 1; indices are
    already mirrored at the borders; tap columns whose weight is zero for every output are
    dropped, as MATLAB does.
    """
    if in_len < 1 or out_len < 1:
        raise ValueError(f"lengths must be positive, got in_len={in_len}, out_len={out_len}")
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    kernel_width = _KERNEL_WIDTH
    stretch = 1.0
    if scale < 1 and antialias:
        stretch = scale
        kernel_width = _KERNEL_WIDTH / scale
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2.0)
    taps = math.ceil(kernel_width) + 2
    ind = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    weights = stretch * matlab_cubic(stretch * (u[:, None] - ind))
    weights = weights / weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    indices = mirror[np.mod(ind.astype(np.int64) - 1, 2 * in_len)]
    keep = np.any(weights != 0, axis=0)
    return weights[:, keep], indices[:, keep]


def weight_matrix(in_len: int, out_len: int, scale: float, *, antialias: bool = True) -> np.ndarray:
    """Dense ``(out_len, in_len)`` float64 matrix ``M`` with ``output = M @ input`` along one axis."""
    weights, indices = contributions(in_len, out_len, scale, antialias=antialias)
    matrix = np.zeros((out_len, in_len), dtype=np.float64)
    rows = np.repeat(np.arange(out_len), weights.shape[1])
    np.add.at(matrix, (rows, indices.ravel()), weights.ravel())
    return matrix


def _plan(in_hw: tuple[int, int], scale: float | tuple[float, float] | None,
          out_hw: tuple[int, int] | None) -> tuple[tuple[float, float], tuple[int, int]]:
    if (scale is None) == (out_hw is None):
        raise ValueError("imresize: give exactly one of scale and output_shape")
    if out_hw is not None:
        oh, ow = (int(v) for v in out_hw)
        if oh < 1 or ow < 1:
            raise ValueError(f"imresize: output_shape must be positive, got {out_hw}")
        return (oh / in_hw[0], ow / in_hw[1]), (oh, ow)
    if isinstance(scale, tuple):
        sh, sw = float(scale[0]), float(scale[1])
    else:
        sh = sw = float(scale)  # type: ignore[arg-type]  # None was excluded above
    if not (sh > 0 and sw > 0 and math.isfinite(sh) and math.isfinite(sw)):
        raise ValueError(f"imresize: scale must be positive and finite, got {scale}")
    return (sh, sw), (output_size(in_hw[0], sh), output_size(in_hw[1], sw))


def _round_clip_np(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    # MATLAB rounds half away from zero; values are >= 0 after the clip, so floor(x + 0.5).
    return np.floor(np.clip(x, info.min, info.max) + 0.5)


def _resize_axis_np(x: np.ndarray, axis: int, weights: np.ndarray, indices: np.ndarray) -> np.ndarray:
    # A sparse (out_len x in_len) matrix with `taps` entries per row, applied to the image with
    # `axis` moved first: a few times faster than a loop of gathers, exact float64 arithmetic.
    from scipy import sparse  # lazy: scipy.sparse (0.24 s at start-up; srnas.data imports this module)

    out_len, taps = weights.shape
    moved = np.moveaxis(x, axis, 0)
    rows = np.repeat(np.arange(out_len), taps)
    matrix = sparse.csr_matrix((weights.ravel(), (rows, indices.ravel())), shape=(out_len, moved.shape[0]))
    out = matrix @ np.ascontiguousarray(moved).reshape(moved.shape[0], -1)
    return np.moveaxis(np.asarray(out).reshape((out_len, *moved.shape[1:])), 0, axis)


def _resize_axis_torch(x: torch.Tensor, dim: int, weights: np.ndarray, indices: np.ndarray) -> torch.Tensor:
    import torch  # lazy: torch (start-up); only tensor inputs need it

    w = torch.as_tensor(weights, dtype=x.dtype, device=x.device)
    idx = torch.as_tensor(indices, device=x.device)
    shape = [1] * x.ndim
    shape[dim] = -1
    out = None
    for t in range(weights.shape[1]):
        term = w[:, t].reshape(shape) * x.index_select(dim, idx[:, t])
        out = term if out is None else out + term
    assert out is not None
    return out


@overload
def imresize(img: np.ndarray, scale: float | tuple[float, float] | None = None, *,
             output_shape: tuple[int, int] | None = None) -> np.ndarray: ...
@overload
def imresize(img: torch.Tensor, scale: float | tuple[float, float] | None = None, *,
             output_shape: tuple[int, int] | None = None) -> torch.Tensor: ...


def imresize(img: Any, scale: float | tuple[float, float] | None = None, *,
             output_shape: tuple[int, int] | None = None) -> Any:
    """Resize like MATLAB ``imresize(img, scale, 'bicubic')`` (antialiased when downscaling).

    Args:
        img: a numpy array ``H x W`` or ``H x W x C`` (float or unsigned integer), or a torch
            tensor ``(..., C, H, W)`` / ``(H, W)`` (float or uint8), on any device.
        scale: factor for both dimensions (``1/2`` makes LR from HR), or ``(scale_h, scale_w)``.
            The output size is ``ceil(H * scale) x ceil(W * scale)``.
        output_shape: ``(H_out, W_out)`` instead of ``scale``; the per-dimension scale is then
            ``H_out / H`` and ``W_out / W``, as in MATLAB.

    Returns:
        Same kind (numpy/torch), same dtype and layout as the input (a new array). Float inputs are not
        clipped (bicubic overshoots). Integer inputs are rounded half away from zero and clipped
        to the dtype's range after each dimension, exactly like MATLAB. numpy computes in
        float64; torch computes in the tensor's float dtype (float64 for uint8 tensors).
    """
    if _is_torch(img):
        return _imresize_torch(img, scale, output_shape)
    if not isinstance(img, np.ndarray):
        raise TypeError(f"imresize expects a numpy array or a torch tensor, got {type(img).__name__}")
    if img.ndim not in (2, 3):
        raise ValueError(f"imresize expects an H x W or H x W x C array, got shape {img.shape}")
    if img.dtype.kind not in "fu":
        raise TypeError(f"imresize supports float and unsigned integer arrays, got {img.dtype}")
    (sh, sw), (oh, ow) = _plan(img.shape[:2], scale, output_shape)
    out = img.astype(np.float64, copy=False)
    integer = img.dtype.kind == "u"
    steps = [(0, img.shape[0], oh, sh), (1, img.shape[1], ow, sw)]
    for axis, in_len, out_len, s in sorted(steps, key=lambda step: step[3]):
        if in_len == out_len and s == 1.0:
            continue
        weights, indices = contributions(in_len, out_len, s)
        out = _resize_axis_np(out, axis, weights, indices)
        if integer:
            out = _round_clip_np(out, img.dtype)
    return out.astype(img.dtype)


def _is_torch(obj: object) -> bool:
    return type(obj).__module__.startswith("torch") and hasattr(obj, "index_select")


def _imresize_torch(img: torch.Tensor, scale: float | tuple[float, float] | None,
                    out_hw: tuple[int, int] | None) -> torch.Tensor:
    import torch  # lazy: torch (start-up); only tensor inputs need it

    if img.ndim < 2:
        raise ValueError(f"imresize expects a (..., H, W) tensor, got shape {tuple(img.shape)}")
    if img.is_floating_point():
        work = img if img.dtype in (torch.float32, torch.float64) else img.float()
    elif img.dtype == torch.uint8:
        work = img.double()  # float64 as numpy, so the per-pass rounding agrees exactly
    else:
        raise TypeError(f"imresize supports float and uint8 tensors, got {img.dtype}")
    h, w = img.shape[-2:]
    (sh, sw), (oh, ow) = _plan((h, w), scale, out_hw)
    steps = [(img.ndim - 2, h, oh, sh), (img.ndim - 1, w, ow, sw)]
    for dim, in_len, out_len, s in sorted(steps, key=lambda step: step[3]):
        if in_len == out_len and s == 1.0:
            continue
        weights, indices = contributions(in_len, out_len, s)
        work = _resize_axis_torch(work, dim, weights, indices)
        if img.dtype == torch.uint8:
            work = torch.floor(work.clamp(0, 255) + 0.5)
    return work.to(img.dtype)
