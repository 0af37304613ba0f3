"""What long commands say, and where: -q/-v levels, plain lines when the output is not a
terminal, and log files (a study's ``search.log``, a retrain run's ``retrain.log``). Below every
layer.

Library code reports through `logging` under the ``srnas`` logger (`get_logger`). Nothing is
printed until `configure` installs the stderr handler (the CLI does, with the -q/-v level), so
the library stays quiet when used from Python. Lines reach stderr plain (no time stamps, no
level names); `log_file` adds a file with time stamps for the duration of a ``with`` block.

Routing: a record logged with ``extra=VERBOSE_ONLY`` repeats what the terminal already shows
another way (a live progress bar): stderr gets it only with -v, log files always. One logged
with ``extra=FILE_ONLY`` goes to log files only (a header the terminal printed with rich).

`ProgressClock` paces plain progress lines: at most one every ``every`` seconds (default 60,
or ``SRNAS_PROGRESS_INTERVAL``), with percent, elapsed time and ETA::

    log = get_logger("train")
    clock = ProgressClock(total=300_000)
    ...
    if clock.due():
        log.info(f"update {clock.status(update)}")
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from srnas.errors import ConfigError, WriteError
from srnas.units import human_duration

__all__ = [
    "FILE_ONLY", "NORMAL", "QUIET", "VERBOSE", "VERBOSE_ONLY", "ProgressClock", "configure", "get_logger",
    "is_terminal", "log_file", "progress_interval", "verbosity",
]

#: -q: warnings and errors only; default: progress and results; -v: also details.
QUIET, NORMAL, VERBOSE = -1, 0, 1
#: ``extra=`` of a record that stderr shows only with -v (log files always).
VERBOSE_ONLY: dict[str, Any] = {"srnas_to": "verbose"}
#: ``extra=`` of a record for log files only.
FILE_ONLY: dict[str, Any] = {"srnas_to": "file"}

ROOT_LOGGER = "srnas"
DEFAULT_PROGRESS_INTERVAL = 60.0
_LEVELS = {QUIET: logging.WARNING, NORMAL: logging.INFO, VERBOSE: logging.DEBUG}
_verbosity = NORMAL


def get_logger(name: str = "") -> logging.Logger:
    """The ``srnas`` logger, or its child ``srnas.<name>``."""
    return logging.getLogger(f"{ROOT_LOGGER}.{name}" if name else ROOT_LOGGER)


def verbosity() -> int:
    """The level `configure` set: `QUIET`, `NORMAL` or `VERBOSE`."""
    return _verbosity


class _StderrHandler(logging.Handler):
    """Plain lines on the current ``sys.stderr`` (looked up per line: rich's live display and
    pytest replace it)."""

    def emit(self, record: logging.LogRecord) -> None:
        route = getattr(record, "srnas_to", "all")
        if route == "file" or (route == "verbose" and _verbosity < VERBOSE):
            return
        try:
            stream = sys.stderr
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


def configure(level: int = NORMAL) -> None:
    """Send ``srnas`` messages to stderr at ``level`` (`QUIET`, `NORMAL`, `VERBOSE`); calling it
    again replaces the earlier setting."""
    global _verbosity
    _verbosity = max(QUIET, min(VERBOSE, int(level)))
    logger = get_logger()
    for handler in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(handler)
    handler = _StderrHandler(level=_LEVELS[_verbosity])
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)


def ensure_configured() -> None:
    """`configure` at the default level unless the command line (or the caller) did already:
    the Python API (`srnas.search`, `srnas.retrain`) prints the same lines as the commands."""
    if not any(isinstance(h, _StderrHandler) for h in get_logger().handlers):
        configure(_verbosity)


def is_terminal(stream: Any = None) -> bool:
    """Whether ``stream`` (default stderr) is an interactive terminal (live bars) rather than a
    file, a pipe or a batch scheduler's log (plain lines)."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class _LogFileHandler(logging.FileHandler):
    """A log file that stops, with one note on stderr, when it cannot be written (a full disk):
    the command goes on, and a failing command ends with its own one-line error (no
    ``--- Logging error ---`` traceback)."""

    failed = False

    def handleError(self, record: logging.LogRecord) -> None:
        if not self.failed:
            self.failed = True
            exc = sys.exc_info()[1]
            reason = getattr(exc, "strerror", None) or exc
            sys.stderr.write(f"srnas: note: {self.baseFilename}: cannot write the log file ({reason}); "
                             "going on without it\n")

    def emit(self, record: logging.LogRecord) -> None:
        if not self.failed:
            super().emit(record)

    def close(self) -> None:
        try:
            super().close()
        except OSError:  # the last flush of a full disk; the stream is closed already
            pass


@contextmanager
def log_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Append every ``srnas`` message of the block to ``path`` (time-stamped; created with the
    user's umask, folders too). `WriteError` when it cannot be opened."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handler = _LogFileHandler(target, mode="a", encoding="utf-8")
    except OSError as exc:
        raise WriteError(f"{target}: cannot write the log file ({exc.strerror or exc})") from None
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    handler.setLevel(logging.DEBUG if _verbosity >= VERBOSE else logging.INFO)
    logger = get_logger()
    old_level = logger.level
    # Unconfigured (library use) the logger inherits WARNING: the file still wants INFO.
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield target
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        handler.close()


def progress_interval() -> float:
    """Seconds between plain progress lines: ``SRNAS_PROGRESS_INTERVAL`` or 60."""
    raw = os.environ.get("SRNAS_PROGRESS_INTERVAL")
    if raw is None or not raw.strip():
        return DEFAULT_PROGRESS_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"SRNAS_PROGRESS_INTERVAL={raw!r}: expected a positive number of seconds, e.g. 60")
    return value


class ProgressClock:
    """Paces plain progress lines of work measured as ``done`` of ``total`` and estimates the
    time left from the rate since it was made (``start`` = what was done before, e.g. on resume)."""

    def __init__(self, total: int | None, *, start: int = 0, every: float | None = None,
                 first: float | None = None) -> None:
        """``first``: seconds before the first line is due (default ``every``): a long command
        shows early that it works."""
        self.total = total
        self.start = start
        self.every = progress_interval() if every is None else every
        self.t0 = time.monotonic()
        self._last = self.t0 - max(0.0, self.every - (self.every if first is None else min(first, self.every)))

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def due(self) -> bool:
        """True (and restarts the interval) when ``every`` seconds passed since the last line."""
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            return True
        return False

    def mark(self) -> None:
        """A line was printed for another reason: restart the interval."""
        self._last = time.monotonic()

    def eta(self, done: float) -> float | None:
        """Seconds left at the rate so far (None before any progress or without a total)."""
        if self.total is None or done <= self.start:
            return None
        if done >= self.total:
            return 0.0
        return self.elapsed() / (done - self.start) * (self.total - done)

    def status(self, done: float) -> str:
        """``12/300 (4%), elapsed 1m05s, ETA 20m31s`` (no total: ``12, elapsed 1m05s``)."""
        if self.total:
            head = f"{done:,.0f}/{self.total:,} ({100 * done / self.total:.0f}%)"
            return f"{head}, elapsed {human_duration(self.elapsed())}, ETA {human_duration(self.eta(done))}"
        return f"{done:,.0f}, elapsed {human_duration(self.elapsed())}"
