"""Static PNGs of the report's figures, written with kaleido when kaleido and a Chromium are
installed; otherwise one line that says which is missing (the HTML report needs neither)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def _static_pngs(figures: dict[str, Any], folder: Path) -> tuple[list[Path], str]:
    """Write PNGs with kaleido when kaleido and a Chromium are present; else say why not."""
    if importlib.util.find_spec("kaleido") is None:
        return [], "Static PNGs not written: kaleido is not installed (pip install kaleido; it also needs a Chromium)."
    chromium = next((shutil.which(n) for n in CHROMIUM_NAMES if shutil.which(n)), None)
    if chromium is None:
        return [], ("Static PNGs not written: kaleido is installed but no Chromium was found "
                    "(Debian: apt-get install chromium). The HTML figures are unaffected.")
    written = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for div_id, fig in figures.items():
            path = folder / f"{div_id}.png"
            fig.write_image(str(path))
            written.append(path)
    except Exception as exc:  # kaleido/Chromium failures vary by platform
        return written, f"Static PNG export stopped: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return written, f"Static PNGs written to {folder} ({len(written)} files)."

