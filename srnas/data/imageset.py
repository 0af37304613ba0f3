"""`SRImageSet`: decoded HR images and their LR counterparts per scale, the type every data source
(`srnas.data.sources`, `srnas.data.demo`) produces and training and evaluation consume."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from srnas.errors import DataError

__all__ = ["PROTOCOLS", "SRImageSet", "check_scales"]

#: How numbers on a set are computed (= `srnas.metrics.PROTOCOLS`; data does not import metrics).
PROTOCOLS = ("benchmark", "div2k")


def check_scales(scales: Sequence[int] | int) -> tuple[int, ...]:
    """``scales`` (one int or several) as a sorted tuple of distinct positive ints.

    Raises:
        ValueError: no scale, or a scale that is not a positive integer.
    """
    values = (scales,) if isinstance(scales, int) else tuple(scales)
    if not values:
        raise ValueError("scales must not be empty")
    for s in values:
        if not isinstance(s, (int, np.integer)) or isinstance(s, bool) or s < 1:
            raise ValueError(f"invalid scale {s!r}: scales are positive integers (2, 3, 4, ...)")
    return tuple(sorted({int(s) for s in values}))


@dataclass
class SRImageSet:
    """Decoded HR images and their LR counterparts per scale.

    Attributes:
        name: display name (``"Set5"``, ``"DIV2K"``, ``"demo-train"``, a folder name, ...).
        names: image names (file stems), in order.
        hr: uint8 ``H x W x 3`` arrays, cropped to a multiple of every scale in ``lr``. They may
            be read-only memory maps of the cache: copy before writing.
        lr: ``{scale: [uint8 (H/scale) x (W/scale) x 3 arrays]}``, aligned with ``hr``.
        protocol: how numbers on this set are computed: ``"benchmark"`` or ``"div2k"``.
    """

    name: str
    names: list[str]
    hr: list[np.ndarray]
    lr: dict[int, list[np.ndarray]] = field(default_factory=dict)
    protocol: str = "benchmark"

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"data set {self.name!r}: unknown protocol {self.protocol!r}; use one of {', '.join(PROTOCOLS)}")
        if len(self.names) != len(self.hr):
            raise ValueError(f"data set {self.name!r}: {len(self.names)} names for {len(self.hr)} HR images")
        for s, images in self.lr.items():
            if len(images) != len(self.hr):
                raise ValueError(f"data set {self.name!r}: {len(images)} LR x{s} images for {len(self.hr)} HR images")
            for n, hr, lr in zip(self.names, self.hr, images, strict=True):
                want = (hr.shape[0] // s, hr.shape[1] // s)
                if hr.shape[0] % s or hr.shape[1] % s or lr.shape[:2] != want:
                    raise ValueError(f"data set {self.name!r}, image {n!r}: HR {hr.shape[:2]} and LR x{s} {lr.shape[:2]} are not aligned")

    def __len__(self) -> int:
        return len(self.names)

    @property
    def scales(self) -> tuple[int, ...]:
        """The scales with LR images, ascending."""
        return tuple(sorted(self.lr))

    def subset(self, indices: Sequence[int], *, name: str | None = None) -> SRImageSet:
        """A new set with the images at ``indices`` (arrays shared, not copied)."""
        idx = list(indices)
        return SRImageSet(
            name=name or self.name,
            names=[self.names[i] for i in idx],
            hr=[self.hr[i] for i in idx],
            lr={s: [imgs[i] for i in idx] for s, imgs in self.lr.items()},
            protocol=self.protocol,
        )

    def head(self, max_images: int | None) -> SRImageSet:
        """The first ``max_images`` images (all when None), same name."""
        return self if max_images is None else self.subset(range(min(len(self), max_images)))

    def pairs(self, scale: int) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """Yield ``(name, lr, hr)`` for ``scale``."""
        if scale not in self.lr:
            raise DataError(f"data set {self.name!r} has no x{scale} images (scales {list(self.scales)})")
        yield from zip(self.names, self.lr[scale], self.hr, strict=True)
