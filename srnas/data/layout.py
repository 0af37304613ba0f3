"""Data folders on disk: what a folder is (DIV2K root, benchmark root, set folder, folder of
images), which image files make each set, and the inventory `srnas data check` prints.

Only file names are inspected here; nothing is decoded (`srnas.data.sources` decodes).

- A DIV2K root holds ``DIV2K_train_HR/0001.png`` and/or ``DIV2K_valid_HR/0801.png`` (or has
  them under ``DIV2K/``), with optional ``DIV2K_{train,valid}_LR_bicubic/X{s}/{id}x{s}.png``.
  Images 0801-0900 are found in either HR folder.
- A benchmark root is the authors' ``benchmark.tar`` extracted: ``benchmark/<Set>/HR/*.png``
  and ``benchmark/<Set>/LR_bicubic/X{s}/<name>x{s}.png`` (the root may be the folder that
  contains ``benchmark/`` or ``benchmark/`` itself). Official sets: `BENCHMARK_SETS`.
- Any other folder is a folder of HR images (png, jpg, bmp, tif, webp; not recursive), or a
  set folder (``HR/`` plus optional ``LR_bicubic/X{s}/``).
- Held-out validation part of a folder used for training (deterministic, documented): images
  sorted by file name; every 10th one (indices 9, 19, 29, ...) is held out, or the last image
  when there are fewer than 10 (`held_out_indices`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from PIL import Image

from srnas.data.images import is_image_file
from srnas.data.imageset import check_scales
from srnas.errors import DataError

__all__ = [
    "BENCHMARK_SETS", "DIV2K_SPLITS", "DataKind", "DatasetStatus", "ImageEntry", "available_sets",
    "canonical_set_name", "data_folder", "data_kind", "describe_data_root", "div2k_entries", "div2k_root",
    "find_set", "folder_entries", "held_out_indices", "is_official_set", "official_image_count", "split_folder",
]

#: Official benchmark sets and their image counts.
BENCHMARK_SETS: dict[str, int] = {"Set5": 5, "Set14": 14, "B100": 100, "Urban100": 100, "Manga109": 109}
#: DIV2K image-number ranges (inclusive).
DIV2K_SPLITS: dict[str, tuple[int, int]] = {"train": (1, 800), "valid": (801, 900)}

#: What a data folder is (see `data_kind`).
DataKind = Literal["div2k", "benchmark", "set", "folder"]

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class ImageEntry:
    """One image of a set on disk: its HR file and the LR files the data set provides."""

    name: str
    hr: Path
    lr: dict[int, Path]  # scale -> provided LR file (absent: generated from the HR image)


def data_folder(spec: PathLike) -> Path:
    """``spec`` as an existing folder, or a `DataError` saying what a data folder may be."""
    p = Path(spec).expanduser()
    if not p.exists():
        raise DataError(f"{p}: no such folder (expected 'demo', a DIV2K root, a benchmark root or a folder of images)")
    if not p.is_dir():
        raise DataError(f"{p}: is a file; a data set is a folder (DIV2K root, benchmark root or folder of images)")
    return p


def data_kind(path: Path) -> DataKind:
    """What a data folder is: "div2k", "set" (``HR/`` layout), "folder" (images) or "benchmark"."""
    if div2k_root(path) is not None:
        return "div2k"
    if _is_set_folder(path):
        return "set"
    if _image_files(path):
        return "folder"  # images directly inside win over set-like sub-folders
    if _benchmark_root(path) is not None:
        return "benchmark"
    return "folder"


# ---- folders of images and set folders ---------------------------------------------------------


def _image_files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if is_image_file(p)), key=lambda p: p.name)


def folder_entries(folder: Path, scales: tuple[int, ...]) -> list[ImageEntry]:
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
            entries.append(ImageEntry(f.stem, f, lr))
        return entries
    files = _image_files(folder)
    if not files:
        raise DataError(f"{folder}: no images (png, jpg, bmp, tif, webp) and no HR/ folder")
    return [ImageEntry(f.stem, f, {}) for f in files]


def _readable(path: Path) -> bool:
    """Whether Pillow can open and verify the file (its header and, for PNG, its checksums)."""
    try:
        with Image.open(path) as im:
            im.verify()
        return True
    except Exception:  # any decoder error: not an image this set can use
        return False


def held_out_indices(n: int) -> list[int]:
    """Indices (into the name-sorted images of a folder) held out for validation.

    Every 10th image (9, 19, 29, ...), or the last image when there are fewer than 10.
    """
    if n < 2:
        raise ValueError(f"a folder used for training needs at least 2 images, got {n}")
    return list(range(9, n, 10)) or [n - 1]


def split_folder(folder: Path, entries: list[ImageEntry], part: Literal["train", "val"]) -> list[ImageEntry]:
    """The training part or the held-out validation part of a folder's entries."""
    if len(entries) < 2:
        unreadable = [e.hr.name for e in entries if not _readable(e.hr)]
        found = len(entries) - len(unreadable)
        raise DataError(f"{folder}: a folder used for training needs at least 2 images (1 is held out for validation), "
                        f"found {found}" + (f" ({', '.join(unreadable)}: not a readable image)" if unreadable else ""))
    held = set(held_out_indices(len(entries)))
    return [e for i, e in enumerate(entries) if (i in held) == (part == "val")]


