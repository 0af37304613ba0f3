"""The NTIRE efficient-SR challenge's efficiency score, as a pure function of measured costs
(docs/reference.md section 1b). Lower is better; the baseline itself scores e^2 ~ 7.389.

Each metric m (runtime, FLOPs, parameters) scores ``exp(2 * m / m_baseline)`` against the
year's baseline, and the score is their weighted sum (runtime, FLOPs, parameters):
0.7 / 0.15 / 0.15 in 2024 and 2025, 0.8 / 0.1 / 0.1 in 2026. FLOPs are counted as the
challenge does: Mult-Adds of the inference form (re-parameterisable convs fused) on a 256x256
LR input (`challenge_flops`).

>>> round(ntire_score(runtime=1.0, flops=1.0, params=1.0, baseline=(1.0, 1.0, 1.0), year=2026), 3)
7.389

A search scores it with ``--objectives psnr,ntire`` against a baseline preset
(`baseline_config`; default ``span:28``, the 2026 baseline: SPAN with 28 channels), at the
search's scale, with a PSNR floor relative to the baseline's own proxy PSNR (`srnas.search.ntire`).
"""

from __future__ import annotations

import math

from srnas.arch.config import ArchConfig
from srnas.arch.cost import count_mult_adds
from srnas.arch.presets import PRESETS, preset_config
from srnas.errors import ConfigError

#: Weights of (runtime, FLOPs, parameters) per challenge year.
NTIRE_WEIGHTS: dict[int, tuple[float, float, float]] = {
    2024: (0.7, 0.15, 0.15),
    2025: (0.7, 0.15, 0.15),
    2026: (0.8, 0.1, 0.1),
}
#: The LR input side on which the challenge counts FLOPs.
CHALLENGE_LR_SIDE = 256
#: The baseline ``--objectives psnr,ntire`` scores against by default: SPAN with 28 channels,
#: the NTIRE 2026 baseline (docs/reference.md section 1b).
DEFAULT_BASELINE = "span:28"


def baseline_config(spec: str, scale: int) -> ArchConfig:
    """The baseline net of an NTIRE score: ``PRESET`` or ``PRESET:WIDTH`` (``span:28``) at ``scale``.

    >>> baseline_config("span:28", 4).n_feats
    28
    """
    name, _, width = str(spec).strip().partition(":")
    if name.lower().replace("_", "-") not in PRESETS or name.lower().startswith("mdsr"):
        raise ConfigError(f"--ntire-baseline {spec!r}: unknown single-scale preset {name!r}; allowed: "
                          f"{' | '.join(p for p in PRESETS if not p.startswith('mdsr'))}, each optionally :WIDTH "
                          f"(e.g. {DEFAULT_BASELINE})")
    overrides = {}
    if width:
        if not width.isdigit() or int(width) < 1:
            raise ConfigError(f"--ntire-baseline {spec!r}: the width after ':' must be a positive integer, "
                              f"not {width!r}")
        overrides["n_feats"] = int(width)
    return preset_config(name, scale=scale, **overrides)


def challenge_flops(cfg: ArchConfig) -> int:
    """Mult-Adds of the fused net on a 256x256 LR input at the config's (first) scale."""
    side = CHALLENGE_LR_SIDE * cfg.scale
    return count_mult_adds(cfg, hr_size=(side, side), fused=True)


def ntire_score(*, runtime: float, flops: float, params: float, baseline: tuple[float, float, float],
                year: int = 2026) -> float:
    """Weighted sum of ``exp(2 * m / m_baseline)`` over (runtime, FLOPs, parameters);
    ``baseline`` gives the baseline's three numbers in the same units."""
    if year not in NTIRE_WEIGHTS:
        raise ConfigError(f"unknown NTIRE year {year!r}; allowed: {' | '.join(map(str, NTIRE_WEIGHTS))}")
    values = (runtime, flops, params)
    for name, v, b in zip(("runtime", "flops", "params"), values, baseline):
        if not (math.isfinite(v) and v >= 0):
            raise ConfigError(f"ntire_score: {name} must be a finite number >= 0, not {v!r}")
        if not (math.isfinite(b) and b > 0):
            raise ConfigError(f"ntire_score: the baseline's {name} must be a positive number, not {b!r}")
    return sum(w * math.exp(2 * v / b) for w, v, b in zip(NTIRE_WEIGHTS[year], values, baseline))
