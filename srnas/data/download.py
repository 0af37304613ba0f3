"""Download DIV2K and the EDSR benchmark sets, with resume, checksums and safe extraction.

Every archive is fetched to ``<root>/<file>.part`` (resumed with an HTTP ``Range`` request when
the part exists), its size and checksum are verified before anything is extracted (a bad file is
deleted and reported), and it is extracted into a temporary folder inside ``root`` that is then
renamed into place, so a folder that exists is always complete. Archive members with absolute
paths, ``..`` components or links are refused (tar files use ``tarfile``'s ``"data"`` filter).

The transfer and the checks are `srnas.fetch.download`. Checksums (docs/data.md): DIV2K sizes
and SHA-256 as pinned by TensorFlow Datasets (the DIV2K site publishes none); benchmark.tar by
MD5 (a third-party pin, size not pinned).
Manga109 may not be redistributed: it is never downloaded, `manga109_instructions` says how to
get it.

The server can be replaced with ``base_url=`` or the ``SRNAS_DATA_BASE_URL`` environment
variable (a mirror, or a local server in tests); ``checksums=`` replaces entries of `CHECKSUMS`.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from srnas.errors import DataError
from srnas.fetch import Checksum, check_base_url, download, error_reason, verify
from srnas.log import get_logger
from srnas.units import human_duration

__all__ = [
    "CHECKSUMS", "DATASETS", "DEFAULT_BASE_URLS", "Archive", "Checksum", "archives_for",
    "download_dataset", "manga109_instructions",
]


@dataclass(frozen=True)
class Archive:
    """One downloadable file and the paths (relative to the root) its extraction provides."""

    filename: str
    provides: tuple[str, ...]


#: Data sets `download_dataset` can fetch (Manga109 is handled by `manga109_instructions`).
DATASETS = ("div2k", "benchmark")

#: Where each data set is served from (``<base>/<filename>``).
DEFAULT_BASE_URLS: dict[str, str] = {
    "div2k": "https://data.vision.ee.ethz.ch/cvl/DIV2K/",
    "benchmark": "https://cv.snu.ac.kr/research/EDSR/",
}

#: Pinned sizes and digests by file name (docs/data.md, "Getting DIV2K and the benchmark sets").
CHECKSUMS: dict[str, Checksum] = {
    "DIV2K_train_HR.zip": Checksum("sha256", "9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335", 3530603713),
    "DIV2K_valid_HR.zip": Checksum("sha256", "20dd31fd84d777bc1cf5d6b7654a3f569c0aec74458ae094122ad1d0489900fc", 448993893),
    "DIV2K_train_LR_bicubic_X2.zip": Checksum("sha256", "a53a424317575838dadce4bcd97cf7b744d6855f43740ed5f0245af3cf4bd850", 925390592),
    "DIV2K_train_LR_bicubic_X3.zip": Checksum("sha256", "ad5c8e5507e2765823d3c2c5bd0934842efcd487c5370604c224090898b3163a", 427847282),
    "DIV2K_train_LR_bicubic_X4.zip": Checksum("sha256", "f006b837f4eb52b82909aa01478e6d6d199eefce932179491d0c9dbb706dde3a", 246914039),
    "DIV2K_valid_LR_bicubic_X2.zip": Checksum("sha256", "60eed9875c697df51204aa579e2a699e1d5215095788a097ff54dd17e2664d57", 117763600),
    "DIV2K_valid_LR_bicubic_X3.zip": Checksum("sha256", "04b9a2ed3b4a0715d3924d3ae8514830c3328fac8d30512ce716d6f419e052a3", 54513392),
    "DIV2K_valid_LR_bicubic_X4.zip": Checksum("sha256", "a50a5d1c4b88de4e8d300d8fb2b904c52fe93b2b298a4899697760d7cbb6d553", 31505881),
    "benchmark.tar": Checksum("md5", "4ace41d33c2384b97e6b320cd0afd6ba", None),
}

log = get_logger("data")

_DIV2K_SCALES = (2, 3, 4)
_BENCHMARK_TAR_SETS = ("Set5", "Set14", "B100", "Urban100")
_RETRY_WAIT_S = 2.0  # pause before resuming an interrupted transfer (tests set it to 0)


def archives_for(name: str, scales: Sequence[int] = (2, 3, 4)) -> list[Archive]:
    """The archives that make up data set ``name`` ("div2k" or "benchmark") for ``scales``.

    DIV2K: HR train/valid plus the bicubic LR archives of each scale (2, 3, 4 exist).
    benchmark: one tar with Set5, Set14, B100 and Urban100 at every scale (``scales`` ignored).
    """
    key = name.lower()
    if key == "manga109":
        raise DataError("Manga109 may not be redistributed and is never downloaded automatically; "
                        "run `srnas data download manga109` for the manual steps")
    if key == "benchmark":
        # Placed set by set, so a Manga109 folder put there by hand does not hide missing sets.
        return [Archive("benchmark.tar", tuple(f"benchmark/{s}" for s in _BENCHMARK_TAR_SETS))]
    if key != "div2k":
        raise DataError(f"unknown data set {name!r}; downloadable: {', '.join(DATASETS)} (Manga109: manual steps)")
    bad = [s for s in scales if s not in _DIV2K_SCALES]
    if bad:
        raise DataError(f"DIV2K has bicubic LR images for scales 2, 3, 4 only, not {bad}")
    out = [Archive("DIV2K_train_HR.zip", ("DIV2K_train_HR",)), Archive("DIV2K_valid_HR.zip", ("DIV2K_valid_HR",))]
    for split in ("train", "valid"):
        for s in sorted(set(scales)):
            out.append(Archive(f"DIV2K_{split}_LR_bicubic_X{s}.zip", (f"DIV2K_{split}_LR_bicubic/X{s}",)))
    return out


def download_dataset(name: str, root: str | os.PathLike[str], *, scales: Sequence[int] = (2, 3, 4),
                     base_url: str | None = None, progress: bool = True,
                     checksums: Mapping[str, Checksum] | None = None, retries: int = 2,
                     timeout: float = 60.0, keep_archives: bool = False) -> list[Path]:
    """Download, verify and extract data set ``name`` into ``root``; return the folders placed.

    Args:
        name: ``"div2k"`` (DIV2K_{train,valid}_HR and _LR_bicubic/X{s}) or ``"benchmark"``
            (``benchmark/{Set5,Set14,B100,Urban100}``).
        root: target folder (created). Folders already present are skipped, so the call is
            idempotent and resumes where an earlier one stopped.
        scales: DIV2K LR scales to fetch (subset of 2, 3, 4; empty for HR only).
        base_url: server folder holding the archives; default ``$SRNAS_DATA_BASE_URL`` or
            `DEFAULT_BASE_URLS`.
        progress: a live bar per archive on a terminal; plain lines otherwise (`srnas.fetch`).
            Verifying and extracting each archive are logged too.
        checksums: entries that replace `CHECKSUMS` (by file name), e.g. for a mirror or tests.
        retries: automatic resumes of an interrupted transfer before giving up.
        timeout: seconds without data before a connection counts as lost.
        keep_archives: keep the verified archives in ``root`` after extraction.

    Raises:
        DownloadError: host unreachable, HTTP error, transfer interrupted (``.part`` kept for
            the next call to resume), size/checksum mismatch (file deleted).
        DataError: unsafe or corrupt archive, unknown data set. Each message is one line
            naming the URL or file.
    """
    archives = archives_for(name, scales)
    target = Path(root).expanduser()
    created = not target.exists()
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{target}: cannot create the data folder ({exc.strerror or exc})") from None
    try:
        return _download_into(name, archives, target, base_url=base_url, progress=progress, checksums=checksums,
                              retries=retries, timeout=timeout, keep_archives=keep_archives)
    except BaseException:
        # A folder this call made and nothing landed in (no data, no partial file to resume) goes.
        if created and target.is_dir() and not any(target.iterdir()):
            target.rmdir()
        raise


def _download_into(name: str, archives: Sequence[Archive], target: Path, *, base_url: str | None, progress: bool,
                   checksums: Mapping[str, Checksum] | None, retries: int, timeout: float,
                   keep_archives: bool) -> list[Path]:
    table = {**CHECKSUMS, **(checksums or {})}
    base = base_url or os.environ.get("SRNAS_DATA_BASE_URL") or DEFAULT_BASE_URLS[name.lower()]
    base = check_base_url(base, "--base-url")
    placed: list[Path] = []
    for archive in archives:
        dests = [target / p for p in archive.provides]
        if all(d.exists() for d in dests):
            log.info(f"{', '.join(archive.provides)}: already in {target}, {archive.filename} not needed")
            placed.extend(dests)
            continue
        checksum = table.get(archive.filename)
        if checksum is None:
            raise DataError(f"{archive.filename}: no checksum pinned; pass checksums= to download it")
        file = target / archive.filename
        if not file.exists():
            download(base + archive.filename, file, checksum, progress=progress, retries=retries, timeout=timeout,
                     retry_wait=_RETRY_WAIT_S, hint="check the network or pass --base-url")
        else:
            log.info(f"verifying {file} (already downloaded, {checksum.algorithm})")
            verify(file, checksum, str(file))
        log.info(f"extracting {archive.filename} into {target}")
        t0 = time.monotonic()
        placed.extend(_extract(file, target, archive.provides))
        log.info(f"extracted {archive.filename} in {human_duration(time.monotonic() - t0)}: "
                 f"{', '.join(archive.provides)}")
        if not keep_archives:
            file.unlink()
    return placed


# --------------------------------------------------------------------------------------------
# Extraction


def _check_zip_members(archive: Path, members: Iterable[zipfile.ZipInfo], dest: Path) -> None:
    base = dest.resolve()
    for info in members:
        name = info.filename
        posix = PurePosixPath(name.replace("\\", "/"))
        if posix.is_absolute() or (len(name) > 1 and name[1] == ":") or ".." in posix.parts:
            raise DataError(f"{archive}: unsafe member {name!r} (absolute path or '..'); not extracted")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise DataError(f"{archive}: member {name!r} is a link; not extracted")
        if not (base / posix).resolve().is_relative_to(base):
            raise DataError(f"{archive}: member {name!r} would land outside the target folder; not extracted")


def _extract(archive: Path, root: Path, provides: Sequence[str]) -> list[Path]:
    """Extract into a temporary folder in ``root``, then move ``provides`` into place."""
    tmp = Path(tempfile.mkdtemp(prefix=".srnas-extract-", dir=root))
    try:
        try:
            if zipfile.is_zipfile(archive):
                with zipfile.ZipFile(archive) as zf:
                    members = zf.infolist()
                    _check_zip_members(archive, members, tmp)
                    zf.extractall(tmp)
            elif tarfile.is_tarfile(archive):
                if not hasattr(tarfile, "data_filter"):
                    raise DataError(f"{archive}: safe tar extraction needs Python 3.10.12 / 3.11.4 or newer")
                with tarfile.open(archive) as tf:
                    tf.extractall(tmp, filter="data")
            else:
                raise DataError(f"{archive}: neither a zip nor a tar archive")
        except tarfile.FilterError as exc:
            raise DataError(f"{archive}: unsafe member ({error_reason(exc)}); not extracted") from None
        except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
            raise DataError(f"{archive}: corrupt archive ({error_reason(exc)})") from None
        placed = []
        for rel in provides:
            src, dst = tmp / rel, root / rel
            if not src.exists():
                found = ", ".join(sorted(p.name for p in tmp.iterdir())) or "nothing"
                raise DataError(f"{archive}: does not contain {rel}/ (top level: {found})")
            if not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
            placed.append(dst)
        return placed
    except OSError as exc:
        raise DataError(f"{archive}: extraction failed ({error_reason(exc)})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def manga109_instructions(root: str | os.PathLike[str] | None = None) -> str:
    """The manual steps to obtain Manga109 (which may not be redistributed)."""
    where = Path(root) if root is not None else Path("<root>")
    return "\n".join([
        "Manga109 may not be redistributed, so srnas never downloads it. To use it:",
        "  1. Apply for the data set at http://www.manga109.org/en/download.html (academic use;",
        "     the authors grant access by e-mail).",
        "  2. Get the 109 HR page images as PNG files (the SR literature uses one PNG per title,",
        "     e.g. AisazuNihaIrarenai.png).",
        f"  3. Put them in {where / 'benchmark' / 'Manga109' / 'HR'}/ .",
        "     LR images are made automatically with the MATLAB-compatible bicubic; if you have",
        f"     them, put them in {where / 'benchmark' / 'Manga109' / 'LR_bicubic' / 'X2'}/<name>x2.png (X3, X4 alike).",
        f"  4. Check with: srnas data check {where}",
    ])