# ---- DIV2K -------------------------------------------------------------------------------------


def div2k_root(path: Path) -> Path | None:
    """The DIV2K root at ``path`` or ``path/DIV2K``, if any."""
    for candidate in (path, path / "DIV2K"):
        if (candidate / "DIV2K_train_HR").is_dir() or (candidate / "DIV2K_valid_HR").is_dir():
            return candidate
    return None


def div2k_entries(root: Path, split: str, scales: tuple[int, ...]) -> list[ImageEntry]:
    """The images of a DIV2K split (``"train"`` or ``"valid"``, see `DIV2K_SPLITS`), found in either
    HR folder, in number order."""
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
        entries.append(ImageEntry(f.stem, f, lr))
    return entries


# ---- benchmark roots ---------------------------------------------------------------------------


def _is_set_folder(path: Path) -> bool:
    return (path / "HR").is_dir()


def _benchmark_root(path: Path) -> Path | None:
    """The folder holding the set folders (``benchmark/`` or ``path``), if any."""
    for candidate in (path / "benchmark", path):
        if candidate.is_dir() and any(_is_set_folder(c) for c in candidate.iterdir() if c.is_dir()):
            return candidate
    return None


def is_official_set(path: Path) -> bool:
    """True for a folder named like one of `BENCHMARK_SETS` (case-insensitive)."""
    return path.name.lower() in {n.lower() for n in BENCHMARK_SETS}


def find_set(root: Path, name: str) -> Path | None:
    """The folder of set ``name`` under ``root/benchmark`` or ``root`` (case-insensitive)."""
    for base in (root / "benchmark", root):
        if not base.is_dir():
            continue
        for child in base.iterdir():
            if child.is_dir() and child.name.lower() == name.lower():
                return child
    return None


def available_sets(root: Path) -> list[str]:
    """Names of the set folders (``HR/`` layout) under a benchmark root, sorted."""
    base = _benchmark_root(root)
    if base is None:
        return []
    return sorted(c.name for c in base.iterdir() if c.is_dir() and _is_set_folder(c))


def official_image_count(set_name: str) -> int | None:
    """Images of the official set ``set_name`` (``Set5`` 5, ..., ``DIV2K`` validation 100);
    None for a set of one's own. Published numbers hold for the complete set only."""
    if set_name.lower() == "div2k":
        first, last = DIV2K_SPLITS["valid"]
        return last - first + 1
    return next((n for name, n in BENCHMARK_SETS.items() if name.lower() == set_name.lower()), None)


def canonical_set_name(folder: Path) -> str:
    """The official spelling of a set folder's name (``set5`` -> ``Set5``), else its name."""
    for official in BENCHMARK_SETS:
        if folder.name.lower() == official.lower():
            return official
    return folder.name


# ---- inventory (`srnas data check`) ------------------------------------------------------------


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
    base = data_folder(root)
    sc = check_scales(scales)
    found: list[DatasetStatus] = []
    div2k = div2k_root(base)
    if div2k is not None:
        for split, label in (("train", "DIV2K train"), ("valid", "DIV2K valid")):
            first, last = DIV2K_SPLITS[split]
            try:
                entries = div2k_entries(div2k, split, sc)
            except DataError:
                entries = []
            found.append(DatasetStatus(
                name=label, path=div2k / f"DIV2K_{split}_HR", hr_count=len(entries), expected=last - first + 1,
                lr_counts={s: sum(s in e.lr for e in entries) for s in sc}))
    bench = _benchmark_root(base)
    sets = {canonical_set_name(c): c for c in bench.iterdir() if c.is_dir() and _is_set_folder(c)} if bench else {}
    if _is_set_folder(base):
        sets[canonical_set_name(base)] = base
    for set_name in list(BENCHMARK_SETS) + sorted(set(sets) - set(BENCHMARK_SETS)):
        folder = sets.get(set_name)
        if folder is None:
            if set_name in BENCHMARK_SETS and bench is not None:
                found.append(DatasetStatus(set_name, bench / set_name, 0, BENCHMARK_SETS[set_name], {s: 0 for s in sc}))
            continue
        try:
            entries = folder_entries(folder, sc)
        except DataError:
            entries = []
        found.append(DatasetStatus(
            name=set_name, path=folder, hr_count=len(entries), expected=BENCHMARK_SETS.get(set_name),
            lr_counts={s: sum(s in e.lr for e in entries) for s in sc}))
    return found
