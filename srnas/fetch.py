"""Hash-checked HTTP downloads with resume and atomic placement (stdlib only; below every layer).

`download` fetches a URL to ``<dest>.part`` (resumed with an HTTP ``Range`` request when the
part exists), checks its size and digest, and only then renames it to ``dest``: a file at
``dest`` is always complete and verified, and a file that fails its check is deleted. The data
downloads (`srnas.data.download`) and the pretrained weights (`srnas.arch.pretrained`) use it.

A `Checksum` pins a full digest, or (``prefix=True``) only its leading hex digits, as torch.hub
file names do: ``edsr_baseline_x2-1bc95232.pt`` promises a SHA-256 starting with ``1bc95232``
(`Checksum.from_hub_name`).

Every failure is a `DownloadError` whose message is one line naming the URL or file.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from srnas.errors import DownloadError
from srnas.log import VERBOSE_ONLY, ProgressClock, get_logger, is_terminal
from srnas.units import human_bytes, human_duration

__all__ = ["Checksum", "cache_dir", "check_base_url", "download", "error_reason", "verify"]

log = get_logger("fetch")

_CHUNK = 1 << 20
_USER_AGENT = "srnas-download/1"
# torch.hub convention: the hex digits after the last '-' of the stem start the file's SHA-256.
_HUB_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")


@dataclass(frozen=True)
class Checksum:
    """Expected ``algorithm`` ("sha256" or "md5") digest and, when pinned, byte size.

    ``prefix=True``: ``digest`` holds only the leading hex digits of the digest.
    """

    algorithm: str
    digest: str
    size: int | None = None
    prefix: bool = False

    @classmethod
    def from_hub_name(cls, filename: str) -> Checksum:
        """The SHA-256 prefix a torch.hub style name carries (``name-<hex>.ext``)."""
        match = _HUB_NAME.search(filename)
        if match is None:
            raise DownloadError(f"{filename}: the name carries no SHA-256 prefix (expected NAME-<8 hex digits>.EXT)")
        return cls("sha256", match.group(1), None, prefix=True)


def cache_dir() -> Path:
    """The srnas cache folder: ``$SRNAS_CACHE_DIR`` if set, else ``~/.cache/srnas``."""
    env = os.environ.get("SRNAS_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "srnas"


def check_base_url(url: str, option: str) -> str:
    """``url`` with one trailing ``/``; anything but http(s) is refused naming ``option``."""
    if not url.lower().startswith(("http://", "https://")):
        raise DownloadError(f"{option} {url}: only http:// and https:// URLs are supported")
    return url.rstrip("/") + "/"


def download(url: str, dest: str | os.PathLike[str], checksum: Checksum, *, progress: bool = False,
             retries: int = 2, timeout: float = 60.0, retry_wait: float = 2.0,
             hint: str = "check the network") -> Path:
    """Fetch ``url`` to ``dest`` through ``<dest>.part``; return ``dest`` once verified.

    Args:
        url: http(s) URL of the file.
        dest: where the verified file is placed (its folder must exist).
        checksum: the expected digest (and size, when pinned; a server offering another
            size is refused before the transfer).
        progress: a live bar on a terminal; otherwise (and when False) plain lines with the
            percentage are logged (`srnas.log`: shown by the CLI, silent in library use).
        retries: automatic resumes of an interrupted transfer before giving up.
        timeout: seconds without data before a connection counts as lost.
        retry_wait: pause before an automatic resume.
        hint: what the user can do when the host cannot be reached (end of that message).

    Raises:
        DownloadError: host unreachable, HTTP error, transfer interrupted (the ``.part`` file
            is kept for the next call to resume), size or checksum mismatch (file deleted).
    """
    target = Path(dest)
    part = target.with_name(target.name + ".part")
    _fetch(url, part, checksum.size, progress=progress, retries=retries, timeout=timeout,
           retry_wait=retry_wait, hint=hint)
    log.info(f"verifying {target.name} ({human_bytes(part.stat().st_size)}, {checksum.algorithm})")
    verify(part, checksum, url)
    log.info(f"verified {target.name}: size and {checksum.algorithm} match")
    # The part was created under the user's umask, so the rename places it with the right mode.
    os.replace(part, target)
    return target


def verify(path: Path, checksum: Checksum, label: str) -> None:
    """Check size and digest of ``path``; delete it and raise `DownloadError` on a mismatch."""
    actual_size = path.stat().st_size
    if checksum.size is not None and actual_size != checksum.size:
        path.unlink()
        raise DownloadError(f"{label}: {actual_size} bytes, expected {checksum.size}; "
                            f"the file was removed, run the command again")
    try:
        digest = hashlib.new(checksum.algorithm)
    except ValueError:
        raise DownloadError(f"{path.name}: unknown checksum algorithm {checksum.algorithm!r}") from None
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    got = digest.hexdigest()
    want = checksum.digest.lower()
    if checksum.prefix:
        if not want or not got.startswith(want):
            path.unlink()
            raise DownloadError(f"{label}: {checksum.algorithm} is {got}, but the file name promises one starting "
                                f"with {want}; the file was refused and removed (tampered or wrong file)")
    elif got != want:
        path.unlink()
        raise DownloadError(f"{label}: {checksum.algorithm} checksum mismatch (got {got}, expected {checksum.digest}); "
                            f"the file was removed, run the command again")


# --------------------------------------------------------------------------------------------
# HTTP with resume


def error_reason(exc: BaseException) -> str:
    """An exception's reason as one short line (for one-line error messages)."""
    reason = getattr(exc, "reason", None) or exc
    text = " ".join(str(reason).split()) or type(reason).__name__
    return text[:160]


