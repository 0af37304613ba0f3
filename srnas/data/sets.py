"""Data sets as lists of decoded images: DIV2K, benchmark folders, plain folders, demo data.

What a ``spec`` (the ``--data`` value) may be, and what the loaders make of it:

=====================  ===============================  ===================================
spec                   `load_train_set`                 `load_eval_set`
=====================  ===============================  ===================================
``"demo"``             4 scikit-image photographs        coffee (see `srnas.data.demo`)
DIV2K root             0001-0800                        0801-0900, protocol "div2k"
benchmark root         refused (test sets)              the set ``name=`` (Set5, ...)
official set folder    refused (test set)               all its images
any other folder       all images but the held-out      the held-out images
=====================  ===============================  ===================================

- A DIV2K root holds ``DIV2K_train_HR/0001.png`` and/or ``DIV2K_valid_HR/0801.png`` (or has
  them under ``DIV2K/``), with optional ``DIV2K_{train,valid}_LR_bicubic/X{s}/{id}x{s}.png``.
  Images 0801-0900 are found in either HR folder.
- A benchmark root is the authors' ``benchmark.tar`` extracted: ``benchmark/<Set>/HR/*.png``
  and ``benchmark/<Set>/LR_bicubic/X{s}/<name>x{s}.png`` (the root may be the folder that
  contains ``benchmark/`` or ``benchmark/`` itself). Official sets: `BENCHMARK_SETS`.
- Any other folder is a folder of HR images (png, jpg, bmp, tif, webp; not recursive), or a
  folder in the set layout (``HR/`` plus optional ``LR_bicubic/X{s}/``).
- Held-out validation part of a folder used for training (deterministic, documented): images
  sorted by file name; every 10th one (indices 9, 19, 29, ...) is held out, or the last image
  when there are fewer than 10. `load_benchmark_sets` scores *every* image of a folder instead.

Images are RGB uint8 ``H x W x 3``. HR images are cropped (bottom/right) to a multiple of every
requested scale; LR images come from the data set when present (their size is checked against
the HR image: a mismatch is a `DataError` naming the LR file) and are otherwise made with the
MATLAB-compatible `imresize` from the modcropped HR image.

Decoded images are cached as uint8 ``.npy`` files (memory-mapped, read-only) under
`default_cache_dir`, keyed by the file's absolute path, size and modification time, so a changed
file is decoded again. Stale entries are never read; delete the folder to reclaim the space.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from srnas.data.images import is_image_file, load_image, modcrop
from srnas.errors import DataError
from srnas.fileio import atomic_write

__all__ = [
    "BENCHMARK_SETS", "DIV2K_SPLITS", "DatasetStatus", "ImageCache", "SRImageSet",
    "default_cache_dir", "describe_data_root", "held_out_indices", "load_benchmark_sets",
    "load_eval_set", "load_train_set",
]

#: Official benchmark sets and their image counts.
BENCHMARK_SETS: dict[str, int] = {"Set5": 5, "Set14": 14, "B100": 100, "Urban100": 100, "Manga109": 109}
#: DIV2K image-number ranges (inclusive).
DIV2K_SPLITS: dict[str, tuple[int, int]] = {"train": (1, 800), "valid": (801, 900)}
_PROTOCOLS = ("benchmark", "div2k")  # = srnas.metrics.PROTOCOLS, without importing metrics here
# Part of the cache key of generated LR images: bump it when imresize's output changes.
_GENERATED_LR_TAG = "matlab-bicubic-v1"
_MANGA_HINT = "Manga109 is not downloaded automatically: run `srnas data download manga109` for the steps"

PathLike = str | os.PathLike[str]


# --------------------------------------------------------------------------------------------
# The data set object


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
        if self.protocol not in _PROTOCOLS:
            raise ValueError(f"data set {self.name!r}: unknown protocol {self.protocol!r}; use one of {', '.join(_PROTOCOLS)}")
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

    def pairs(self, scale: int) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """Yield ``(name, lr, hr)`` for ``scale``."""
        if scale not in self.lr:
            raise DataError(f"data set {self.name!r} has no x{scale} images (scales {list(self.scales)})")
        yield from zip(self.names, self.lr[scale], self.hr, strict=True)


# --------------------------------------------------------------------------------------------
# Decoded-image cache


def default_cache_dir() -> Path:
    """``$SRNAS_CACHE_DIR`` if set, else ``~/.cache/srnas``."""
    env = os.environ.get("SRNAS_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "srnas"


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


def _make_cache(cache_dir: PathLike | None, cache: bool) -> ImageCache:
    if not cache:
        return ImageCache(None)
    return ImageCache(cache_dir if cache_dir is not None else default_cache_dir())


# --------------------------------------------------------------------------------------------
# Assembling a set from files


@dataclass(frozen=True)
class _Entry:
    name: str
    hr: Path
    lr: dict[int, Path]  # scale -> provided LR file (absent: generate)


def _lcm(scales: Sequence[int]) -> int:
    return math.lcm(*scales)


def _check_scales(scales: Sequence[int] | int) -> tuple[int, ...]:
    values = (scales,) if isinstance(scales, int) else tuple(scales)
    if not values:
        raise ValueError("scales must not be empty")
    for s in values:
        if not isinstance(s, (int, np.integer)) or isinstance(s, bool) or s < 1:
            raise ValueError(f"invalid scale {s!r}: scales are positive integers (2, 3, 4, ...)")
    return tuple(sorted({int(s) for s in values}))


def _load_entry(entry: _Entry, scales: tuple[int, ...], cache: ImageCache) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    from srnas.data.imresize import imresize

    full = cache.image(entry.hr)
    h, w = full.shape[:2]
    m = _lcm(scales)
    if h < m or w < m:
        raise DataError(f"{entry.hr}: image of {h}x{w} is smaller than the scale multiple {m}")
    hr = modcrop(full, m)
    lrs: dict[int, np.ndarray] = {}
    for s in scales:
        want = (h // s, w // s)
        lr_path = entry.lr.get(s)
        if lr_path is not None:
            lr_full = cache.image(lr_path)
            if lr_full.shape[:2] != want:
                raise DataError(
                    f"{lr_path}: LR image is {lr_full.shape[0]}x{lr_full.shape[1]} but x{s} of HR "
                    f"{entry.hr.name} ({h}x{w}) must be {want[0]}x{want[1]}")
        else:
            def make(s: int = s) -> np.ndarray:
                return imresize(np.ascontiguousarray(modcrop(full, s)), 1.0 / s)

            lr_full = cache.derived(entry.hr, f"{_GENERATED_LR_TAG}-x{s}", make)
        lrs[s] = lr_full[: hr.shape[0] // s, : hr.shape[1] // s]
    return hr, lrs


def _assemble(name: str, entries: list[_Entry], scales: tuple[int, ...], protocol: str,
              cache: ImageCache, *, progress: bool = False) -> SRImageSet:
    workers = max(1, min(8, os.cpu_count() or 1))
    results: list[tuple[np.ndarray, dict[int, np.ndarray]]] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_load_entry, e, scales, cache) for e in entries]
        if progress and entries:
            from rich.progress import Progress

            with Progress(transient=True) as bar:
                task = bar.add_task(f"decoding {name}", total=len(futures))
                for fut in futures:
                    results.append(fut.result())
                    bar.advance(task)
        else:
            results = [fut.result() for fut in futures]
    return SRImageSet(
        name=name,
        names=[e.name for e in entries],
        hr=[r[0] for r in results],
        lr={s: [r[1][s] for r in results] for s in scales},
        protocol=protocol,
    )


def _image_files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if is_image_file(p)), key=lambda p: p.name)


def _folder_entries(folder: Path, scales: tuple[int, ...]) -> list[_Entry]:
    """Entries of a set folder (``HR/`` + ``LR_bicubic/X{s}/``) or a plain folder of images."""
    hr_dir = folder / "HR"
    if hr_dir.is_dir():
        files = _image_files(hr_dir)
        if not files:
            raise DataError(f"{hr_dir}: no images (png, jpg, bmp, tif, webp)")
        entries = []
        for f in files:
            lr: dict[int, Path] = {}
            for s in scales:
                candidate = folder / "LR_bicubic" / f"X{s}" / f"{f.stem}x{s}{f.suffix}"
                if candidate.is_file():
                    lr[s] = candidate
            entries.append(_Entry(f.stem, f, lr))
        return entries
    files = _image_files(folder)
    if not files:
        raise DataError(f"{folder}: no images (png, jpg, bmp, tif, webp) and no HR/ folder")
    return [_Entry(f.stem, f, {}) for f in files]


def held_out_indices(n: int) -> list[int]:
    """Indices (into the name-sorted images of a folder) held out for validation.

    Every 10th image (9, 19, 29, ...), or the last image when there are fewer than 10.
    """
    if n < 2:
        raise ValueError(f"a folder used for training needs at least 2 images, got {n}")
    return list(range(9, n, 10)) or [n - 1]


def _split_folder(folder: Path, entries: list[_Entry], part: str) -> list[_Entry]:
    if len(entries) < 2:
        raise DataError(f"{folder}: a folder used for training needs at least 2 images (1 is held out for validation), found {len(entries)}")
    held = set(held_out_indices(len(entries)))
    keep = [i for i in range(len(entries)) if (i in held) == (part == "val")]
    return [entries[i] for i in keep]


# --------------------------------------------------------------------------------------------
# DIV2K


def _div2k_root(path: Path) -> Path | None:
    for candidate in (path, path / "DIV2K"):
        if (candidate / "DIV2K_train_HR").is_dir() or (candidate / "DIV2K_valid_HR").is_dir():
            return candidate
    return None


def _div2k_entries(root: Path, split: str, scales: tuple[int, ...]) -> list[_Entry]:
    first, last = DIV2K_SPLITS[split]
    found: dict[int, tuple[Path, str]] = {}
    for prefix in ("DIV2K_train", "DIV2K_valid"):
        hr_dir = root / f"{prefix}_HR"
        if not hr_dir.is_dir():
            continue
        for f in hr_dir.iterdir():
            if f.suffix.lower() == ".png" and f.stem.isdigit() and len(f.stem) == 4 and first <= int(f.stem) <= last:
                found.setdefault(int(f.stem), (f, prefix))
    if not found:
        where = "DIV2K_train_HR" if split == "train" else "DIV2K_valid_HR"
        raise DataError(f"{root}: no DIV2K {split} images (expected {where}/{first:04d}.png ... {last:04d}.png)")
    entries = []
    for number in sorted(found):
        f, prefix = found[number]
        lr = {}
        for s in scales:
            candidate = root / f"{prefix}_LR_bicubic" / f"X{s}" / f"{f.stem}x{s}.png"
            if candidate.is_file():
                lr[s] = candidate
        entries.append(_Entry(f.stem, f, lr))
    return entries


# --------------------------------------------------------------------------------------------
# Benchmark roots


def _is_set_folder(path: Path) -> bool:
    return (path / "HR").is_dir()


def _benchmark_root(path: Path) -> Path | None:
    """The folder holding the set folders (``benchmark/`` or ``path``), if any."""
    for candidate in (path / "benchmark", path):
        if candidate.is_dir() and any(_is_set_folder(c) for c in candidate.iterdir() if c.is_dir()):
            return candidate
    return None


def _is_official_set(path: Path) -> bool:
    return path.name.lower() in {n.lower() for n in BENCHMARK_SETS}


def _find_set(root: Path, name: str) -> Path | None:
    for base in (root / "benchmark", root):
        if not base.is_dir():
            continue
        for child in base.iterdir():
            if child.is_dir() and child.name.lower() == name.lower():
                return child
    return None


def _available_sets(root: Path) -> list[str]:
    base = _benchmark_root(root)
    if base is None:
        return []
    return sorted(c.name for c in base.iterdir() if c.is_dir() and _is_set_folder(c))


def _kind(path: Path) -> str:
    """What a data folder is: "div2k", "set" (``HR/`` layout), "folder" (images) or "benchmark"."""
    if _div2k_root(path) is not None:
        return "div2k"
    if _is_set_folder(path):
        return "set"
    if _image_files(path):
        return "folder"  # images directly inside win over set-like sub-folders
    if _benchmark_root(path) is not None:
        return "benchmark"
    return "folder"


def _canonical_set_name(folder: Path) -> str:
    for official in BENCHMARK_SETS:
        if folder.name.lower() == official.lower():
            return official
    return folder.name


# --------------------------------------------------------------------------------------------
# Public loaders


def _as_path(spec: PathLike) -> Path:
    p = Path(spec).expanduser()
    if not p.exists():
        raise DataError(f"{p}: no such folder (expected 'demo', a DIV2K root, a benchmark root or a folder of images)")
    if not p.is_dir():
        raise DataError(f"{p}: is a file; a data set is a folder (DIV2K root, benchmark root or folder of images)")
    return p


def load_train_set(spec: PathLike, scales: Sequence[int] | int, *, cache_dir: PathLike | None = None,
                   cache: bool = True, max_images: int | None = None, progress: bool = False) -> SRImageSet:
    """The training images of ``spec`` for ``scales`` (see the module docstring for specs).

    Args:
        spec: ``"demo"``, a DIV2K root, or a folder of images (its held-out part is excluded).
        scales: the scales to provide LR images for (one int or several).
        cache_dir: decoded-image cache folder (default `default_cache_dir`).
        cache: False decodes every time and writes nothing.
        max_images: keep only the first N images (by name), e.g. for quick experiments.
        progress: show a progress bar while decoding.

    Raises:
        DataError: missing/unrecognised folder, benchmark test sets, corrupt image, LR/HR size
            mismatch; the message names the path.
    """
    sc = _check_scales(scales)
    if str(spec) == "demo":
        from srnas.data.demo import demo_split

        data = demo_split(sc)[0]
        return data.subset(range(min(len(data), max_images)), name=data.name) if max_images else data
    path = _as_path(spec)
    store = _make_cache(cache_dir, cache)
    kind = _kind(path)
    if kind == "div2k":
        entries = _div2k_entries(_div2k_root(path) or path, "train", sc)
        name, protocol = "DIV2K-train", "div2k"
    elif kind == "benchmark" or (kind == "set" and _is_official_set(path)):
        raise DataError(f"{path}: benchmark test sets are for evaluation only; train on 'demo', a DIV2K root or a folder of your own images")
    else:
        entries = _split_folder(path, _folder_entries(path, sc), "train")
        name, protocol = path.name, "benchmark"
    if max_images is not None:
        entries = entries[:max_images]
    return _assemble(name, entries, sc, protocol, store, progress=progress)


def load_eval_set(spec: PathLike, scale: int, *, name: str | None = None, max_images: int | None = None,
                  cache_dir: PathLike | None = None, cache: bool = True, progress: bool = False) -> SRImageSet:
    """The validation/test images of ``spec`` at one ``scale``; HR modcropped to ``scale``.

    ``spec`` as in `load_train_set`, giving the counterpart that training never sees: demo ->
    coffee; DIV2K root -> 0801-0900 (protocol "div2k"); a folder of images -> its held-out
    part. For a benchmark root, ``name`` picks the set (``"Set5"``, case-insensitive); an
    official set folder (``.../Set5``) gives all its images. Other arguments as in
    `load_train_set`.
    """
    (sc,) = _check_scales(scale)
    if str(spec) == "demo":
        if name is not None:
            raise DataError(f"name={name!r} selects a set in a benchmark root; 'demo' has one validation set")
        from srnas.data.demo import demo_split

        data = demo_split((sc,))[1]
        return data.subset(range(min(len(data), max_images)), name=data.name) if max_images else data
    path = _as_path(spec)
    store = _make_cache(cache_dir, cache)
    kind = _kind(path)
    if kind == "div2k":
        if name is not None and name.lower() != "div2k":
            raise DataError(f"{path}: is a DIV2K root; name={name!r} applies to benchmark roots")
        entries, set_name, protocol = _div2k_entries(_div2k_root(path) or path, "valid", (sc,)), "DIV2K", "div2k"
    elif kind == "set":
        if name is not None and name.lower() != path.name.lower():
            raise DataError(f"{path}: is the set {path.name!r}; name={name!r} applies to benchmark roots")
        entries = _folder_entries(path, (sc,))
        set_name, protocol = _canonical_set_name(path), "benchmark"
        if not _is_official_set(path):
            entries, set_name = _split_folder(path, entries, "val"), f"{path.name}-val"
    elif kind == "benchmark":
        available = _available_sets(path)
        if name is None:
            if len(available) != 1:
                raise DataError(f"{path}: is a benchmark root; pass name= (one of {', '.join(available)})")
            name = available[0]
        return load_benchmark_sets(path, [name], sc, cache_dir=cache_dir, cache=cache, max_images=max_images)[0]
    else:
        if name is not None:
            raise DataError(f"{path}: is a folder of images; name={name!r} applies to benchmark roots")
        entries = _split_folder(path, _folder_entries(path, (sc,)), "val")
        set_name, protocol = f"{path.name}-val", "benchmark"
    if max_images is not None:
        entries = entries[:max_images]
    return _assemble(set_name, entries, (sc,), protocol, store, progress=progress)


def load_benchmark_sets(root: PathLike, names: Sequence[str], scale: int, *, cache_dir: PathLike | None = None,
                        cache: bool = True, max_images: int | None = None) -> list[SRImageSet]:
    """Test sets by name from ``root``, every image of each, at ``scale`` (protocol "benchmark").

    ``root`` is a benchmark root (the folder holding ``benchmark/`` or the set folders). Each
    name is a folder under it, matched case-insensitively: official layout (``HR/`` and
    ``LR_bicubic/X{s}/``) or a plain folder of HR images (LR generated). ``"DIV2K"`` loads DIV2K
    0801-0900 (protocol "div2k") from a DIV2K root at ``root`` or ``root/DIV2K``.

    Raises:
        DataError: a named set is missing (the message lists the sets found), or any image
            problem as in `load_train_set`.
    """
    base = _as_path(root)
    (sc,) = _check_scales(scale)
    out = []
    for set_name in names:
        if set_name.lower() == "div2k":
            div2k = _div2k_root(base)
            if div2k is None:
                raise DataError(f"{base}: no DIV2K root here (expected DIV2K_valid_HR/ or DIV2K/DIV2K_valid_HR/)")
            out.append(load_eval_set(div2k, sc, max_images=max_images, cache_dir=cache_dir, cache=cache))
            continue
        folder = _find_set(base, set_name)
        if folder is None:
            found = _available_sets(base)
            hint = f"; {_MANGA_HINT}" if set_name.lower() == "manga109" else ""
            raise DataError(f"{base}: no set {set_name!r} (found: {', '.join(found) or 'none'}){hint}")
        entries = _folder_entries(folder, (sc,))
        if max_images is not None:
            entries = entries[:max_images]
        out.append(_assemble(_canonical_set_name(folder), entries, (sc,), "benchmark", _make_cache(cache_dir, cache)))
    return out


# --------------------------------------------------------------------------------------------
# Inventory (`srnas data check`)


@dataclass(frozen=True)
class DatasetStatus:
    """What `describe_data_root` found for one data set."""

    name: str
    path: Path
    hr_count: int
    expected: int | None  # official image count, None for user folders
    lr_counts: dict[int, int]  # scale -> provided LR images

    @property
    def complete(self) -> bool:
        """All official HR images present (user folders: at least one image)."""
        return self.hr_count >= (self.expected or 1)


def describe_data_root(root: PathLike, scales: Sequence[int] = (2, 3, 4)) -> list[DatasetStatus]:
    """The DIV2K splits and benchmark sets under ``root``, with HR and provided-LR counts.

    Only file names are inspected (nothing is decoded). Returns an empty list when nothing is
    recognised.
    """
    base = _as_path(root)
    sc = _check_scales(scales)
    found: list[DatasetStatus] = []
    div2k = _div2k_root(base)
    if div2k is not None:
        for split, label in (("train", "DIV2K train"), ("valid", "DIV2K valid")):
            first, last = DIV2K_SPLITS[split]
            try:
                entries = _div2k_entries(div2k, split, sc)
            except DataError:
                entries = []
            found.append(DatasetStatus(
                name=label, path=div2k / f"DIV2K_{split}_HR", hr_count=len(entries), expected=last - first + 1,
                lr_counts={s: sum(s in e.lr for e in entries) for s in sc}))
    bench = _benchmark_root(base)
    sets = {_canonical_set_name(c): c for c in bench.iterdir() if c.is_dir() and _is_set_folder(c)} if bench else {}
    if _is_set_folder(base):
        sets[_canonical_set_name(base)] = base
    for set_name in list(BENCHMARK_SETS) + sorted(set(sets) - set(BENCHMARK_SETS)):
        folder = sets.get(set_name)
        if folder is None:
            if set_name in BENCHMARK_SETS and bench is not None:
                found.append(DatasetStatus(set_name, bench / set_name, 0, BENCHMARK_SETS[set_name], {s: 0 for s in sc}))
            continue
        try:
            entries = _folder_entries(folder, sc)
        except DataError:
            entries = []
        found.append(DatasetStatus(
            name=set_name, path=folder, hr_count=len(entries), expected=BENCHMARK_SETS.get(set_name),
            lr_counts={s: sum(s in e.lr for e in entries) for s in sc}))
    return found
