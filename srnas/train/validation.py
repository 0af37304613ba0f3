"""Validation of a training run: one validation set per scale, and a model's scores on them
beside bicubic's on the same images (`Trainer.validate`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from torch import nn

from srnas.errors import ConfigError
from srnas.train.device import DevicePolicy, exact_fp32
from srnas.train.evaluate import DeviceScorer, bicubic_psnr, evaluate_model

if TYPE_CHECKING:
    from srnas.data import SRImageSet


def val_sets_by_scale(val_data: "SRImageSet | Mapping[int, SRImageSet]",
                      scales: tuple[int, ...]) -> dict[int, "SRImageSet"]:
    """One validation set per scale: the same set for every scale, or a mapping scale -> set."""
    if isinstance(val_data, Mapping):
        missing = [s for s in scales if s not in val_data]
        if missing:
            raise ConfigError(f"validation sets given for scales {sorted(val_data)}; the model also needs x{missing[0]}")
        sets = {s: val_data[s] for s in scales}
    else:
        sets = {s: val_data for s in scales}
    protocols = {v.protocol for v in sets.values()}
    if len(protocols) != 1:
        raise ConfigError(f"validation sets mix protocols {sorted(protocols)}; use one protocol for all scales")
    return sets


def bicubic_per_scale(val_sets: "Mapping[int, SRImageSet]", max_images: int | None = None) -> dict[int, float]:
    """Bicubic PSNR per scale on the validation images used for scoring (computed once per
    set, scale and image count, for every run of this process)."""
    return {s: bicubic_psnr(val, scale=s, max_images=max_images) for s, val in val_sets.items()}


def score_val_sets(model: nn.Module, val_sets: "Mapping[int, SRImageSet]", *, policy: DevicePolicy,
                   max_images: int | None, with_ssim: bool) -> dict[str, Any]:
    """Score ``model`` on the first ``max_images`` images (None: all) of every scale's set, in
    plain fp32; PSNR and SSIM are the mean over scales, ``per_scale`` holds each.

    PSNR alone is computed on the device (`DeviceScorer`); with SSIM the images come back to the
    CPU metrics.
    """
    per_scale: dict[str, dict[str, Any]] = {}
    bicubic = bicubic_per_scale(val_sets, max_images)
    with exact_fp32(policy):
        for s, val in val_sets.items():
            if with_ssim:
                res = evaluate_model(model, val, scale=s, max_images=max_images, with_ssim=True)
            else:
                res = DeviceScorer.shared(val, scale=s, device=policy.device, max_images=max_images).score(model)
            per_scale[str(s)] = {"psnr": res.psnr, "ssim": res.ssim, "bicubic_psnr": bicubic[s]}
    psnrs = [v["psnr"] for v in per_scale.values()]
    ssims = [v["ssim"] for v in per_scale.values()]
    scales = list(val_sets)
    first = val_sets[scales[0]]
    return {
        "psnr": float(sum(psnrs) / len(psnrs)),
        "ssim": float(sum(ssims) / len(ssims)) if all(v is not None for v in ssims) else None,
        "protocol": first.protocol,
        "scale": scales[0] if len(scales) == 1 else scales,
        "scales": scales,
        "per_scale": per_scale,
        "bicubic_psnr": float(sum(bicubic.values()) / len(bicubic)),
        "val_set": first.name,
        "val_images": min(len(first.hr), max_images or len(first.hr)),
    }
