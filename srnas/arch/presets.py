"""Named presets (timm style): tiny entry functions that only fix a variant's hyper-parameters.

EDSR and MDSR (Lim et al. 2017), and published efficient nets built from the registry's blocks
in the ``efficient`` family: IMDN, RFDN, RLFN, RLFN-S and SPAN. Their parameter counts equal
the authors' code at x2, x3 and x4 (docs/reference.md names each source file and commit; SPAN's
is its inference count, re-parameterisable convs fused). Activations follow the block types'
table: the authors' LeakyReLU slope is 0.05, srnas's ``lrelu`` 0.2 (no parameter changes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from srnas.arch.config import ArchConfig
from srnas.errors import ConfigError
from srnas.registry import Registry

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


def _efficient(scale: int, trunk: str, block: str, n_blocks: int, n_feats: int, act: str,
               overrides: dict[str, Any]) -> ArchConfig:
    return ArchConfig.from_dict({"family": "efficient", "scales": [scale], "trunk": trunk, "block": block,
                                 "n_resblocks": n_blocks, "n_feats": n_feats, "act": act, **overrides})


def imdn(scale: int = 2, **overrides: Any) -> ArchConfig:
    """IMDN (Hui et al. 2019): 6 IMDBs of 64 channels, concatenated (694,404 parameters at x2)."""
    return _efficient(scale, "imdn", "imdb", 6, 64, "lrelu", overrides)


def rfdn(scale: int = 4, **overrides: Any) -> ArchConfig:
    """RFDN as the authors' public code (the AIM 2020 model): 4 RFDBs of 50 channels,
    concatenated (433,448 parameters at x4; that code builds x4 only)."""
    return _efficient(scale, "imdn", "rfdb", 4, 50, "lrelu", overrides)


def rlfn(scale: int = 4, **overrides: Any) -> ArchConfig:
    """RLFN (Kong et al. 2022): 6 RLFBs of 52 channels (543,740 parameters at x4)."""
    return _efficient(scale, "rlfn", "rlfb", 6, 52, "lrelu", overrides)


def rlfn_s(scale: int = 4, **overrides: Any) -> ArchConfig:
    """RLFN-S: 6 RLFBs of 48 channels (470,208 parameters at x4)."""
    return _efficient(scale, "rlfn", "rlfb", 6, 48, "lrelu", overrides)


def span(scale: int = 4, **overrides: Any) -> ArchConfig:
    """SPAN (Wan et al. 2024): 6 SPABs of 48 channels, SPAN's trunk (426,288 parameters at x4
    fused; the training form has more, `count_params(cfg)` without ``fused``)."""
    return _efficient(scale, "span", "spab", 6, 48, "silu", overrides)


_BUILDERS: dict[str, Callable[..., ArchConfig]] = {
    "edsr-baseline": edsr_baseline,
    "edsr": edsr,
    "mdsr-baseline": mdsr_baseline,
    "mdsr": mdsr,
    "imdn": imdn,
    "rfdn": rfdn,
    "rlfn": rlfn,
    "rlfn-s": rlfn_s,
    "span": span,
}
PRESETS: Registry[Callable[..., ArchConfig]] = Registry("preset", _BUILDERS)


def preset_config(name: str, *, scale: int | None = None, **overrides: Any) -> ArchConfig:
    """Config of a named preset; ``scale`` picks the EDSR scale (MDSR presets serve 2, 3, 4)."""
    key = name.lower().replace("_", "-")
    if key not in PRESETS:
        raise PRESETS.unknown(name)
    if key.startswith("mdsr"):
        if scale is not None and scale not in MDSR_SCALES:
            raise ConfigError(f"preset {name!r} serves scales {list(MDSR_SCALES)}, not {scale}")
        return PRESETS[key](**overrides)
    return PRESETS[key](**overrides) if scale is None else PRESETS[key](scale, **overrides)
