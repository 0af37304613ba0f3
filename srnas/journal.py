"""Optuna journal files made as safe as SQLite (imported by `srnas.storages.open_storage` only
when a journal storage is opened: it imports Optuna).

`JournalFile` is Optuna's ``JournalFileBackend`` with three repairs and one guarantee:

- A record is appended with one ``write`` under the journal lock; when the write fails (a full
  disk) the file is cut back to where it was, so no partial record is ever left by a failure.
- A record torn by a crash (a last line without its newline) is cut off under the lock before
  anything is appended, after its bytes are saved to ``FILE.torn``, with one line on stderr.
- A torn record that a later append continued on the same line (what srnas left after a full
  disk before this repair existed) is split off the same way when reading meets it.
- Any other unreadable line ends in one `StudyError` naming the file and the line, and what to do.

`JournalLock` is Optuna's symlink lock (NFS-safe) that says what it waits for, and removes a lock
left by a killed process at once when it is older than the grace period.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import sys
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

from optuna.storages.journal import JournalFileBackend

from srnas.errors import StudyError
from srnas.fileio import atomic_write_bytes, write_error

#: Seconds after which a journal lock file is taken to be left by a killed process and removed
#: (a live writer holds it for milliseconds).
JOURNAL_LOCK_GRACE = 30

#: How an Optuna journal record begins (to find a whole record behind a torn one on a line).
_RECORD_START = b'{"op_code":'
#: Seconds of waiting for a journal lock before saying so.
_TELL_AFTER = 2.0


def _note(message: str) -> None:
    print(f"srnas: note: {message}", file=sys.stderr, flush=True)


class JournalLock:
    """A lock file ``FILE.lock`` made with ``symlink`` (atomic on NFS too), as Optuna's
    ``JournalFileSymlinkLock``; the link's target names its holder (``FILE#owner=HOST:PID``).
    Waiting longer than 2 s gets one line saying for what. A lock whose holder was a process of
    this machine that is gone, or older than ``grace`` seconds (a live writer holds it for
    milliseconds), was left by a process killed while writing and is removed at once."""

    def __init__(self, filepath: str, *, grace: float = JOURNAL_LOCK_GRACE, what: str = "") -> None:
        self._target = filepath
        self.lock_file = filepath + ".lock"
        self.grace = grace
        self.what = what or f"the lock of journal {filepath}"

    def _dead_holder(self) -> str | None:
        """The holder ``HOST:PID`` when it was a process of this machine that is gone."""
        try:
            owner = os.readlink(self.lock_file).rpartition("#owner=")[2]
        except OSError:
            return None
        host, _, pid = owner.rpartition(":")
        if host != socket.gethostname() or not pid.isdigit():
            return None
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return owner
        except PermissionError:
            pass
        return None

    def _age(self) -> float | None:
        try:
            return time.time() - os.lstat(self.lock_file).st_mtime
        except OSError:
            return None

    def acquire(self) -> bool:
        delay, told, start = 0.001, False, time.monotonic()
        while True:
            try:
                os.symlink(f"{self._target}#owner={socket.gethostname()}:{os.getpid()}", self.lock_file)
                return True
            except FileExistsError:
                pass
            dead = self._dead_holder()
            if dead is not None:
                _note(f"{self.lock_file} was left by process {dead}, killed while writing: removing it")
                self._remove()
                continue
            age = self._age()
            if age is not None and age > self.grace:
                _note(f"{self.lock_file} is {age:.0f} s old, left by a process killed while writing: removing it")
                self._remove()
                continue
            if not told and time.monotonic() - start > _TELL_AFTER:
                told = True
                _note(f"waiting for {self.what} ({self.lock_file}): another process is writing, or one was killed "
                      f"while writing (such a lock is removed once it is {self.grace:.0f} s old)")
            time.sleep(delay)
            delay = min(delay * 2, 0.25)

    def _remove(self) -> bool:
        # Rename first: of two processes removing the same lock, one succeeds.
        aside = f"{self.lock_file}.{os.getpid()}.{random.randrange(1 << 30)}.aside"
        try:
            os.rename(self.lock_file, aside)
        except OSError:
            return False
        with contextlib.suppress(OSError):
            os.unlink(aside)
        return True

    def release(self) -> None:
        if not self._remove():
            raise RuntimeError(f"{self.lock_file}: not held")

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()


def _refuse_other_files(path: Path) -> None:
    """`StudyError` when ``path`` exists, is not empty and does not begin with a journal record
    (an image, a CSV, someone's notes: ``--storage journal:img.png`` must not cut them)."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(_RECORD_START))
    except FileNotFoundError:
        return
    except IsADirectoryError:
        raise StudyError(f"journal storage {path}: is a folder; give a file (journal:FILE)") from None
    if head and not _RECORD_START.startswith(head):  # a first record torn short still begins like one
        raise StudyError(f"journal storage {path}: exists and is not an Optuna journal (it begins with "
                         f"{head[:12]!r}); nothing was written to it: give another file")


class JournalFile(JournalFileBackend):
    """Optuna's journal file backend with torn records repaired and all-or-nothing appends
    (see the module docstring)."""

    def __init__(self, path: Path | str, *, lock_grace: float = JOURNAL_LOCK_GRACE) -> None:
        self.path = Path(path)
        _refuse_other_files(self.path)  # before a byte is written: a typo must not damage a user's file
        self.lock = JournalLock(str(self.path), grace=lock_grace)
        super().__init__(str(self.path), lock_obj=self.lock)  # type: ignore[arg-type]
        with self.lock.held():
            self._repair_tail()

    @property
    def torn_file(self) -> Path:
        """Where the bytes of torn records are kept (appended, one record a line)."""
        return self.path.with_name(self.path.name + ".torn")

    def _save_torn(self, torn: bytes, line: int) -> None:
        with open(self.torn_file, "ab") as f:
            f.write(torn.rstrip(b"\n") + b"\n")
        _note(f"journal {self.path}: record {line} was torn (a crash or a full disk while writing); cut it off "
              f"and kept its {len(torn)} bytes in {self.torn_file}; every complete record is intact")

    def _repair_tail(self) -> None:
        """Cut a last line that lacks its newline (call with the lock held)."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size == 0:
            return
        with open(self.path, "rb") as f:
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return
            pos, cut = size, 0
            while pos > 0:
                step = min(1 << 16, pos)
                pos -= step
                f.seek(pos)
                i = f.read(step).rfind(b"\n")
                if i >= 0:
                    cut = pos + i + 1
                    break
            f.seek(cut)
            torn = f.read()
            f.seek(0)
            line = f.read(cut).count(b"\n") + 1
        self._save_torn(torn, line)
        os.truncate(self.path, cut)

    def _salvage(self) -> None:
        """Split torn records off the lines they share with a whole one (lock held); a line
        that holds no whole record is `StudyError`."""
        lines = self.path.read_bytes().split(b"\n")
        tail = lines.pop()  # what follows the last newline: nothing once the tail is repaired
        changed = False
        for n, line in enumerate(lines):
            try:
                json.loads(line)
                continue
            except ValueError:
                pass
            start = line.rfind(_RECORD_START)
            while start > 0:
                try:
                    json.loads(line[start:])
                    break
                except ValueError:
                    start = line.rfind(_RECORD_START, 0, start)
            if start <= 0:
                raise StudyError(
                    f"journal {self.path}: line {n + 1} of {len(lines)} is not an Optuna record (the file is "
                    f"corrupt); restore it from a backup, or keep the {n} records before it "
                    f"(head -n {n} {self.path} > FIXED.log) and resume with --storage journal:FIXED.log")
            self._save_torn(line[:start], n + 1)
            lines[n] = line[start:]
            changed = True
        if changed:
            atomic_write_bytes(self.path, b"\n".join(lines) + b"\n" + tail)

    def read_logs(self, log_number_from: int) -> Generator[dict[str, Any], None, None]:
        number = log_number_from
        for attempt in range(2):
            try:
                for log in super().read_logs(number):
                    yield log
                    number += 1
                return
            except ValueError:  # json.JSONDecodeError, or Optuna's "Invalid log format."
                if attempt:
                    raise StudyError(f"journal {self.path}: record {number + 1} cannot be read even after "
                                     "repair; restore the file from a backup") from None
                with self.lock.held():
                    self._repair_tail()
                    self._salvage()
                # Lines before `number` are unchanged; offsets after it may have moved.
                self._log_number_offset = {0: 0}

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        data = ("\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n").encode("utf-8")
        with self.lock.held():
            self._repair_tail()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
            try:
                start = os.fstat(fd).st_size
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                    os.fsync(fd)
                except OSError as exc:
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, start)  # all or nothing: no partial record stays
                    raise write_error(self.path, exc) from None
            finally:
                os.close(fd)
