"""Named presets (timm style): tiny entry functions that only fix a variant's hyper-parameters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from srnas.arch.config import ArchConfig
from srnas.errors import ConfigError

MDSR_SCALES = (2, 3, 4)


def edsr_baseline(scale: int = 2, **overrides: Any) -> ArchConfig:
    """EDSR-baseline: B=16, F=64, res_scale 1.0 (1,369,859 parameters at x2)."""
    return ArchConfig.from_dict({"family": "edsr", "scales": [scale], "n_resblocks": 16,
                                 "n_feats": 64, "res_scale": 1.0, **overrides})


def edsr(scale: int = 2, **overrides: Any) -> ArchConfig:
    """EDSR: B=32, F=256, res_scale 0.1 (40,729,603 parameters at x2)."""
    return ArchConfig.from_dict({"family": "edsr", "scales": [scale], "n_resblocks": 32,
                                 "n_feats": 256, "res_scale": 0.1, **overrides})


def mdsr_baseline(scales: tuple[int, ...] = MDSR_SCALES, **overrides: Any) -> ArchConfig:
    """MDSR-baseline: B=16, F=64, two 5x5 blocks per scale head (3,227,203 parameters)."""
    return ArchConfig.from_dict({"family": "mdsr", "scales": list(scales), "n_resblocks": 16,
                                 "n_feats": 64, "head_blocks": 2, "head_kernel": 5, **overrides})


def mdsr(scales: tuple[int, ...] = MDSR_SCALES, **overrides: Any) -> ArchConfig:
    """MDSR: B=80, F=64 (7,953,987 parameters)."""
    return ArchConfig.from_dict({"family": "mdsr", "scales": list(scales), "n_resblocks": 80,
                                 "n_feats": 64, "head_blocks": 2, "head_kernel": 5, **overrides})


PRESETS: dict[str, Callable[..., ArchConfig]] = {
    "edsr-baseline": edsr_baseline,
    "edsr": edsr,
    "mdsr-baseline": mdsr_baseline,
    "mdsr": mdsr,
}


def preset_config(name: str, *, scale: int | None = None, **overrides: Any) -> ArchConfig:
    """Config of a named preset; ``scale`` picks the EDSR scale (MDSR presets serve 2, 3, 4)."""
    key = name.lower().replace("_", "-")
    if key not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(PRESETS)}")
    if key.startswith("mdsr"):
        if scale is not None and scale not in MDSR_SCALES:
            raise ConfigError(f"preset {name!r} serves scales {list(MDSR_SCALES)}, not {scale}")
        return PRESETS[key](**overrides)
    return PRESETS[key](scale if scale is not None else 2, **overrides)
