"""Errors that reach the user as one clear line (the CLI prints them without a traceback)."""

from __future__ import annotations


class SrnasError(Exception):
    """Base class: the message names the file, key or value at fault and what would be right."""


class ConfigError(SrnasError, ValueError):
    """An architecture config or a search-space file is invalid."""


class DataError(SrnasError):
    """A data set, image or folder is missing, corrupt or inconsistent."""


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
