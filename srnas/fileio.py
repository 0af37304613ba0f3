"""Atomic file writes that follow the user's umask: the one writer every layer of srnas uses.

A file is written to a temporary file in the target's folder (``.STEM.XXXXXXXX.tmp.SUFFIX``), flushed
and fsync'ed, moved over the target with ``os.replace``, and the folder is fsync'ed: a reader
sees the old file or the new one, never half of one, and a crash or an exception leaves the
previous file intact and no temporary file behind. Missing parent folders are created.

Modes: the temporary file is created with ``os.open(..., 0o666)``, so the kernel applies the
process umask (and a folder's default ACL) exactly as for ``open(path, "w")``: under umask 022
files are 0644, under 077 they are 0600 (``tempfile.mkstemp`` would make every file 0600).
Because the kernel applies the umask, it is never read: reading it in Python means
``os.umask(0)`` then ``os.umask(old)``, which races with other threads creating files.
Temporary folders (`atomic_folder`) are made the same way with 0o777. A library writing to an
`atomic_path` name that makes its own file 0600 (safetensors does) gets the kernel's mode back.

Errors: an `OSError` while writing becomes a `WriteError` (one line naming the target, not the
temporary file); a full disk or quota (``ENOSPC``, ``EDQUOT``) becomes a `StorageFullError`.
Both are `OSError` subclasses too, so ``except OSError`` keeps working. Any other exception
from a write callback propagates unchanged, after the temporary file is removed.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> atomic_write_text(folder / "metrics.json", "{}\\n").read_text()
'{}\\n'
>>> with atomic_path(folder / "weights.npy") as tmp:   # for libraries that want a file name
...     _ = tmp.write_bytes(b"...")                     # e.g. np.save(tmp, a), torch.save(s, tmp)
>>> (folder / "weights.npy").read_bytes()
b'...'
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, NoReturn

from srnas.errors import StorageFullError, WriteError

__all__ = ["atomic_folder", "atomic_path", "atomic_write", "atomic_write_bytes", "atomic_write_text", "write_error"]

PathLike = str | os.PathLike[str]

_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
_NAME_ROOM = 200  # room for ".STEM.XXXXXXXX.tmp.SUFFIX" within the usual 255-byte name limit


def atomic_write(path: PathLike, write: Callable[[IO[bytes]], object]) -> Path:
    """Write ``path`` atomically: ``write(handle)`` fills a binary temporary file that then
    replaces ``path``; returns ``path`` as a `Path`.

    Raises:
        StorageFullError: the disk or quota is full (the old file, if any, is unchanged).
        WriteError: any other `OSError` while writing.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_temp(target)
    except OSError as exc:
        raise _error(target, exc) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        _reraise(target, exc)
    _fsync_dir(target.parent)
    return target


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """`atomic_write` of ``data``."""
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: PathLike, text: str, *, encoding: str = "utf-8") -> Path:
    """`atomic_write` of ``text`` (UTF-8 unless ``encoding`` says otherwise; newlines as given)."""
    return atomic_write(path, lambda handle: handle.write(text.encode(encoding)))


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """A temporary file name next to ``path`` for libraries that write to a name (``PIL``
    ``Image.save``, ``np.save``, ``torch.save``, ``safetensors`` ``save_file``, ONNX export).

    The body writes the yielded path (it exists, empty, with the umask's mode); on a normal exit
    the file gets that mode back if the library changed it, is fsync'ed and replaces ``path``;
    on an exception it is removed and the exception propagates (an `OSError` as
    `WriteError`/`StorageFullError`, as in `atomic_write`).
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_temp(target)
        mode = stat.S_IMODE(os.fstat(fd).st_mode)  # what the kernel gives a new file here
        os.close(fd)
    except OSError as exc:
        raise _error(target, exc) from None
    try:
        yield tmp
        if stat.S_IMODE(os.stat(tmp).st_mode) != mode:
            os.chmod(tmp, mode)  # safetensors, for one, writes 0600 whatever the umask
        # The library closed the file; open it again to make its contents durable.
        fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        _reraise(target, exc)
    _fsync_dir(target.parent)


@contextlib.contextmanager
def atomic_folder(path: PathLike) -> Iterator[Path]:
    """A temporary folder next to ``path`` (mode 0o777 less the umask) that replaces ``path`` on
    a normal exit; on an exception it is removed with its contents and ``path`` is unchanged.

    An existing folder at ``path`` is first moved aside and removed after the new one is in
    place (a reader may find ``path`` missing for that instant, never half filled).

    Raises:
        WriteError: ``path`` exists and is not a folder, or the folder cannot be created/moved.
        StorageFullError: the disk or quota is full.
    """
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise WriteError(f"{target}: exists and is not a folder")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = _create_temp_dir(target, "tmp")
    except OSError as exc:
        raise _error(target, exc) from None
    try:
        yield tmp
        if target.exists():
            old = _create_temp_dir(target, "old")
            os.replace(target, old / target.name)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _reraise(target, exc)
    _fsync_dir(target.parent)


# ---- internals ---------------------------------------------------------------------------------


def _temp_name(target: Path, kind: str) -> Path:
    # The target's suffix stays last: np.save appends ".npy" and PIL picks formats by suffix.
    suffix = target.suffix if len(target.suffix) <= 16 else ""
    stem = target.name[: len(target.name) - len(suffix)][:_NAME_ROOM]
    return target.with_name(f".{stem}.{secrets.token_hex(4)}.{kind}{suffix}")


def _create_temp(target: Path) -> tuple[int, Path]:
    for _ in range(100):
        tmp = _temp_name(target, "tmp")
        try:
            return os.open(tmp, _FLAGS, 0o666), tmp  # the kernel applies the umask
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(target.parent))


def _create_temp_dir(target: Path, kind: str) -> Path:
    for _ in range(100):
        tmp = _temp_name(target, kind)
        try:
            os.mkdir(tmp, 0o777)  # the kernel applies the umask
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary folder name", str(target.parent))


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not every platform can open a folder.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _os_error_in_chain(exc: BaseException) -> OSError | None:
    """The first `OSError` among ``exc`` and its causes (a library may wrap the real failure)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def write_error(target: PathLike, exc: OSError) -> WriteError:
    """The one-line error for ``exc`` raised while writing ``target`` (a `StorageFullError` for
    a full disk or quota), for writers that cannot be atomic (appends to a log or journal)."""
    return _error(Path(target), exc)