def _fetch(url: str, part: Path, size: int | None, *, progress: bool, retries: int, timeout: float,
           retry_wait: float, hint: str) -> None:
    """Download ``url`` into ``part``, resuming what is already there."""
    bar = _ProgressBar(part.name[: -len(".part")], size, enabled=progress)
    try:
        for attempt in range(retries + 1):
            have = part.stat().st_size if part.exists() else 0
            if size is not None and have > size:
                part.unlink()
                have = 0
            if size is not None and have == size:
                return
            try:
                if _fetch_once(url, part, have, size, timeout, bar, hint):
                    bar.finish()
                    return
            except _Interrupted as exc:
                if attempt == retries:
                    got = part.stat().st_size if part.exists() else 0
                    total = f" of {size}" if size else ""
                    raise DownloadError(f"{url}: transfer interrupted after {got}{total} bytes ({exc}); "
                                        f"run the command again to resume") from None
                time.sleep(retry_wait)
    finally:
        bar.close()


#: Most bytes fetched for a file whose size is not pinned.
MAX_UNPINNED_BYTES = 16 * 2**30


class _Interrupted(Exception):
    """The connection broke after the transfer started (resumable)."""


def _fetch_once(url: str, part: Path, have: int, size: int | None, timeout: float, bar: _ProgressBar,
                hint: str) -> bool:
    """One request; True when the file is complete. Raises `_Interrupted` or `DownloadError`."""
    headers = {"User-Agent": _USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # callers check the URL is http(s)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            return True  # nothing left to send: the part is whole (the checksum decides)
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise DownloadError(f"{url}: cannot reach the host ({error_reason(exc)}); {hint}") from None
    with response:
        length = response.headers.get("Content-Length")
        remaining = int(length) if length and length.isdigit() else None
        if response.status == 206 and have:
            start = _content_range_start(response.headers.get("Content-Range", ""))
            if start != have:
                raise DownloadError(f"{url}: server resumed at byte {start}, expected {have}")
            mode = "ab"
        else:
            mode, have = "wb", 0  # the server ignored Range: start over
        if size is not None and remaining is not None and have + remaining != size:
            raise DownloadError(f"{url}: server offers {have + remaining} bytes, expected {size}; "
                                f"wrong file or mirror")
        bar.start(have, None if size is not None or remaining is None else have + remaining)
        received = 0
        # Never more than the pinned size (or the cap without one): a server streaming garbage
        # must not fill the disk, nor leave a part that a resume would append to.
        limit = size if size is not None else MAX_UNPINNED_BYTES
        with open(part, mode) as fh:
            try:
                while True:
                    chunk = response.read(_CHUNK)
                    if not chunk:
                        break
                    if have + received + len(chunk) > limit:
                        fh.close()
                        part.unlink(missing_ok=True)
                        what = f"the pinned size of {size} bytes" if size is not None else \
                            f"the cap of {human_bytes(MAX_UNPINNED_BYTES)} for a file without a pinned size"
                        raise DownloadError(f"{url}: the server sent more than {what}; stopped and removed the "
                                            "partial file (wrong file or mirror)")
                    fh.write(chunk)
                    received += len(chunk)
                    bar.advance(len(chunk))
            except (http.client.IncompleteRead, OSError) as exc:
                raise _Interrupted(error_reason(exc)) from None
        if remaining is not None and received < remaining:
            raise _Interrupted("connection closed early")
    return True


def _content_range_start(value: str) -> int | None:
    # "bytes 100-199/200"
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


class _ProgressBar:
    """How a transfer shows: a rich bar when ``enabled`` and stderr is a terminal, else plain
    lines under the ``srnas.fetch`` logger: the size at the start
    (from the pinned size or the server's Content-Length), the percentage every
    `srnas.log.progress_interval` seconds, and the total at the end."""

    def __init__(self, label: str, total: int | None, *, enabled: bool) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self._started = False
        self._clock: ProgressClock | None = None
        self._progress: Any = None
        self._task: Any = None
        self._route = None
        if enabled and is_terminal():
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                      TransferSpeedColumn(), TimeRemainingColumn())
            self._progress.start()
            self._task = self._progress.add_task(label, total=total)
            self._route = VERBOSE_ONLY  # the bar shows it; log files and -v get the lines

    def start(self, completed: int, total: int | None = None) -> None:
        """Show ``completed`` bytes done; ``total`` sets a size learnt from the server."""
        if total is not None:
            self.total = total
        self.done = completed
        if self._progress is not None:
            if total is not None:
                self._progress.update(self._task, total=total)
            self._progress.update(self._task, completed=completed)
        if not self._started:
            self._started = True
            self._clock = ProgressClock(self.total, start=completed)
            size = human_bytes(self.total) if self.total is not None else "size unknown"
            resume = f", resuming at {human_bytes(completed)}" if completed else ""
            log.info(f"downloading {self.label} ({size}{resume})", extra=self._route)

    def advance(self, n: int) -> None:
        self.done += n
        if self._progress is not None:
            self._progress.advance(self._task, n)
        if self._clock is not None and self._clock.due():
            log.info(f"{self.label}: {self._amount()}", extra=self._route)

    def _amount(self) -> str:
        assert self._clock is not None
        rate = (self.done - self._clock.start) / max(self._clock.elapsed(), 1e-9)
        if self.total:
            return (f"{human_bytes(self.done)} of {human_bytes(self.total)} ({100 * self.done / self.total:.0f}%), "
                    f"{human_bytes(rate)}/s, ETA {human_duration(self._clock.eta(self.done))}")
        return f"{human_bytes(self.done)} (size unknown), {human_bytes(rate)}/s"

    def finish(self) -> None:
        """The transfer is complete (the checksum is checked next)."""
        if self._clock is not None:
            log.info(f"downloaded {self.label}: {human_bytes(self.done)} in "
                     f"{human_duration(self._clock.elapsed())}", extra=self._route)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
