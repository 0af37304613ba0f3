"""Evaluation runner: super-resolve images (whole, tiled, self-ensembled) and score them with a
named protocol (docs/reference.md section 3).

Tiled inference cuts the LR image into ``tile`` x ``tile`` cores, runs each with ``tile_overlap``
extra LR pixels of context on every side and keeps only the core of each output. With an overlap
of at least the network's receptive-field radius (the default) the result equals whole-image
inference up to float rounding.

>>> import numpy as np, torch
>>> from srnas.arch import ArchConfig, build_model
>>> net = build_model(ArchConfig(n_resblocks=1, n_feats=4, global_skip="bicubic")).eval()
>>> upscale_image(net, np.zeros((8, 8, 3), np.uint8), scale=2).shape
(16, 16, 3)
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from srnas import metrics
from srnas.data import imresize
from srnas.errors import ConfigError, DataError
from srnas.train.device import resolve_device

if TYPE_CHECKING:
    from srnas.data import SRImageSet

#: Overlap used for models without an `ArchConfig` (foreign modules).
DEFAULT_TILE_OVERLAP = 32


@dataclasses.dataclass(frozen=True)
class ImageScore:
    """Scores of one image."""

    name: str
    psnr: float
    ssim: float | None


@dataclasses.dataclass
class EvalResult:
    """Per-image rows and means of one model (or bicubic) on one set at one scale.

    ``protocol`` names how the numbers were computed ("benchmark": Y channel, crop = scale;
    "div2k": RGB, crop = scale + 6); ``self_ensemble`` marks "+" results, never to be mixed
    with plain ones.
    """

    dataset: str
    scale: int
    protocol: str
    self_ensemble: bool
    rows: list[ImageScore]
    psnr: float
    ssim: float | None
    seconds: float
    method: str = "model"

    @property
    def n_images(self) -> int:
        return len(self.rows)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict with the rows as a list of dicts."""
        d = dataclasses.asdict(self)
        d["n_images"] = self.n_images
        return d


# ---- receptive field and tiling -----------------------------------------------------------------


