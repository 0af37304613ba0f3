"""The decoded-image cache: uint8 ``.npy`` files, memory-mapped on reuse.

Entries live under `default_cache_dir` (``images/<2 hex>/<sha256>.npy``), keyed by the source
file's absolute path, size and modification time, so a changed file is decoded again. Stale
entries are never read; delete the folder to reclaim the space. Entries are written with
`srnas.fileio.atomic_write` (never half an entry; mode from the umask).
"""

from __future__ import annotations

import hashlib
import os
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from srnas.data.images import load_image
from srnas.errors import DataError
from srnas.fileio import atomic_write

__all__ = ["ImageCache", "default_cache_dir", "open_cache"]

PathLike = str | os.PathLike[str]


def default_cache_dir() -> Path:
    """``$SRNAS_CACHE_DIR`` if set, else ``~/.cache/srnas``."""
    env = os.environ.get("SRNAS_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "srnas"


def open_cache(cache_dir: PathLike | None, cache: bool) -> ImageCache:
    """The cache the loaders' ``cache_dir=``/``cache=`` arguments ask for (``cache=False``: none)."""
    if not cache:
        return ImageCache(None)
    return ImageCache(cache_dir if cache_dir is not None else default_cache_dir())


class ImageCache:
    """Decoded images as uint8 ``.npy`` files, memory-mapped on reuse.

    An entry's key is the source file's absolute path, byte size and modification time (ns)
    plus a tag for derived images (e.g. a generated LR image), so editing or replacing a file
    makes its old entry unreachable. ``root=None`` disables caching (every call decodes).
    A cache that cannot be written is reported once as a warning and then bypassed.
    """

    def __init__(self, root: PathLike | None) -> None:
        self.root = Path(root).expanduser() if root is not None else None
        self._warned = False
        self._lock = threading.Lock()  # loaders decode in threads

    def _entry(self, source: Path, tag: str) -> Path | None:
        if self.root is None:
            return None
        st = source.stat()
        key = f"{source.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0{tag}"
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
        return self.root / "images" / digest[:2] / f"{digest}.npy"

    def image(self, path: PathLike) -> np.ndarray:
        """The decoded image at ``path`` (see `load_image`), from the cache when valid."""
        p = Path(path)
        return self.derived(p, "decoded", lambda: load_image(p))

    def derived(self, source: PathLike, tag: str, make: Callable[[], np.ndarray]) -> np.ndarray:
        """``make()``, cached under (``source`` path, size, mtime, ``tag``).

        ``make`` must return a uint8 ``H x W x 3`` array determined by the source file and tag.
        """
        src = Path(source)
        if not src.is_file():
            raise DataError(f"{src}: no such image file")
        entry = self._entry(src, tag)
        if entry is not None and entry.is_file():
            try:
                cached = np.load(entry, mmap_mode="r", allow_pickle=False)
                if cached.dtype == np.uint8 and cached.ndim == 3 and cached.shape[2] == 3:
                    return cached
            except (OSError, ValueError, EOFError):
                pass  # a damaged entry is rebuilt below
        arr = np.ascontiguousarray(make(), dtype=np.uint8)
        if entry is not None:
            self._store(entry, arr)
        return arr

    def _store(self, entry: Path, arr: np.ndarray) -> None:
        try:
            atomic_write(entry, lambda handle: np.save(handle, arr, allow_pickle=False))
        except OSError as exc:
            with self._lock:
                if self._warned:
                    return
                self._warned = True
            warnings.warn(f"{self.root}: cannot write the image cache ({exc}); decoding without it",
                          RuntimeWarning, stacklevel=3)
