"""Where a data set comes from: a ``spec`` (the ``--data`` value) becomes a `DataSource`, and the
loaders ask it for training or evaluation images.

=====================  ===============================  ===================================
spec                   `load_train_set`                 `load_eval_set`
=====================  ===============================  ===================================
``"demo"``             4 scikit-image photographs        coffee (see `srnas.data.demo`)
DIV2K root             0001-0800                        0801-0900, protocol "div2k"
benchmark root         refused (test sets)              the set ``name=`` (Set5, ...)
official set folder    refused (test set)               all its images
any other folder       all images but the held-out      the held-out images
=====================  ===============================  ===================================

`load_image_folder` scores *every* image of one folder (one's own HR images, ``srnas eval``).

Folder layouts and the held-out part of a folder are described in `srnas.data.layout`;
`load_benchmark_sets` scores *every* image of a folder instead.

Images are RGB uint8 ``H x W x 3``. HR images are cropped (bottom/right) to a multiple of every
requested scale; LR images come from the data set when present (their size is checked against
the HR image: a mismatch is a `DataError` naming the LR file) and are otherwise made with the
MATLAB-compatible `imresize` from the modcropped HR image. Decoded images are kept in the
`srnas.data.cache.ImageCache` (``cache_dir=``, ``cache=``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from rich.progress import Progress

from srnas.data.cache import ImageCache, open_cache
from srnas.data.demo import demo_split
from srnas.data.images import modcrop
from srnas.data.imageset import SRImageSet, check_scales
from srnas.data.imresize import imresize
from srnas.data.layout import (
    ImageEntry, available_sets, canonical_set_name, data_folder, data_kind, div2k_entries, div2k_root,
    find_set, folder_entries, is_official_set, split_folder,
)
from srnas.errors import DataError

__all__ = ["DataSource", "load_benchmark_sets", "load_eval_set", "load_image_folder", "load_train_set", "open_source"]

# Part of the cache key of generated LR images: bump it when imresize's output changes.
_GENERATED_LR_TAG = "matlab-bicubic-v1"
_MANGA_HINT = "Manga109 is not downloaded automatically: run `srnas data download manga109` for the steps"
_TEST_SETS_ONLY = "benchmark test sets are for evaluation only; train on 'demo', a DIV2K root or a folder of your own images"

PathLike = str | os.PathLike[str]


class DataSource(Protocol):
    """A place images come from (`open_source` makes one from a spec)."""

    def train_set(self, scales: tuple[int, ...], store: ImageCache, *, max_images: int | None,
                  progress: bool) -> SRImageSet:
        """The images training may use, with LR images for every scale in ``scales``."""
        ...

    def eval_set(self, scale: int, store: ImageCache, *, name: str | None, max_images: int | None,
                 progress: bool) -> SRImageSet:
        """The images training never sees, at one ``scale``; ``name`` picks a set where there are several."""
        ...


def open_source(spec: PathLike) -> DataSource:
    """The source a spec names: ``"demo"``, or a DIV2K root, benchmark root, set folder or
    folder of images (see the module docstring).

    Raises:
        DataError: the folder does not exist or is a file.
    """
    if str(spec) == "demo":
        return _Demo()
    path = data_folder(spec)
    kind = data_kind(path)
    if kind == "div2k":
        return _Div2k(div2k_root(path) or path)
    if kind == "benchmark":
        return _Benchmark(path)
    return _Folder(path, is_set=kind == "set")


# ---- the loaders -------------------------------------------------------------------------------


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
    sc = check_scales(scales)
    return open_source(spec).train_set(sc, open_cache(cache_dir, cache), max_images=max_images, progress=progress)


def load_eval_set(spec: PathLike, scale: int, *, name: str | None = None, max_images: int | None = None,
                  cache_dir: PathLike | None = None, cache: bool = True, progress: bool = False) -> SRImageSet:
    """The validation/test images of ``spec`` at one ``scale``; HR modcropped to ``scale``.

    ``spec`` as in `load_train_set`, giving the counterpart that training never sees: demo ->
    coffee; DIV2K root -> 0801-0900 (protocol "div2k"); a folder of images -> its held-out
    part. For a benchmark root, ``name`` picks the set (``"Set5"``, case-insensitive); an
    official set folder (``.../Set5``) gives all its images. Other arguments as in
    `load_train_set`.
    """
    (sc,) = check_scales(scale)
    return open_source(spec).eval_set(sc, open_cache(cache_dir, cache), name=name, max_images=max_images,
                                      progress=progress)


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
    base = data_folder(root)
    (sc,) = check_scales(scale)
    store = open_cache(cache_dir, cache)
    out = []
    for set_name in names:
        if set_name.lower() == "div2k":
            div2k = div2k_root(base)
            if div2k is None:
                raise DataError(f"{base}: no DIV2K root here (expected DIV2K_valid_HR/ or DIV2K/DIV2K_valid_HR/)")
            out.append(_Div2k(div2k).eval_set(sc, store, name=None, max_images=max_images, progress=False))
        else:
            out.append(_benchmark_set(base, set_name, sc, store, max_images=max_images, progress=False))
    return out


def load_image_folder(folder: PathLike, scale: int, *, cache_dir: PathLike | None = None, cache: bool = True,
                      max_images: int | None = None) -> SRImageSet:
    """Every image of one folder as a test set at ``scale`` (protocol "benchmark"), named after
    the folder (an official set's folder gets its official spelling, ``set5`` -> ``Set5``).

    ``folder`` holds HR images (LR made with the MATLAB-compatible bicubic) or is a set folder
    (``HR/`` plus optional ``LR_bicubic/X{s}/``). Nothing is held out: this is for scoring.
    """
    path = data_folder(folder)
    (sc,) = check_scales(scale)
    return _decode(canonical_set_name(path), folder_entries(path, (sc,)), (sc,), "benchmark",
                   open_cache(cache_dir, cache), max_images=max_images, progress=False)


# ---- the sources -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Demo:
    """The offline demo split (`srnas.data.demo`)."""

    def train_set(self, scales: tuple[int, ...], store: ImageCache, *, max_images: int | None,
                  progress: bool) -> SRImageSet:
        return demo_split(scales)[0].head(max_images)

    def eval_set(self, scale: int, store: ImageCache, *, name: str | None, max_images: int | None,
                 progress: bool) -> SRImageSet:
        if name is not None:
            raise DataError(f"name={name!r} selects a set in a benchmark root; 'demo' has one validation set")
        return demo_split((scale,))[1].head(max_images)


@dataclass(frozen=True)
class _Div2k:
    """A DIV2K root: 0001-0800 train, 0801-0900 validate (protocol "div2k")."""

    root: Path

    def train_set(self, scales: tuple[int, ...], store: ImageCache, *, max_images: int | None,
                  progress: bool) -> SRImageSet:
        entries = div2k_entries(self.root, "train", scales)
        return _decode("DIV2K-train", entries, scales, "div2k", store, max_images=max_images, progress=progress)

    def eval_set(self, scale: int, store: ImageCache, *, name: str | None, max_images: int | None,
                 progress: bool) -> SRImageSet:
        if name is not None and name.lower() != "div2k":
            raise DataError(f"{self.root}: is a DIV2K root; name={name!r} applies to benchmark roots")
        entries = div2k_entries(self.root, "valid", (scale,))
        return _decode("DIV2K", entries, (scale,), "div2k", store, max_images=max_images, progress=progress)


@dataclass(frozen=True)
class _Benchmark:
    """A benchmark root: test sets only, one picked by name."""

    root: Path

    def train_set(self, scales: tuple[int, ...], store: ImageCache, *, max_images: int | None,
                  progress: bool) -> SRImageSet:
        raise DataError(f"{self.root}: {_TEST_SETS_ONLY}")

    def eval_set(self, scale: int, store: ImageCache, *, name: str | None, max_images: int | None,
                 progress: bool) -> SRImageSet:
        if name is None:
            available = available_sets(self.root)
            if len(available) != 1:
                raise DataError(f"{self.root}: is a benchmark root; pass name= (one of {', '.join(available)})")
            name = available[0]
        return _benchmark_set(self.root, name, scale, store, max_images=max_images, progress=False)


@dataclass(frozen=True)
class _Folder:
    """A folder of images or a set folder (``HR/``); an official set folder is a test set."""

    path: Path
    is_set: bool

    @property
    def official(self) -> bool:
        return self.is_set and is_official_set(self.path)

    def train_set(self, scales: tuple[int, ...], store: ImageCache, *, max_images: int | None,
                  progress: bool) -> SRImageSet:
        if self.official:
            raise DataError(f"{self.path}: {_TEST_SETS_ONLY}")
        entries = split_folder(self.path, folder_entries(self.path, scales), "train")
        return _decode(self.path.name, entries, scales, "benchmark", store, max_images=max_images, progress=progress)

    def eval_set(self, scale: int, store: ImageCache, *, name: str | None, max_images: int | None,
                 progress: bool) -> SRImageSet:
        if name is not None and not (self.is_set and name.lower() == self.path.name.lower()):
            what = f"the set {self.path.name!r}" if self.is_set else "a folder of images"
            raise DataError(f"{self.path}: is {what}; name={name!r} applies to benchmark roots")
        entries = folder_entries(self.path, (scale,))
        if self.official:
            set_name = canonical_set_name(self.path)
        else:
            entries, set_name = split_folder(self.path, entries, "val"), f"{self.path.name}-val"
        return _decode(set_name, entries, (scale,), "benchmark", store, max_images=max_images, progress=progress)


def _benchmark_set(base: Path, set_name: str, scale: int, store: ImageCache, *, max_images: int | None,
                   progress: bool) -> SRImageSet:
    """Every image of the set folder ``set_name`` under a benchmark root."""
    folder = find_set(base, set_name)
    if folder is None:
        found = available_sets(base)
        hint = f"; {_MANGA_HINT}" if set_name.lower() == "manga109" else ""
        raise DataError(f"{base}: no set {set_name!r} (found: {', '.join(found) or 'none'}){hint}")
    entries = folder_entries(folder, (scale,))
    return _decode(canonical_set_name(folder), entries, (scale,), "benchmark", store, max_images=max_images,
                   progress=progress)


# ---- decoding ----------------------------------------------------------------------------------


def _decode_entry(entry: ImageEntry, scales: tuple[int, ...], store: ImageCache) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    full = store.image(entry.hr)
    h, w = full.shape[:2]
    m = math.lcm(*scales)
    if h < m or w < m:
        raise DataError(f"{entry.hr}: image of {h}x{w} is smaller than the scale multiple {m}")
    hr = modcrop(full, m)
    lrs: dict[int, np.ndarray] = {}
    for s in scales:
        want = (h // s, w // s)
        lr_path = entry.lr.get(s)
        if lr_path is not None:
            lr_full = store.image(lr_path)
            if lr_full.shape[:2] != want:
                raise DataError(
                    f"{lr_path}: LR image is {lr_full.shape[0]}x{lr_full.shape[1]} but x{s} of HR "
                    f"{entry.hr.name} ({h}x{w}) must be {want[0]}x{want[1]}")
        else:
            def make(s: int = s) -> np.ndarray:
                return imresize(np.ascontiguousarray(modcrop(full, s)), 1.0 / s)

            lr_full = store.derived(entry.hr, f"{_GENERATED_LR_TAG}-x{s}", make)
        lrs[s] = lr_full[: hr.shape[0] // s, : hr.shape[1] // s]
    return hr, lrs


def _decode(name: str, entries: list[ImageEntry], scales: tuple[int, ...], protocol: str, store: ImageCache,
            *, max_images: int | None, progress: bool) -> SRImageSet:
    """The set made of ``entries`` (the first ``max_images``), decoded in threads through ``store``."""
    if max_images is not None:
        entries = entries[:max_images]
    workers = max(1, min(8, os.cpu_count() or 1))
    results: list[tuple[np.ndarray, dict[int, np.ndarray]]] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_decode_entry, e, scales, store) for e in entries]
        if progress and entries:
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