def _error(target: Path, exc: OSError) -> WriteError:
    """The one-line error for ``exc`` raised while writing ``target``."""
    if isinstance(exc, WriteError):
        return exc
    reason = exc.strerror or " ".join(str(exc).split()) or type(exc).__name__
    if exc.errno in _FULL:
        err: WriteError = StorageFullError(f"{target}: disk full, nothing written ({reason}); "
                                           "free some space or write to another disk")
    else:
        err = WriteError(f"{target}: cannot write ({reason[:200]})")
    err.errno = exc.errno
    return err


def _reraise(target: Path, exc: BaseException) -> NoReturn:
    """Raise ``exc`` as the error `_error` makes of it, or unchanged when it is no write error."""
    os_error = exc if isinstance(exc, OSError) else _os_error_in_chain(exc)
    if os_error is not None and (isinstance(exc, OSError) or os_error.errno in _FULL):
        raise _error(target, os_error) from None
    raise exc


#: The mount table `filesystem_of` reads.
MOUNTS = Path("/proc/mounts")


def _unescape_mount(text: str) -> str:
    """A mount point as /proc/mounts writes it (space, tab, newline, backslash as octal escapes)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def filesystem_of(path: Path | str) -> tuple[str, str] | None:
    """(type, mount point) of the file system that holds ``path`` (which need not exist yet),
    from the mount table `MOUNTS`; None where the table cannot be read."""
    try:
        table = MOUNTS.read_text(errors="replace")
    except OSError:
        return None
    target = Path(os.path.abspath(os.path.realpath(path)))
    found: tuple[str, str] | None = None
    for line in table.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = Path(_unescape_mount(fields[1]))
        # The deepest mount point above the path wins; of equal ones the last mounted.
        if (point == target or point in target.parents) and (found is None or len(str(point)) >= len(found[1])):
            found = (fields[2], str(point))
    return found
