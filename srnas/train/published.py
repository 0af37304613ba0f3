"""Published results to print beside a user's numbers (docs/reference.md section 3).

PSNR in dB on the Y channel with ``scale`` pixels cropped ("benchmark" protocol), without
self-ensemble. Sources: EDSR (Lim et al. 2017), CARN, IMDN and FALSR papers as tabulated by the
NAS-for-SR literature.
"""

from __future__ import annotations

import dataclasses

BENCHMARK_SETS = ("Set5", "Set14", "B100", "Urban100")


@dataclasses.dataclass(frozen=True)
class PublishedResult:
    """One row of a paper's table: PSNR (and SSIM where it is on record) per benchmark set at
    one scale. ``ssim`` holds only values checked against the paper (docs/reference.md
    section 3): none are on record yet, and a missing one is shown as ``-``, never guessed."""

    model: str
    scale: int
    psnr: dict[str, float]
    params: str = "-"
    mult_adds: str = "-"
    protocol: str = "benchmark"
    ssim: dict[str, float] = dataclasses.field(default_factory=dict)


def _row(model: str, scale: int, psnrs: tuple[float, ...], params: str = "-", mult_adds: str = "-") -> PublishedResult:
    return PublishedResult(model=model, scale=scale, psnr=dict(zip(BENCHMARK_SETS, psnrs)),
                           params=params, mult_adds=mult_adds)


#: x2, benchmark protocol.
PUBLISHED_X2: tuple[PublishedResult, ...] = (
    _row("Bicubic", 2, (33.66, 30.24, 29.56, 26.88)),
    _row("EDSR-baseline", 2, (37.99, 33.57, 32.16, 31.98), "1,370K", "316.3G"),
    _row("EDSR", 2, (38.11, 33.92, 32.32, 32.93), "40.7M"),
    _row("CARN", 2, (37.76, 33.52, 32.09, 31.92), "1,592K", "222.8G"),
    _row("IMDN", 2, (38.00, 33.63, 32.19, 32.17), "694K", "158.8G"),
    _row("FALSR-A (NAS)", 2, (37.82, 33.55, 32.12, 31.93), "1,021K", "234.7G"),
    _row("FALSR-C (NAS)", 2, (37.66, 33.26, 31.96, 31.24), "408K", "93.7G"),
)

#: x4, benchmark protocol.
PUBLISHED_X4: tuple[PublishedResult, ...] = (
    _row("Bicubic", 4, (28.42, 26.00, 25.96, 23.14)),
    _row("EDSR", 4, (32.46, 28.80, 27.71, 26.64), "43.1M"),
)

#: DIV2K validation (0801-0900), "div2k" protocol (RGB, crop scale + 6), authors' PyTorch models.
PUBLISHED_DIV2K: dict[str, dict[int, float]] = {
    "EDSR-baseline": {2: 34.61, 3: 30.92, 4: 28.95},
    "EDSR": {2: 35.03, 3: 31.26, 4: 29.25},
    "MDSR": {2: 34.92, 3: 31.22, 4: 29.24},
}


def published_rows(scale: int) -> tuple[PublishedResult, ...]:
    """The published benchmark rows at ``scale`` (empty when none are on record)."""
    return {2: PUBLISHED_X2, 4: PUBLISHED_X4}.get(scale, ())
