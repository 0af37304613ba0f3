"""The EDSR authors' released weights for the presets: fetched once, SHA-256 checked, cached.

The authors of EDSR/MDSR (Lim et al. 2017, EDSR-PyTorch) publish one ``.pt`` state dict per
preset and scale under `DEFAULT_WEIGHTS_URL`, named as torch.hub names files: the 8 hex digits
after the last ``-`` are the start of the file's SHA-256. `pretrained_weights` downloads a file
into ``<cache>/weights/`` (``$SRNAS_CACHE_DIR``, default ``~/.cache/srnas``), refuses and
removes a file whose SHA-256 does not start with the digits its name carries, and re-checks a
cached file before every use. `load_pretrained` loads it strictly (``torch.load`` with
``weights_only=True``) into the matching preset network; ``build_model(name, pretrained=True)``
does both.

The server is replaced with ``weights_url=`` (``--weights-url``) or ``$SRNAS_WEIGHTS_URL``: a
mirror, or a local server in tests, holding the same file names.

>>> released_file("edsr-baseline", 2)
'edsr_baseline_x2-1bc95232.pt'
>>> released_file("mdsr", 3)  # one MDSR file serves x2, x3 and x4
'mdsr-4a78bedf.pt'
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from srnas.arch.checkpoint import load_weights
from srnas.arch.presets import MDSR_SCALES, PRESETS
from srnas.errors import ConfigError, DownloadError
from srnas.fetch import Checksum, cache_dir, check_base_url, download, verify

if TYPE_CHECKING:
    from torch import nn

__all__ = ["DEFAULT_WEIGHTS_URL", "RELEASED_FILES", "WEIGHTS_URL_ENV", "load_pretrained", "pretrained_weights",
           "released_file", "weights_cache_dir"]

#: Where the EDSR authors serve their released weights.
DEFAULT_WEIGHTS_URL = "https://cv.snu.ac.kr/research/EDSR/models/"
#: Environment variable naming a mirror of `DEFAULT_WEIGHTS_URL` (same file names).
WEIGHTS_URL_ENV = "SRNAS_WEIGHTS_URL"

#: The released files (names as in EDSR-PyTorch src/model/edsr.py and mdsr.py) by preset and
#: scale; an MDSR file serves all of x2, x3, x4 (scale None).
RELEASED_FILES: dict[tuple[str, int | None], str] = {
    ("edsr-baseline", 2): "edsr_baseline_x2-1bc95232.pt",
    ("edsr-baseline", 3): "edsr_baseline_x3-abf2a44e.pt",
    ("edsr-baseline", 4): "edsr_baseline_x4-6b446fab.pt",
    ("edsr", 2): "edsr_x2-0edfb8a3.pt",
    ("edsr", 3): "edsr_x3-ea3ef2c6.pt",
    ("edsr", 4): "edsr_x4-4f62e9ef.pt",
    ("mdsr-baseline", None): "mdsr_baseline-a00cab12.pt",
    ("mdsr", None): "mdsr-4a78bedf.pt",
}


def released_file(preset: str, scale: int | None = None) -> str:
    """The released file name for ``preset`` at ``scale`` (EDSR default 2; MDSR any of 2, 3, 4).

    Raises:
        ConfigError: unknown preset, or no released file for that scale.
    """
    key = preset.lower().replace("_", "-")
    if key not in PRESETS or all(k != key for k, _ in RELEASED_FILES):
        what = "unknown preset" if key not in PRESETS else "srnas has no released weights for preset"
        raise ConfigError(f"{what} {preset!r}; presets with released weights: "
                          f"{', '.join(dict.fromkeys(k for k, _ in RELEASED_FILES))}")
    if key.startswith("mdsr"):
        if scale is not None and scale not in MDSR_SCALES:
            raise ConfigError(f"preset {preset!r}: the authors released weights for x2, x3, x4, not x{scale}")
        return RELEASED_FILES[(key, None)]
    s = 2 if scale is None else scale
    name = RELEASED_FILES.get((key, s))
    if name is None:
        released = ", ".join(f"x{sc}" for k, sc in RELEASED_FILES if k == key)
        raise ConfigError(f"preset {preset!r}: the authors released weights for {released}, not x{s}")
    return name


def weights_cache_dir() -> Path:
    """Where downloaded weights are kept: ``<srnas cache>/weights``."""
    return cache_dir() / "weights"


def pretrained_weights(preset: str, scale: int | None = None, *, weights_url: str | None = None,
                       progress: bool | None = None) -> Path:
    """The verified local copy of the released weights of ``preset`` at ``scale``.

    A cached copy whose SHA-256 still starts with the digits in its name is used as it is;
    otherwise the file is downloaded from ``weights_url`` (default ``$SRNAS_WEIGHTS_URL``,
    else `DEFAULT_WEIGHTS_URL`) and checked before it is placed in `weights_cache_dir`.
    ``progress`` shows a download bar (default: when stderr is a terminal).

    Raises:
        ConfigError: unknown preset, or no released file for that scale.
        DownloadError: host unreachable, HTTP error (404 ...), interrupted transfer, or a file
            whose SHA-256 does not match its name (removed, never cached).
    """
    name = released_file(preset, scale)
    checksum = Checksum.from_hub_name(name)
    folder = weights_cache_dir()
    dest = folder / name
    if dest.is_file():
        try:
            verify(dest, checksum, str(dest))
            return dest
        except DownloadError:
            pass  # a damaged cached copy was removed: fetch it again
    base = check_base_url(weights_url or os.environ.get(WEIGHTS_URL_ENV) or DEFAULT_WEIGHTS_URL, "--weights-url")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"{folder}: cannot create the weights cache folder ({exc.strerror or exc}); "
                            f"set SRNAS_CACHE_DIR to a writable folder") from None
    show = sys.stderr.isatty() if progress is None else progress
    return download(base + name, dest, checksum, progress=show,
                    hint=f"check the network, or pass --weights-url / set {WEIGHTS_URL_ENV} to a mirror")


def load_pretrained(model: nn.Module, preset: str, scale: int | None = None, *, weights_url: str | None = None,
                    progress: bool | None = None) -> nn.Module:
    """Load the released weights of ``preset`` (see `pretrained_weights`) strictly into ``model``."""
    load_weights(model, pretrained_weights(preset, scale, weights_url=weights_url, progress=progress), strict=True)
    return model
