"""Numbers as people read them: counts in K/M/G, bytes in MB/GB, durations in h/m/s. The one
formatter the CLI, the progress lines and the report share (below every layer).

>>> human_count(1369859), human_count(316_250_000_000), human_count(812)
('1.37M', '316.25G', '812')
>>> human_duration(3725), human_duration(42.4), human_bytes(31_505_881)
('1h02m', '42s', '31.5 MB')
"""

from __future__ import annotations

import math
import re

__all__ = ["finite_or_none", "human_bytes", "human_count", "human_duration", "printable"]


def _missing(value: object) -> bool:
    return value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or \
        (isinstance(value, float) and not math.isfinite(value))


def finite_or_none(value: object) -> float | None:
    """``value`` as a float, or None when it is not a finite number (None, NaN, inf, text)."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def human_count(n: float | None, digits: int = 2) -> str:
    """``n`` with a K (1e3), M (1e6) or G (1e9) suffix and ``digits`` decimals; ``-`` when missing."""
    if _missing(n):
        return "-"
    assert n is not None
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:,.{digits}f}{unit}"
    return f"{n:,.0f}" if float(n).is_integer() else f"{n:,.{digits}f}"


def human_bytes(n: float | None) -> str:
    """A byte count in kB, MB or GB (powers of 1000, as download sizes are quoted)."""
    if _missing(n):
        return "?"
    assert n is not None
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n:.0f} B"


def human_duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``1h02m``, ``2d03h``; ``-`` when unknown."""
    if _missing(seconds) or seconds is None or seconds < 0:
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


#: Control characters, C0 and C1 (an ANSI escape sequence starts with one).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: object) -> str:
    """``text`` safe to print on a terminal: control characters (ANSI escape sequences begin
    with one; a name from a shared database may hold them) shown as ``\\x1b``, not obeyed."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))
