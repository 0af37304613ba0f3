"""Errors that reach the user as one clear line (the CLI prints them without a traceback)."""

from __future__ import annotations


class SrnasError(Exception):
    """Base class: the message names the file, key or value at fault and what would be right."""


class ConfigError(SrnasError, ValueError):
    """An architecture config or a search-space file is invalid."""


class DataError(SrnasError):
    """A data set, image or folder is missing, corrupt or inconsistent."""


class DownloadError(DataError):
    """A download failed: host unreachable, HTTP error, interrupted transfer, size or checksum
    mismatch (a file that fails its check is removed, never left in place)."""


class TrainingError(SrnasError):
    """A training run cannot go on (non-finite loss, unusable checkpoint, ...)."""


class MissingExtraError(SrnasError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, package: str, extra: str, purpose: str = "") -> None:
        what = f" for {purpose}" if purpose else ""
        super().__init__(
            f"{package} is needed{what} but is not installed: pip install 'srnas[{extra}]'"
        )
        self.package = package
        self.extra = extra


class StudyError(SrnasError):
    """A study or its storage cannot be used."""


class WriteError(SrnasError, OSError):
    """A file cannot be written; the message names the target file (not a temporary one)."""


class StorageFullError(WriteError):
    """The disk or quota filled up while writing; the previous file, if any, is unchanged."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (a database driver's own one where SQLAlchemy
    wraps it as ``orig``), or its type's name when it has none."""
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