def receptive_radius(model: nn.Module, scale: int) -> int:
    """LR pixels of context on each side that an output pixel depends on (rounded up, plus 1).

    Derived from the model's `ArchConfig` (``model.config``); `DEFAULT_TILE_OVERLAP` for other
    modules.
    """
    cfg = getattr(model, "config", None)
    if cfg is None or not hasattr(cfg, "kernel_sizes"):
        return DEFAULT_TILE_OVERLAP
    radius = 1.0  # head conv
    if cfg.family == "mdsr" and cfg.head_blocks:
        radius += cfg.head_blocks * 2 * (cfg.head_kernel // 2)
    radius += sum(2 * (k // 2) for k in cfg.kernel_sizes) + 1  # blocks, body conv
    stages = [2] * int(math.log2(scale)) if scale & (scale - 1) == 0 else [scale]
    factor = 1
    for s in stages:  # one 3x3 conv before each pixel shuffle, at the current resolution
        radius += 1 / factor
        factor *= s
    radius += 1 / factor  # tail conv at HR
    if cfg.global_skip == "bicubic":
        radius = max(radius, 2.0)
    return int(math.ceil(radius)) + 1


def _dihedral(x: torch.Tensor, t: int) -> torch.Tensor:
    """Transform ``t`` in 0..7 of the last two dims: transpose (bit 2), then flips (bits 0, 1)."""
    if t & 4:
        x = x.transpose(-1, -2)
    dims = [d for bit, d in ((1, -1), (2, -2)) if t & bit]
    return torch.flip(x, dims) if dims else x


def _dihedral_inverse(y: torch.Tensor, t: int) -> torch.Tensor:
    dims = [d for bit, d in ((1, -1), (2, -2)) if t & bit]
    if dims:
        y = torch.flip(y, dims)
    return y.transpose(-1, -2) if t & 4 else y


def _tiled(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, scale: int,
           tile: int, overlap: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    if h <= tile and w <= tile:
        return forward(x)
    out: torch.Tensor | None = None
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            ya, xa = max(y0 - overlap, 0), max(x0 - overlap, 0)
            yb, xb = min(y1 + overlap, h), min(x1 + overlap, w)
            sr = forward(x[..., ya:yb, xa:xb])
            if out is None:
                out = sr.new_empty(*x.shape[:-2], h * scale, w * scale)
            out[..., y0 * scale:y1 * scale, x0 * scale:x1 * scale] = \
                sr[..., (y0 - ya) * scale:(y1 - ya) * scale, (x0 - xa) * scale:(x1 - xa) * scale]
    assert out is not None
    return out


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


@torch.no_grad()
def super_resolve(model: nn.Module, lr: torch.Tensor, *, scale: int, tile: int | None = None,
                  tile_overlap: int | None = None, self_ensemble: bool = False,
                  bf16: bool = False) -> torch.Tensor:
    """Float SR output (not quantised) of an N x C x h x w LR batch in 0..255 on the model's device.

    ``scale`` is passed to the model (MDSR picks its branch). ``tile`` is the LR core tile size
    (None: whole image); ``tile_overlap`` defaults to `receptive_radius`. ``self_ensemble``
    averages the 8 dihedral transforms, inverse-transformed. ``bf16`` uses bf16 autocast on CUDA
    (the output is returned as float32).
    """
    if tile is not None and tile < 1:
        raise ConfigError(f"tile must be a positive number of LR pixels, got {tile}")
    device = _model_device(model)
    if bf16 and device.type != "cuda":
        raise ConfigError(f"bf16 inference needs a CUDA device, the model is on {device.type}")
    overlap = receptive_radius(model, scale) if tile_overlap is None else int(tile_overlap)
    if overlap < 0:
        raise ConfigError(f"tile_overlap must be >= 0, got {tile_overlap}")
    x = lr.to(device=device, dtype=torch.float32)

    def forward(inp: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            return model(inp.contiguous(), scale=scale).float()

    def run(inp: torch.Tensor) -> torch.Tensor:
        return forward(inp) if tile is None else _tiled(forward, inp, scale, tile, overlap)

    if not self_ensemble:
        return run(x)
    acc: torch.Tensor | None = None
    for t in range(8):
        y = _dihedral_inverse(run(_dihedral(x, t)), t)
        acc = y if acc is None else acc + y
    assert acc is not None
    return acc / 8


def to_uint8_image(sr: torch.Tensor) -> np.ndarray:
    """C x H x W (or 1 x C x H x W) float 0..255 -> H x W x C uint8, quantised by
    `srnas.metrics.quantize` (clip, MATLAB's round: the paper's rule)."""
    if sr.dim() == 4:
        if sr.shape[0] != 1:
            raise ValueError("to_uint8_image expects one image")
        sr = sr[0]
    return metrics.quantize(sr).to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3:
        raise DataError(f"expected an H x W x C image, got shape {img.shape}")
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().unsqueeze(0)


def upscale_image(model: nn.Module, lr_uint8: np.ndarray, *, scale: int | None = None,
                  tile: int | None = None, tile_overlap: int | None = None,
                  self_ensemble: bool = False, bf16: bool = False) -> np.ndarray:
    """Super-resolve one H x W x C uint8 image -> (H*scale) x (W*scale) x C uint8.

    ``scale`` defaults to the model's only scale (required for multi-scale MDSR models).
    """
    scale = _resolve_scale(model, scale)
    model_was_training = model.training
    model.eval()
    try:
        sr = super_resolve(model, _to_tensor(lr_uint8), scale=scale, tile=tile,
                           tile_overlap=tile_overlap, self_ensemble=self_ensemble, bf16=bf16)
    finally:
        model.train(model_was_training)
    return to_uint8_image(sr)


def _resolve_scale(model: nn.Module, scale: int | None) -> int:
    scales: Sequence[int] | None = getattr(model, "scales", None)
    if scale is None:
        if not scales or len(scales) != 1:
            raise ConfigError(f"this model serves scales {list(scales or [])}: give the scale")
        return int(scales[0])
    if scales and scale not in scales:
        raise ConfigError(f"scale {scale} not served by this model (scales {list(scales)})")
    return int(scale)


# ---- scoring a set ------------------------------------------------------------------------------


def lr_images(dataset: "SRImageSet", scale: int) -> list[np.ndarray]:
    """The set's LR images at ``scale``; a clear error when the set has none at that scale."""
    images = dataset.lr.get(scale)
    if images is None:
        have = ", ".join(f"x{s}" for s in sorted(dataset.lr)) or "none"
        raise DataError(f"data set {dataset.name!r} has no LR images at x{scale} (it has {have}); "
                        "load it for this scale")
    if len(images) != len(dataset.hr):
        raise DataError(f"data set {dataset.name!r}: {len(images)} LR images at x{scale} for {len(dataset.hr)} HR images")
    return images


def _matching_hr(hr: np.ndarray, lr: np.ndarray, scale: int, name: str, dataset: str) -> np.ndarray:
    h, w = lr.shape[0] * scale, lr.shape[1] * scale
    if hr.shape[0] < h or hr.shape[1] < w:
        raise DataError(f"{dataset}/{name}: HR {hr.shape[1]}x{hr.shape[0]} is smaller than LR x{scale} "
                        f"({w}x{h}); the LR image does not belong to this HR image")
    return hr[:h, :w]


def _score(sr: np.ndarray, hr: np.ndarray, scale: int, protocol: str, with_ssim: bool) -> tuple[float, float | None]:
    if with_ssim:
        scores = metrics.evaluate_pair(sr, hr, scale, protocol)
        return float(scores["psnr"]), float(scores["ssim"])
    return float(metrics.psnr(sr, hr, scale=scale, protocol=protocol)), None


def _finish(dataset: "SRImageSet", scale: int, protocol: str, self_ensemble: bool, rows: list[ImageScore],
            started: float, method: str) -> EvalResult:
    ssims = [r.ssim for r in rows if r.ssim is not None]
    return EvalResult(
        dataset=dataset.name, scale=scale, protocol=protocol, self_ensemble=self_ensemble, rows=rows,
        psnr=float(np.mean([r.psnr for r in rows])),
        ssim=float(np.mean(ssims)) if len(ssims) == len(rows) else None,
        seconds=time.perf_counter() - started, method=method,
    )


def _select(dataset: "SRImageSet", max_images: int | None) -> range:
    n = len(dataset.hr) if max_images is None else min(max_images, len(dataset.hr))
    if n == 0:
        raise DataError(f"data set {dataset.name!r} has no images to evaluate")
    return range(n)


def evaluate_model(model: nn.Module, dataset: "SRImageSet", *, scale: int, protocol: str | None = None,
                   self_ensemble: bool = False, tile: int | None = None, tile_overlap: int | None = None,
                   device: str | torch.device | None = None, bf16: bool = False,
                   max_images: int | None = None, with_ssim: bool = True,
                   progress: Callable[[int, int], None] | None = None) -> EvalResult:
    """Super-resolve every LR image of ``dataset`` at ``scale`` and score it against its HR image.

    ``protocol`` defaults to the set's own (``dataset.protocol``). ``device`` moves the model
    there first (None: where it is). The model is put in eval mode and restored afterwards.
    ``progress(done, total)`` is called after each image.
    """
    protocol = protocol or dataset.protocol
    if device is not None:
        model.to(resolve_device(device))
    lrs = lr_images(dataset, scale)
    indices = _select(dataset, max_images)
    was_training = model.training
    model.eval()
    started = time.perf_counter()
    rows: list[ImageScore] = []
    try:
        for i in indices:
            name = dataset.names[i]
            hr = _matching_hr(dataset.hr[i], lrs[i], scale, name, dataset.name)
            sr = to_uint8_image(super_resolve(model, _to_tensor(lrs[i]), scale=scale, tile=tile,
                                        tile_overlap=tile_overlap, self_ensemble=self_ensemble, bf16=bf16))
            psnr, ssim = _score(sr, hr, scale, protocol, with_ssim)
            rows.append(ImageScore(name=name, psnr=psnr, ssim=ssim))
            if progress is not None:
                progress(len(rows), len(indices))
    finally:
        model.train(was_training)
    return _finish(dataset, scale, protocol, self_ensemble, rows, started, "model")


def psnr_per_image(model: nn.Module, val_sets: "Mapping[int, SRImageSet]", *,
                   indices: Sequence[int] | None = None) -> tuple[dict[str, float], dict[str, float]]:
    """PSNR of ``model`` on each image of the validation sets (``scale -> set``, the sets holding
    the same images; an MDSR model's score is the mean over its scales), by image name, and the
    process CPU seconds each image took. ``indices``: which images (default: all)."""
    first = next(iter(val_sets.values()))
    scores: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for i in (range(len(first.names)) if indices is None else indices):
        t = time.process_time()
        values = [evaluate_model(model, val.subset([i]), scale=s, with_ssim=False).psnr for s, val in val_sets.items()]
        seconds[first.names[i]] = round(time.process_time() - t, 4)
        scores[first.names[i]] = float(sum(values) / len(values))
    return scores, seconds


def evaluate_bicubic(dataset: "SRImageSet", *, scale: int, protocol: str | None = None,
                     max_images: int | None = None, with_ssim: bool = True) -> EvalResult:
    """The bicubic baseline (MATLAB ``imresize``) on the same images, with the same protocol."""
    protocol = protocol or dataset.protocol
    lrs = lr_images(dataset, scale)
    started = time.perf_counter()
    rows = []
    for i in _select(dataset, max_images):
        name = dataset.names[i]
        hr = _matching_hr(dataset.hr[i], lrs[i], scale, name, dataset.name)
        up = imresize(lrs[i], scale)
        psnr, ssim = _score(up, hr, scale, protocol, with_ssim)
        rows.append(ImageScore(name=name, psnr=psnr, ssim=ssim))
    return _finish(dataset, scale, protocol, False, rows, started, "bicubic")


# ---- repeated proxy scoring on the device ---------------------------------------------------------

#: Validation sets held on a device, by (set, scale, images, protocol, device); a search worker
#: scores many networks on the same images and pays for the upload and the references once.
_SCORERS: dict[tuple[Any, ...], "DeviceScorer"] = {}
#: Bicubic baselines by (set, scale, images, protocol): the same for every network.
_BICUBIC: dict[tuple[Any, ...], tuple["SRImageSet", float]] = {}
_CACHE_SIZE = 8


def _remember(cache: dict[tuple[Any, ...], Any], key: tuple[Any, ...], value: Any) -> Any:
    if len(cache) >= _CACHE_SIZE:
        cache.pop(next(iter(cache)))
    cache[key] = value
    return value


def bicubic_psnr(dataset: "SRImageSet", *, scale: int, max_images: int | None = None,
                 protocol: str | None = None) -> float:
    """Mean bicubic PSNR of `evaluate_bicubic`, computed once per set, scale and image count."""
    protocol = protocol or dataset.protocol
    key = (id(dataset), scale, max_images, protocol)
    hit = _BICUBIC.get(key)
    if hit is not None and hit[0] is dataset:
        return hit[1]
    value = evaluate_bicubic(dataset, scale=scale, protocol=protocol, max_images=max_images, with_ssim=False).psnr
    _remember(_BICUBIC, key, (dataset, value))
    return value


class DeviceScorer:
    """PSNR of a model on one validation set at one scale, computed on the model's device.

    The LR images go to the device once and the HR references are prepared once (8-bit,
    BT.601 Y or RGB by protocol, border crop), so each scoring is one forward pass per image and
    a few reductions; the numbers are those of `srnas.metrics.psnr` (float64 arithmetic).
    Use `DeviceScorer.shared` to reuse one across trainings.
    """

    def __init__(self, dataset: "SRImageSet", *, scale: int, device: torch.device,
                 max_images: int | None = None, protocol: str | None = None) -> None:
        self.dataset, self.scale, self.device = dataset, int(scale), torch.device(device)
        self.protocol = metrics.check_protocol(protocol or dataset.protocol)
        self.crop = metrics.border_crop(self.scale, self.protocol)
        self.indices = _select(dataset, max_images)
        lrs = lr_images(dataset, scale)
        # float64 where the device has it (MPS does not): exact agreement with the CPU metrics.
        self.dtype = torch.float64 if self.device.type != "mps" else torch.float32
        self.lr: list[torch.Tensor] = []
        self.ref: list[torch.Tensor] = []
        self.names: list[str] = []
        for i in self.indices:
            name = dataset.names[i]
            hr = _matching_hr(dataset.hr[i], lrs[i], scale, name, dataset.name)
            self.lr.append(_to_tensor(lrs[i]).to(self.device))
            self.ref.append(self._prepare(torch.from_numpy(np.array(hr, copy=True)).permute(2, 0, 1).to(self.device)))
            self.names.append(name)

    @classmethod
    def shared(cls, dataset: "SRImageSet", *, scale: int, device: torch.device,
               max_images: int | None = None, protocol: str | None = None) -> "DeviceScorer":
        key = (id(dataset), int(scale), max_images, protocol or dataset.protocol, str(device))
        hit = _SCORERS.get(key)
        if hit is not None and hit.dataset is dataset:
            return hit
        return _remember(_SCORERS, key, cls(dataset, scale=scale, device=device, max_images=max_images,
                                            protocol=protocol))

    def _prepare(self, img: torch.Tensor) -> torch.Tensor:
        """C x H x W 0..255 -> the scored region (quantised; Y under "benchmark"), float64."""
        x = metrics.quantize(img.to(self.dtype))
        if self.protocol == "benchmark" and x.shape[0] == 3:
            x = metrics.rgb_to_y(x)[None]
        c = self.crop
        h, w = x.shape[-2:]
        if h <= 2 * c or w <= 2 * c:
            raise DataError(f"image of {h}x{w} is too small for a border crop of {c} px ({self.protocol} protocol, x{self.scale})")
        return x[..., c:h - c, c:w - c]

    @torch.no_grad()
    def score(self, model: nn.Module) -> EvalResult:
        """Mean PSNR over the images (the model runs in eval mode, restored afterwards)."""
        was_training = model.training
        model.eval()
        started = time.perf_counter()
        rows = []
        try:
            for name, lr, ref in zip(self.names, self.lr, self.ref, strict=True):
                sr = self._prepare(model(lr, scale=self.scale)[0].float())
                mse = torch.mean((sr - ref) ** 2)
                rows.append((name, mse))
        finally:
            model.train(was_training)
        values = torch.stack([m for _, m in rows]).tolist()  # one device sync for all images
        scores = [ImageScore(name=name, psnr=math.inf if v == 0 else 10.0 * math.log10(255.0 ** 2 / v), ssim=None)
                  for (name, _), v in zip(rows, values)]
        return _finish(self.dataset, self.scale, self.protocol, False, scores, started, "model")
